// inherited_signal_state: the environment-hygiene probe. Sets nothing,
// records everything a process inherits from whoever started it: signal
// mask, ignored and caught signals, pending, altstack, PDEATHSIG, process
// group and session, controlling terminal, no_new_privs, open fds above 2.
// Under kpc's launcher the state is clean; under a runtime or init it is
// whatever that runtime passes through (see the runtime profiles).
#include "kpc/probe.h"
#include "kpc/state.h"

int probe_main(kpc::Probe&) {
  kpc::record_state("self",
                    "blocked,ignored,caught,pending,shared_pending,altstack,pdeathsig,subreaper,itimer_real,"
                    "pgrp_leader,session_leader,has_ctty,no_new_privs,fds");
  return 0;
}
