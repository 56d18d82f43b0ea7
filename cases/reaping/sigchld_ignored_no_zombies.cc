// sigchld_ignored_no_zombies: with SIGCHLD set to SIG_IGN, or SA_NOCLDWAIT,
// exited children are reaped by the kernel: no zombie, and wait() blocks
// until all children are gone and then fails with ECHILD. Is SIGCHLD still
// delivered to a handler installed with SA_NOCLDWAIT?
//   variants: sig_ign, sa_nocldwait_default, sa_nocldwait_handler, default (control)
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>

#include "kpc/probe.h"
#include "kpc/proc.h"

namespace {
std::atomic<int> g_sigchld{0};
void on_chld(int) { g_sigchld.fetch_add(1); }
}  // namespace

int probe_main(kpc::Probe& p) {
  struct sigaction sa {};
  sigemptyset(&sa.sa_mask);
  // The disposition, and whether a handler is there to see SIGCHLD.
  auto set = [&](void (*handler)(int), int flags) {
    sa.sa_handler = handler;
    sa.sa_flags = flags;
    return handler == on_chld;
  };
  bool has_handler = p.dispatch({
      {"sig_ign", [&] { return set(SIG_IGN, 0); }},
      {"sa_nocldwait_default", [&] { return set(SIG_DFL, SA_NOCLDWAIT); }},
      {"sa_nocldwait_handler", [&] { return set(on_chld, SA_NOCLDWAIT); }},
      {"default", [&] { return set(on_chld, 0); }},
  });
  struct sigaction old {};
  KPC_SYS(sigaction(SIGCHLD, &sa, &old));

  // 1. Two children exit at once.
  pid_t a = kpc::fork_or_broken();
  if (a == 0) _exit(3);
  pid_t b = kpc::fork_or_broken();
  if (b == 0) _exit(4);

  // 2. wait(): blocks until both are gone. ECHILD when the kernel reaped them.
  int status = 0, reaped = 0;
  pid_t r;
  while ((r = wait(&status)) > 0 || (r < 0 && errno == EINTR))
    if (r > 0) ++reaped;
  kpc::observe("wait.reaped_by_us", reaped);
  kpc::observe("wait.final_errno", kpc::Errno{errno});
  // 3. Are the PIDs gone? An auto-reaped child is marked EXIT_DEAD (so
  //    wait() already says ECHILD) a moment before release_task() unhashes
  //    its PID: kill(pid, 0) can still succeed right after wait returns
  //    (seen on 7.2 under TCG). Poll up to 2 s; a real zombie stays.
  auto alive = [&] { return (kill(a, 0) == 0) + (kill(b, 0) == 0); };
  int left = alive();
  if (reaped == 0)
    for (int i = 0; i < 200 && left > 0; ++i) {
      usleep(10000);
      left = alive();
    }
  kpc::observe("children_left", left);
  if (has_handler) kpc::observe("sigchld_delivered", g_sigchld.load() > 0);
  KPC_SYS(sigaction(SIGCHLD, &old, nullptr));
  return 0;
}
