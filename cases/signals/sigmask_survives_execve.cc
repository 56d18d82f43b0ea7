// sigmask_survives_execve: the blocked-signal mask is inherited by a fork()
// child and kept across execve() (sigprocmask(2): "A child created via
// fork(2) inherits a copy of its parent's signal mask; the signal mask is
// preserved across execve(2)"). Story 000: an init blocked everything for
// its signalfd and its exec'd workers never saw SIGCHLD.
#include <signal.h>

#include "kpc/probe.h"
#include "kpc/state.h"

int probe_main(kpc::Probe& p) {
  // 1. Block SIGUSR1 and SIGTERM, as an init does before reading signalfd.
  kpc::ScopedSigmask mask(SIG_BLOCK, kpc::SigSet::of({SIGUSR1, SIGTERM}));

  // 2. fork(): the child records its mask, then execs the helper, which
  //    records the mask the new program starts with.
  kpc::Child child = kpc::fork_child([&] {
    kpc::record_state("child", "blocked");
    kpc::exec_or_broken({p.helper("exec_report"), "--prefix", "exec", "--record", "blocked"});
  });

  // 3. The helper exits normally.
  kpc::observe("exec.status", kpc::describe_wait_status(child.wait()));
  return 0;
}
