// fork_child_pending_empty: a child created by fork() starts with no pending
// signals, neither thread-directed nor process-wide (fork(2): "The child's
// set of pending signals is initially empty"), even when its parent has both.
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kpc/probe.h"
#include "kpc/state.h"

int probe_main(kpc::Probe&) {
  // 1. Block SIGUSR1 and SIGUSR2 so that signals sent to us stay pending.
  kpc::ScopedSigmask mask(SIG_BLOCK, kpc::SigSet::of({SIGUSR1, SIGUSR2}));

  // 2. SIGUSR1 pending for this thread (tgkill), SIGUSR2 for the whole
  //    process (kill): the two pending sets of /proc/PID/status.
  KPC_SYS(syscall(SYS_tgkill, getpid(), gettid(), SIGUSR1));
  KPC_SYS(kill(getpid(), SIGUSR2));

  // 3. The parent's sets prove there was something the child could inherit.
  kpc::record_state("parent", "pending,shared_pending");

  // 4. The child records its own sets; the mask is inherited, as a control.
  kpc::Child child = kpc::fork_child([] {
    kpc::record_state("child", "pending,shared_pending,blocked");
    return 0;
  });
  kpc::observe("child.status", kpc::describe_wait_status(child.wait()));

  // 5. Take our own pending signals off the queue before the mask is restored.
  kpc::consume_pending(kpc::SigSet::of({SIGUSR1, SIGUSR2}));
  return 0;
}
