// sigcont_same_session_any_uid: kill(2) lets a process signal another only
// with CAP_KILL or a matching uid, with one exception: SIGCONT may be sent to
// any process of the sender's own session (check_kill_permission() in
// kernel/signal.c), so a job-control shell can continue a job that changed
// its uid. The same sender gets EPERM for SIGTERM, and for SIGCONT to a
// process of another session.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include "kpc/probe.h"

namespace {
constexpr uid_t kOther = 65534;  // nobody: no claim on root's processes
}  // namespace

int probe_main(kpc::Probe& p) {
  // 1. Two targets that stay root: one in our session, one in a session of its own.
  kpc::Pipe ready = kpc::Pipe::make(O_CLOEXEC), go = kpc::Pipe::make(O_CLOEXEC);
  kpc::Child same = kpc::fork_child([&] {
    kpc::send_byte(ready.write.get());
    go.wait_for_go();
  });
  kpc::Child other = kpc::fork_child([&] {
    KPC_SYS(setsid());
    kpc::send_byte(ready.write.get());
    go.wait_for_go();
  });
  for (int i = 0; i < 2; ++i) KPC_CHECK(kpc::recv_byte(ready.read.get(), 5000).has_value());
  // 2. A sender of our session that becomes somebody else (every capability
  //    dropped with uid 0), then signals both.
  kpc::Child sender = kpc::fork_child([&] {
    KPC_SYS(setresgid(kOther, kOther, kOther));
    KPC_SYS(setresuid(kOther, kOther, kOther));
    KPC_OBSERVE_CALL("same_session.sigcont", kill(same.pid(), SIGCONT));
    KPC_OBSERVE_CALL("same_session.sigterm", kill(same.pid(), SIGTERM));
    KPC_OBSERVE_CALL("other_session.sigcont", kill(other.pid(), SIGCONT));
  });
  kpc::observe("sender.status", kpc::describe_wait_status(sender.wait()));
  // 3. The targets end on our word: the refused SIGTERM never arrived.
  go.write.reset();
  kpc::observe("same_session.target_status", kpc::describe_wait_status(same.wait()));
  kpc::observe("other_session.target_status", kpc::describe_wait_status(other.wait()));
  (void)p;
  return 0;
}
