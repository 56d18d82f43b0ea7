// exit_signal_needs_wall: a child created with an exit signal other than
// SIGCHLD (or none) is a "clone" child: waitpid() without __WCLONE/__WALL
// does not see it (ECHILD); with the flag it does. execve() in the child
// resets its exit signal to SIGCHLD.
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kpc/probe.h"
#include "kpc/state.h"

namespace {
pid_t clone_with_exit_signal(int sig, bool exec_helper, const std::string& helper) {
  long pid = syscall(SYS_clone, static_cast<unsigned long>(sig), nullptr, nullptr, nullptr, nullptr);
  if (pid == 0) {
    if (exec_helper) {
      std::string prefix = "exec_sig" + std::to_string(sig);
      kpc::record_state(prefix + ".before", "exit_signal");
      kpc::exec_or_broken({helper, "--prefix", prefix, "--record", "exit_signal"});
    }
    _exit(0);
  }
  KPC_CHECK(pid > 0);
  return static_cast<pid_t>(pid);
}

void check(int sig, const char* name) {
  pid_t pid = clone_with_exit_signal(sig, false, "");
  std::string k = std::string("exit_signal_") + name;
  int st;
  pid_t r = waitpid(pid, &st, 0);
  kpc::observe(k + ".plain_waitpid", r == pid ? std::string("ok") : kpc::errno_name(errno));
  r = waitpid(pid, &st, __WALL);
  kpc::observe(k + ".waitpid_wall", r == pid ? std::string("ok") : kpc::errno_name(errno));
}
}  // namespace

int probe_main(kpc::Probe& p) {
  // SIGUSR1 as exit signal must not kill the probe: block it, drain later.
  kpc::ScopedSigmask mask(SIG_BLOCK, kpc::SigSet::of({SIGUSR1}));
  check(0, "none");
  check(SIGUSR1, "sigusr1");
  // execve() resets the exit signal: the helper records it after exec.
  pid_t pid = clone_with_exit_signal(SIGUSR1, true, p.helper("exec_report"));
  int st;
  KPC_SYS(waitpid(pid, &st, __WALL));
  kpc::consume_pending(kpc::SigSet::of({SIGUSR1, SIGCHLD}));
  return 0;
}
