// exit_status_low_8_bits: only the low 8 bits of an exit status reach the
// parent: _exit(263) is seen as 7, _exit(-1) as 255, by waitpid and waitid.
#include <sys/wait.h>
#include <unistd.h>

#include "kpc/probe.h"

int probe_main(kpc::Probe&) {
  kpc::Child a = kpc::fork_child([] { _exit(263); });
  kpc::observe("exit_263.waitpid", kpc::describe_wait_status(a.wait()));
  kpc::Child b = kpc::fork_child([] { _exit(-1); });
  siginfo_t info{};
  KPC_SYS(waitid(P_PID, static_cast<id_t>(b.pid()), &info, WEXITED));
  b.release();
  kpc::observe("exit_minus1.waitid_status", info.si_status);
  return 0;
}
