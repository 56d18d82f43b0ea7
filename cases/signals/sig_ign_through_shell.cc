// sig_ign_through_shell (story 001): SIGTERM is ignored in the first process;
// it starts a program through an intermediate (a shell, or another exec),
// which starts the worker. The worker inherits SIG_IGN across both execs and
// a SIGTERM then has no effect.
//   variant direct:     probe -> exec_report (mid) -> exec_report (worker)
//   variant shell:      probe -> /bin/sh -c 'exec "$0" "$@"' -> worker
//   variant shell_trap_reset: the shell tries `trap - TERM` first; POSIX says
//     a non-interactive shell cannot reset a signal ignored on entry.
#include <signal.h>

#include "kpc/probe.h"
#include "kpc/state.h"

int probe_main(kpc::Probe& p) {
  // 1. Ignore SIGTERM, as the story's process manager did.
  kpc::ScopedSigaction ignore(SIGTERM, SIG_IGN);

  std::string helper = p.helper("exec_report");
  std::vector<std::string> worker = {helper,          "--prefix", "worker", "--record", "ignored,disp:SIGTERM",
                                     "--signal-self", "SIGTERM"};
  std::vector<std::string> argv;
  auto via = [&](std::vector<std::string> mid) {
    argv = std::move(mid);
    return 0;
  };
  p.dispatch({
      {"direct",
       [&] {
         return via({helper, "--prefix", "mid", "--record", "disp:SIGTERM", "--then-exec"});
       }},
      {"shell",
       [&] {
         return via({"/bin/sh", "-c", "exec \"$0\" \"$@\""});
       }},
      {"shell_trap_reset",
       [&] {
         return via({"/bin/sh", "-c", "trap - TERM; exec \"$0\" \"$@\""});
       }},
  });
  argv.insert(argv.end(), worker.begin(), worker.end());

  // 2. fork + exec the chain; the worker records and signals itself.
  kpc::Child child = kpc::fork_child([&] { kpc::exec_or_broken(argv); });

  // 3. Still alive after SIGTERM means it exited 0 on its own.
  kpc::observe("worker.status", kpc::describe_wait_status(child.wait()));
  return 0;
}
