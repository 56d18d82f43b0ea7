// clone_sighand_shares_handlers: with CLONE_SIGHAND (which needs CLONE_VM)
// parent and child share one table of signal actions: a sigaction() in the
// child changes the parent's. A fork() child has its own copy.
//   variant clone_sighand: clone(CLONE_VM | CLONE_SIGHAND | SIGCHLD)
//   variant fork:          the contrast
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kpc/probe.h"
#include "kpc/state.h"

namespace {
void on_usr1(int) {}

int child_body(void*) {
  // Only raw, reentrant calls: with CLONE_VM this runs in the parent's memory.
  struct sigaction ign {};
  ign.sa_handler = SIG_IGN;
  sigaction(SIGUSR2, &ign, nullptr);
  struct sigaction h {};
  h.sa_handler = on_usr1;
  h.sa_flags = SA_RESTART;
  sigaction(SIGUSR1, &h, nullptr);
  return 0;
}
}  // namespace

int probe_main(kpc::Probe& p) {
  bool shared = p.variant_is("clone_sighand", "fork");
  kpc::observe("parent.before.disp.sigusr1", kpc::disposition_of(SIGUSR1));
  kpc::observe("parent.before.disp.sigusr2", kpc::disposition_of(SIGUSR2));
  // 1. The child changes SIGUSR1 to a handler and SIGUSR2 to SIG_IGN.
  pid_t pid;
  static char stack[64 * 1024];
  if (shared) {
    pid = clone(child_body, stack + sizeof stack, CLONE_VM | CLONE_SIGHAND | SIGCHLD, nullptr);
    KPC_SYS(pid);
  } else {
    pid = kpc::fork_or_broken();
    if (pid == 0) _exit(child_body(nullptr));
  }
  int st = 0;
  KPC_SYS(waitpid(pid, &st, 0));
  kpc::observe("child.status", kpc::describe_wait_status(st));
  // 2. What the parent's table says now.
  kpc::record_state("parent.after", "disp:SIGUSR1,disp:SIGUSR2");
  signal(SIGUSR1, SIG_DFL);
  signal(SIGUSR2, SIG_DFL);
  return 0;
}
