// setns_pidfd_refuses_exited_task: setns() takes a pidfd (Linux 5.8) and
// joins that process's namespaces. Once the process has exited -- a zombie
// still holding its PID, or reaped -- it has no namespaces left to join:
// ESRCH. A /proc/PID/ns/pid descriptor opened earlier still works
// (pidns_teardown_after_init_exit).
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kpc/pidfd.h"
#include "kpc/probe.h"
#include "kpc/proc.h"

namespace {
// setns(pidfd, CLONE_NEWPID) in a child (so the probe keeps its own
// pid_for_children): "ok" or the errno name.
std::string try_setns(int pidfd) {
  kpc::Pipe r = kpc::Pipe::make(O_CLOEXEC);
  kpc::Child c = kpc::fork_child([&] { kpc::send_int(r.write.get(), setns(pidfd, CLONE_NEWPID) == 0 ? 0 : errno); });
  auto e = kpc::recv_int(r.read.get(), 5000);
  c.wait();
  KPC_CHECK(e.has_value());
  return *e == 0 ? "ok" : kpc::errno_name(*e);
}
}  // namespace

int probe_main(kpc::Probe&) {
  kpc::Pipe go = kpc::Pipe::make(O_CLOEXEC);
  kpc::Child init = kpc::fork_child_in_new_pidns([&] { go.wait_for_go(); });
  go.read.reset();
  kpc::Fd pidfd = kpc::pidfd::open_or_skip(init.pid());
  // 1. Alive.
  std::string live = try_setns(pidfd.get());
  if (live == "EINVAL") kpc::skip("setns() does not take a pidfd (Linux 5.8)");
  kpc::observe("alive.setns", live);
  // 2. A zombie.
  go.write.reset();
  KPC_CHECK(kpc::wait_for_state(init.pid(), 'Z') == 'Z');
  kpc::observe("zombie.setns", try_setns(pidfd.get()));
  // 3. Reaped.
  init.wait();
  kpc::observe("reaped.setns", try_setns(pidfd.get()));
  return 0;
}
