// sigcont_discards_pending_stop: sending SIGCONT discards every pending stop
// signal (SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU), and sending a stop signal
// discards a pending SIGCONT -- at generation, even when they are blocked.
#include <signal.h>
#include <unistd.h>

#include "kpc/probe.h"
#include "kpc/state.h"

int probe_main(kpc::Probe&) {
  kpc::Child child = kpc::fork_child([] {
    // Both blocked, so nothing acts: only the pending set changes.
    kpc::ScopedSigmask block(SIG_BLOCK, kpc::SigSet::of({SIGTSTP, SIGTTOU, SIGCONT}));
    // 1. Stop signals pending, then SIGCONT.
    KPC_SYS(kill(getpid(), SIGTSTP));
    KPC_SYS(kill(getpid(), SIGTTOU));
    kpc::record_state("stops_pending", "shared_pending");
    KPC_SYS(kill(getpid(), SIGCONT));
    kpc::record_state("after_sigcont", "shared_pending");
    kpc::consume_pending(kpc::SigSet::of({SIGTSTP, SIGTTOU, SIGCONT}));
    // 2. SIGCONT pending, then a stop signal.
    KPC_SYS(kill(getpid(), SIGCONT));
    kpc::record_state("cont_pending", "shared_pending");
    KPC_SYS(kill(getpid(), SIGTSTP));
    kpc::record_state("after_stop_signal", "shared_pending");
    kpc::consume_pending(kpc::SigSet::of({SIGTSTP, SIGTTOU, SIGCONT}));
  });
  kpc::observe("status", kpc::describe_wait_status(child.wait()));
  return 0;
}
