// handler_reset_by_execve: a caught signal's handler is inherited by fork()
// but reset to SIG_DFL by execve(), and its sa_flags are cleared
// (execve(2): "the dispositions of any signals that are being caught are
// reset to the default"); the exec'd program then dies of that signal.
#include <signal.h>

#include "kpc/probe.h"
#include "kpc/state.h"

namespace {
void on_usr1(int) {}
}  // namespace

int probe_main(kpc::Probe& p) {
  // 1. Catch SIGUSR1 with SA_RESTART.
  kpc::ScopedSigaction handler(SIGUSR1, on_usr1, SA_RESTART);

  // 2. fork(): the child still has the handler; the exec'd helper records
  //    the reset disposition and then sends itself SIGUSR1.
  kpc::Child child = kpc::fork_child([&] {
    kpc::record_state("child", "caught,disp:SIGUSR1,flags:SIGUSR1");
    kpc::exec_or_broken({p.helper("exec_report"), "--prefix", "exec", "--record", "caught,disp:SIGUSR1,flags:SIGUSR1",
                         "--signal-self", "SIGUSR1"});
  });

  // 3. With the default action restored, SIGUSR1 terminates the helper.
  kpc::observe("exec.status", kpc::describe_wait_status(child.wait()));
  return 0;
}
