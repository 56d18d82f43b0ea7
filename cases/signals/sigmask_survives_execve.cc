// sigmask_survives_execve: the blocked-signal mask is inherited by a fork()
// child and kept across execve() (sigprocmask(2): "A child created via
// fork(2) inherits a copy of its parent's signal mask; the signal mask is
// preserved across execve(2)"). Story 000: an init blocked everything for
// its signalfd and its exec'd workers never saw SIGCHLD.
#include <signal.h>

#include "kpc/probe.h"
#include "kpc/state.h"

namespace {

// `--block SET` (a lab's per-student parameter, kpc lab --seed) blocks SET
// instead of SIGUSR1|SIGTERM; the observations' keys stay the same.
kpc::SigSet to_block(const kpc::Probe& p) {
  kpc::SigSet set = kpc::SigSet::of({SIGUSR1, SIGTERM});
  for (size_t i = 0; i < p.args.size(); ++i) {
    if (p.args[i] != "--block" || i + 1 == p.args.size()) kpc::broken("usage: [--block SIGA|SIGB]");
    auto parsed = kpc::parse_sigset(p.args[++i]);
    if (!parsed || parsed->empty()) kpc::broken("--block: not a signal set: " + p.args[i]);
    set = *parsed;
  }
  return set;
}

}  // namespace

int probe_main(kpc::Probe& p) {
  // 1. Block SIGUSR1 and SIGTERM (or --block's set), as an init does before
  //    reading signalfd.
  kpc::ScopedSigmask mask(SIG_BLOCK, to_block(p));

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
