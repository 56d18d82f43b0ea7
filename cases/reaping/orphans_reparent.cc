// orphans_reparent: when a process's parent exits, it is reparented to the
// nearest ancestor that is a child subreaper, or else to the init of its
// PID namespace (PID 1 there).
//   variant to_subreaper: the probe sets PR_SET_CHILD_SUBREAPER
//   variant to_ns_init:   inside a new PID namespace, no subreaper
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kpc/probe.h"

namespace {
// parent -> middle -> orphan. middle exits; orphan waits until it has been
// reparented and reports its new parent. The event to wait for is its
// parent-death signal: the kernel sets the new parent before it sends it
// (forget_original_parent in kernel/exit.c), while a pipe's EOF would come
// earlier, with the middle's files.
void make_orphan(pid_t expect_reaper, const char* key) {
  kpc::Child middle = kpc::fork_child([&] {
    pid_t me = getpid();
    pid_t orphan = kpc::fork_or_broken();
    if (orphan == 0) {
      sigset_t usr1;
      sigemptyset(&usr1);
      sigaddset(&usr1, SIGUSR1);
      KPC_SYS(sigprocmask(SIG_BLOCK, &usr1, nullptr));
      KPC_SYS(prctl(PR_SET_PDEATHSIG, SIGUSR1));
      if (getppid() == me) {  // else the middle is gone already: reparented
        timespec deadline{10, 0};
        KPC_CHECK_MSG(sigtimedwait(&usr1, nullptr, &deadline) == SIGUSR1, "no parent-death signal within 10 s");
      }
      kpc::observe(key, getppid() == expect_reaper);
      _exit(0);
    }
    _exit(0);
  });
  middle.wait();
  // Reap the orphan, which is now ours (subreaper) or init's (ourselves).
  int st;
  while (wait(&st) > 0) {}
}
}  // namespace

int probe_main(kpc::Probe& p) {
  return p.dispatch({
      {"to_subreaper",
       [] {
         KPC_SYS(prctl(PR_SET_CHILD_SUBREAPER, 1));
         make_orphan(getpid(), "orphan.reparented_to_subreaper");
         KPC_SYS(prctl(PR_SET_CHILD_SUBREAPER, 0));
         return 0;
       }},
      {"to_ns_init",
       [] {
         kpc::Child init = kpc::fork_child_in_new_pidns([] { make_orphan(1, "orphan.reparented_to_pid1"); });
         kpc::observe("init.status", kpc::describe_wait_status(init.wait()));
         return 0;
       }},
  });
}
