// clone_parent_makes_a_sibling: CLONE_PARENT gives the new process the
// caller's parent: it is the caller's sibling, its parent (not the caller)
// gets its exit signal -- the caller's own exit signal -- and reaps it.
// clone3 refuses CLONE_PARENT with an exit signal of its own (EINVAL), and
// a PID namespace's init may not use CLONE_PARENT at all (EINVAL: its
// parent is outside the namespace).
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kpc/pidfd.h"
#include "kpc/probe.h"

namespace {
// clone(CLONE_PARENT | extra) with fork semantics: the new process sends
// its pid (as seen by itself) ... and exits 5. Returns the pid or -errno.
long clone_parent(unsigned long flags) {
  long pid = syscall(SYS_clone, CLONE_PARENT | flags, 0, 0, 0, 0);
  if (pid == 0) _exit(5);
  return pid < 0 ? -errno : pid;
}
}  // namespace

int probe_main(kpc::Probe&) {
  pid_t me = getpid();
  // 1. A middle process (exit signal SIGCHLD) creates a CLONE_PARENT child:
  //    its sibling, ours to reap.
  kpc::Pipe report = kpc::Pipe::make(O_CLOEXEC);
  kpc::Child middle = kpc::fork_child([&] {
    long sib = clone_parent(0);
    KPC_CHECK_MSG(sib > 0, "clone(CLONE_PARENT): " + kpc::errno_name(static_cast<int>(-sib)));
    kpc::send_int(report.write.get(), static_cast<int>(sib));
    // The middle cannot wait for it: not its child.
    int st;
    KPC_OBSERVE_CALL("middle.waitpid_sibling", waitpid(static_cast<pid_t>(sib), &st, 0));
    // 2. clone3: CLONE_PARENT with an exit signal is refused; without one
    //    the sibling gets the caller's exit signal.
    clone_args a{};
    a.flags = CLONE_PARENT;
    a.exit_signal = SIGCHLD;
    long r = syscall(kpc::pidfd::kSysClone3, &a, sizeof a);
    if (r == 0) _exit(6);
    kpc::observe_result("middle.clone3_parent_with_exit_signal", r, r < 0 ? errno : 0);
  });
  auto sib = kpc::recv_int(report.read.get(), 5000);
  KPC_CHECK(sib.has_value());
  kpc::observe("middle.status", kpc::describe_wait_status(middle.wait()));
  // 3. The sibling is ours: its parent is us, we reap its status.
  int st = 0;
  kpc::observe("sibling.reaped_by_callers_parent", waitpid(*sib, &st, 0) == *sib);
  kpc::observe("sibling.status", kpc::describe_wait_status(st));
  (void)me;
  // 4. A PID namespace's init may not.
  kpc::Child init = kpc::fork_child_in_new_pidns([] {
    long r = clone_parent(SIGCHLD);
    kpc::observe("ns_init.clone_parent", r > 0 ? std::string("ok") : kpc::errno_name(static_cast<int>(-r)));
    // A member may: its sibling's parent is the init.
    kpc::Child member = kpc::fork_child([] {
      long s = clone_parent(SIGCHLD);
      kpc::observe("ns_member.clone_parent", s > 0 ? std::string("ok") : kpc::errno_name(static_cast<int>(-s)));
    });
    member.wait();
    int status;
    kpc::observe("ns_init.reaps_members_sibling", wait(&status) > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 5);
  });
  kpc::observe("init.status", kpc::describe_wait_status(init.wait()));
  return 0;
}
