// sig_ign_survives_execve: a signal set to SIG_IGN stays ignored across
// fork() and execve() (execve(2): "the dispositions of any signals that are
// being ignored are not reset to the default"); the exec'd program then
// survives that signal. Story 001: SIGTERM ignored upstream, unkillable
// workers downstream.
#include <signal.h>

#include "kpc/probe.h"
#include "kpc/state.h"

int probe_main(kpc::Probe& p) {
  // 1. Ignore SIGUSR2.
  kpc::ScopedSigaction ignore(SIGUSR2, SIG_IGN);

  // 2. fork(): the child records the disposition and execs the helper, which
  //    records it again and then sends itself SIGUSR2.
  kpc::Child child = kpc::fork_child([&] {
    kpc::record_state("child", "ignored,disp:SIGUSR2");
    kpc::exec_or_broken(
        {p.helper("exec_report"), "--prefix", "exec", "--record", "ignored,disp:SIGUSR2", "--signal-self", "SIGUSR2"});
  });

  // 3. The exec'd helper survived its own SIGUSR2 and exited normally.
  kpc::observe("exec.status", kpc::describe_wait_status(child.wait()));
  return 0;
}
