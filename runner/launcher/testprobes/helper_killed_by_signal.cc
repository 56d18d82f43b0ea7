// helper_killed_by_signal: what sig_ign_survives_execve records on a system
// that does NOT keep SIG_IGN across exec (here: nobody ignores SIGUSR2 at
// all), so the exec'd helper dies of the SIGUSR2 it sends itself before it
// records its last observation. The runner's tests judge it with
// sig_ign_survives_execve's rows: a fail naming the wrong disposition, with
// the unrecorded key as its consequence -- not an error.
#include <signal.h>

#include "kpc/probe.h"
#include "kpc/state.h"

int probe_main(kpc::Probe& p) {
  kpc::Child child = kpc::fork_child([&] {
    kpc::record_state("child", "ignored,disp:SIGUSR2");
    kpc::exec_or_broken({p.helper("../probes/exec_report"), "--prefix", "exec", "--record", "ignored,disp:SIGUSR2",
                         "--signal-self", "SIGUSR2"});
  });
  kpc::observe("exec.status", kpc::describe_wait_status(child.wait()));
  return 0;
}
