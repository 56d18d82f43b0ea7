// wait_reports_core_dump: a child killed by a signal whose default action
// dumps core is reported "dumped" -- WCOREDUMP in the wait status,
// CLD_DUMPED in waitid -- only when a core file was actually written;
// otherwise (RLIMIT_CORE 0) it is "killed", CLD_KILLED. SIGKILL never dumps.
//   variant dumped:     RLIMIT_CORE 1 MiB, a core of almost nothing
//                       (coredump_filter 0), written into a private directory
//   variant not_dumped: RLIMIT_CORE 0
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "kpc/probe.h"
#include "kpc/proc.h"
#include "kpc/siginfo.h"

namespace {
std::string by_waitid(pid_t pid) {
  siginfo_t si{};
  KPC_SYS(waitid(P_PID, pid, &si, WEXITED | WNOWAIT));
  return kpc::describe_child_siginfo(si);
}
}  // namespace

int probe_main(kpc::Probe& p) {
  bool dump = p.variant_is("dumped", "not_dumped");
  // A core_pattern that pipes to a program (systemd-coredump, apport) would
  // hand it our core: do not make other programs run.
  std::string pattern = kpc::read_text("/proc/sys/kernel/core_pattern").value_or("");
  if (dump && !pattern.empty() && pattern[0] == '|')
    kpc::skip("core_pattern pipes cores to a program (" + pattern.substr(0, pattern.find('\n')) +
              "): the case writes a core only where the kernel writes a file itself");
  kpc::note("core_pattern", pattern);
  kpc::TempDir dir("core");
  kpc::Child child = kpc::fork_child([&] {
    KPC_SYS(chdir(dir.path().c_str()));  // a relative core_pattern lands here
    rlimit rl{dump ? 1u << 20 : 0, dump ? 1u << 20 : 0};
    KPC_SYS(setrlimit(RLIMIT_CORE, &rl));
    int f = open("/proc/self/coredump_filter", O_WRONLY | O_CLOEXEC);
    if (f >= 0) {
      (void)!write(f, "0", 1);
      close(f);
    }
    signal(SIGABRT, SIG_DFL);
    raise(SIGABRT);
    _exit(99);
  });
  KPC_CHECK(kpc::wait_for_state(child.pid(), 'Z', 10000) == 'Z');
  kpc::observe("sigabrt.waitid", by_waitid(child.pid()));
  kpc::observe("sigabrt.waitpid", kpc::describe_wait_status(child.wait()));
  // SIGKILL: never a core.
  kpc::Child victim = kpc::fork_child([&] {
    KPC_SYS(chdir(dir.path().c_str()));
    rlimit rl{1u << 20, 1u << 20};
    setrlimit(RLIMIT_CORE, &rl);
    pause();
  });
  victim.kill(SIGKILL);
  KPC_CHECK(kpc::wait_for_state(victim.pid(), 'Z', 5000) == 'Z');
  kpc::observe("sigkill.waitid", by_waitid(victim.pid()));
  kpc::observe("sigkill.waitpid", kpc::describe_wait_status(victim.wait()));
  return 0;
}
