// ignored_blocked_signal_still_queued: a signal whose action is SIG_IGN is
// discarded when it is generated -- unless it is blocked: a blocked signal
// is queued whatever its action, because the action may change before it is
// unblocked. sigtimedwait then takes it. Setting SIG_IGN while a signal is
// pending discards it.
#include <signal.h>
#include <unistd.h>

#include "kpc/probe.h"
#include "kpc/siginfo.h"
#include "kpc/state.h"

int probe_main(kpc::Probe&) {
  // Everything in a child: it ends with its signal state however it went.
  kpc::Child child = kpc::fork_child([] {
    // 1. SIGUSR1 ignored and blocked: generated, it is queued anyway.
    {
      kpc::ScopedSigaction ign(SIGUSR1, SIG_IGN);
      kpc::ScopedSigmask block(SIG_BLOCK, kpc::SigSet::of({SIGUSR1}));
      KPC_SYS(kill(getpid(), SIGUSR1));
      kpc::record_state("ignored_blocked", "shared_pending");
      auto si = kpc::take_signal(SIGUSR1, 0);
      kpc::observe("ignored_blocked.sigtimedwait_takes_it", si.has_value());
    }
    // 2. SIGUSR1 ignored, not blocked: dropped at generation.
    {
      kpc::ScopedSigaction ign(SIGUSR1, SIG_IGN);
      KPC_SYS(kill(getpid(), SIGUSR1));
      kpc::ScopedSigmask block(SIG_BLOCK, kpc::SigSet::of({SIGUSR1}));
      kpc::record_state("ignored_unblocked", "shared_pending");
      kpc::observe("ignored_unblocked.sigtimedwait_takes_it", kpc::take_signal(SIGUSR1, 0).has_value());
    }
    // 3. Pending (blocked, default action), then set to SIG_IGN: discarded.
    {
      kpc::ScopedSigmask block(SIG_BLOCK, kpc::SigSet::of({SIGUSR1}));
      KPC_SYS(kill(getpid(), SIGUSR1));
      kpc::record_state("pending_then_ignored.before", "shared_pending");
      kpc::ScopedSigaction ign(SIGUSR1, SIG_IGN);
      kpc::record_state("pending_then_ignored.after", "shared_pending");
    }
  });
  kpc::observe("status", kpc::describe_wait_status(child.wait()));
  return 0;
}
