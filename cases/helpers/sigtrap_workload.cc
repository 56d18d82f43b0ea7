// sigtrap_workload: the workload of runtime_delivers_every_signal, a C
// stand-in for podman's test/system/130-kill.bats container (a shell that
// traps every signal). Like a shell's `trap`, it installs a handler only
// for a signal that was not ignored when it started (POSIX: a
// non-interactive shell cannot trap a signal ignored on entry -- how crun's
// SIGPIPE-ignore regression, containers/crun#2058, showed). Every catchable
// signal 1..64 except SIGKILL, SIGSTOP and glibc's internal 32 and 33.
//
// Reports on fd 3 or $KPC_OBS_FD: "ignored HEX" (the signals ignored on
// entry), "ready PID", then "sig N" per signal received. Exits 0 once every
// trapped signal has come, or 10 s after the last one, or after 90 s.
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <string>

namespace {

int g_out = 3;
std::atomic<uint64_t> g_got{0};  // distinct signals received (one may come twice)
volatile sig_atomic_t g_last = 0;

void on_signal(int sig) {
  char buf[16];
  int n = snprintf(buf, sizeof buf, "sig %d\n", sig);
  (void)!write(g_out, buf, n);
  g_got.fetch_or(uint64_t{1} << (sig - 1));
  g_last = static_cast<sig_atomic_t>(time(nullptr));
}

bool catchable(int s) { return s != SIGKILL && s != SIGSTOP && s != 32 && s != 33; }

}  // namespace

int main() {
  if (const char* fd = getenv("KPC_OBS_FD"); fd && *fd >= '0' && *fd <= '9') g_out = atoi(fd);
  unsigned long long ignored = 0;
  uint64_t trapped = 0;
  for (int s = 1; s <= 64; ++s) {
    if (!catchable(s)) continue;
    struct sigaction old {};
    if (sigaction(s, nullptr, &old) != 0) continue;
    if (old.sa_handler == SIG_IGN) {
      ignored |= 1ULL << (s - 1);
      continue;  // a shell's trap would not take it either
    }
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);  // a signal arriving meanwhile is taken at once, not left pending
    if (sigaction(s, &sa, nullptr) == 0) trapped |= uint64_t{1} << (s - 1);
  }
  // Delivery is what is judged, not the mask (inherited_signal_state's job).
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  char line[64];
  snprintf(line, sizeof line, "ignored %016llx\n", ignored);
  (void)!write(g_out, line, strlen(line));
  std::string ready = "ready " + std::to_string(getpid()) + "\n";
  (void)!write(g_out, ready.data(), ready.size());
  const time_t start = time(nullptr);
  for (;;) {
    usleep(20000);
    time_t now = time(nullptr);
    uint64_t got = g_got.load();
    if ((got & trapped) == trapped || now - start > 90) break;
    if (got && now - g_last >= 10) break;
  }
  return 0;
}
