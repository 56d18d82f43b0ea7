// pidns_init_kill_minus_one: kill(-1, sig) inside a PID namespace reaches
// every process of the namespace the caller may signal, except the caller
// itself and the namespace's init (PID 1 there) -- and nothing outside.
//   variant from_init:   the init sends it
//   variant from_member: a member sends it (the init is spared too)
// Everyone involved keeps SIGUSR1 blocked, so a signal that arrived is
// pending and can be checked; blocked signals are never dropped, not even
// by the init's signal immunity.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include "kpc/probe.h"
#include "kpc/proc.h"
#include "kpc/siginfo.h"
#include "kpc/state.h"

namespace {
bool pending(int sig) {
  sigset_t set;
  KPC_SYS(sigpending(&set));
  return sigismember(&set, sig);
}

// kill(-1) signals everything the caller may signal in its PID namespace:
// refuse to call it unless we are certainly in a namespace of our own,
// deeper than the one the mounted /proc shows (the machine's in the host
// flavor, the launcher's in the others).
void guarded_kill_all(int sig, const char* key) {
  KPC_CHECK_MSG(getpid() < 10 && kpc::pid_in_mounted_proc() != getpid(),
                "not inside the probe's own PID namespace: refusing kill(-1)");
  KPC_OBSERVE_CALL(key, kill(-1, sig));
}
}  // namespace

int probe_main(kpc::Probe& p) {
  bool from_init = p.variant_is("from_init", "from_member");
  kpc::ScopedSigmask block(SIG_BLOCK, kpc::SigSet::of({SIGUSR1}));  // inherited by all below

  kpc::Child init = kpc::fork_child_in_new_pidns([&] {
    // 1. Two members wait for SIGUSR1 and report who sent it (or -1).
    kpc::Pipe ready = kpc::Pipe::make(O_CLOEXEC), reports = kpc::Pipe::make(O_CLOEXEC);
    kpc::Child members[2];
    for (auto& m : members)
      m = kpc::fork_child([&] {
        kpc::send_byte(ready.write.get());
        auto si = kpc::take_signal(SIGUSR1, 5000);
        kpc::send_int(reports.write.get(), si ? si->si_pid : -1);
      });
    for (int i = 0; i < 2; ++i) KPC_CHECK(kpc::recv_byte(ready.read.get(), 5000).has_value());

    // 2. kill(-1, SIGUSR1), from the init or from a third member.
    pid_t sender = 1;
    if (from_init) {
      guarded_kill_all(SIGUSR1, "kill_minus_one");
    } else {
      kpc::Child s = kpc::fork_child([] {
        guarded_kill_all(SIGUSR1, "kill_minus_one");
        kpc::observe("sender.got_its_own", pending(SIGUSR1));
      });
      sender = s.pid();
      s.wait();
    }

    // 3. Who got it.
    int got = 0, named_sender = 0;
    for (int i = 0; i < 2; ++i) {
      auto r = kpc::recv_int(reports.read.get(), 10000);
      KPC_CHECK(r.has_value());
      if (*r >= 0) ++got;
      if (*r == sender) ++named_sender;
    }
    kpc::observe("members.received", got);
    kpc::observe("members.si_pid_is_sender", named_sender == 2);
    kpc::observe("init.received", pending(SIGUSR1));
    kpc::consume_pending(kpc::SigSet::of({SIGUSR1}));
    for (auto& m : members) m.wait();
  });
  kpc::observe("init.status", kpc::describe_wait_status(init.wait()));
  // 4. Outside the namespace (the probe itself): nothing.
  kpc::observe("outsider.received", pending(SIGUSR1));
  kpc::consume_pending(kpc::SigSet::of({SIGUSR1}));
  return 0;
}
