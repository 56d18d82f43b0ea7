#include "kpc/state.h"

#include <dirent.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <vector>

#include "kpc/check.h"
#include "kpc/record.h"

namespace kpc {
namespace {

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool itimer_armed(int which) {
  itimerval v{};
  KPC_SYS(getitimer(which, &v));
  return v.it_value.tv_sec != 0 || v.it_value.tv_usec != 0;
}

int posix_timer_count() {
  // /proc/PID/timers lists one "ID:" line per POSIX timer
  // (CONFIG_CHECKPOINT_RESTORE); -1 when the file is absent.
  auto text = read_text("/proc/self/timers");
  if (!text) return -1;
  // Count lines that start with "ID:" ("ClockID:" contains it too).
  int n = 0;
  size_t pos = 0;
  while (pos < text->size()) {
    if (text->compare(pos, 3, "ID:") == 0) ++n;
    size_t nl = text->find('\n', pos);
    if (nl == std::string::npos) break;
    pos = nl + 1;
  }
  return n;
}

SigSet single(long sig) {
  SigSet s;
  if (sig > 0) s.add(static_cast<int>(sig));
  return s;
}

}  // namespace

ProcStatus self_status() {
  auto st = read_self_status();
  KPC_CHECK_MSG(st && st->has_signals, "cannot read /proc/thread-self/status");
  return *st;
}

std::string disposition_of(int sig) {
  struct sigaction old {};
  if (sigaction(sig, nullptr, &old) != 0) return "invalid";
  if (old.sa_handler == SIG_DFL && !(old.sa_flags & SA_SIGINFO)) return "default";
  if (old.sa_handler == SIG_IGN && !(old.sa_flags & SA_SIGINFO)) return "ignore";
  return "handler";
}

std::string sa_flags_of(int sig) {
  struct sigaction old {};
  if (sigaction(sig, nullptr, &old) != 0) return "invalid";
  static const std::pair<int, const char*> kFlags[] = {{SA_NOCLDSTOP, "SA_NOCLDSTOP"},
                                                       {SA_NOCLDWAIT, "SA_NOCLDWAIT"},
                                                       {SA_SIGINFO, "SA_SIGINFO"},
                                                       {SA_ONSTACK, "SA_ONSTACK"},
                                                       {SA_RESTART, "SA_RESTART"},
                                                       {SA_NODEFER, "SA_NODEFER"},
                                                       {static_cast<int>(SA_RESETHAND), "SA_RESETHAND"}};
  std::string out;
  for (auto [bit, name] : kFlags)
    if (old.sa_flags & bit) out += (out.empty() ? "" : "|") + std::string(name);
  return out.empty() ? "none" : out;
}

std::string open_fds_above_stdio() {
  std::vector<int> fds;
  DIR* d = opendir("/proc/self/fd");
  KPC_CHECK_MSG(d != nullptr, "opendir /proc/self/fd");
  int self = dirfd(d), skip = observation_fd();  // the channel is kpc's, not the process's state
  while (dirent* e = readdir(d)) {
    if (!std::isdigit(static_cast<unsigned char>(e->d_name[0]))) continue;
    int fd = atoi(e->d_name);
    if (fd > 2 && fd != self && fd != skip) fds.push_back(fd);
  }
  closedir(d);
  std::sort(fds.begin(), fds.end());
  if (fds.empty()) return "none";
  std::string out;
  for (int fd : fds) out += (out.empty() ? "" : ",") + std::to_string(fd);
  return out;
}

void consume_pending(SigSet signals) {
  sigset_t set = signals.to_sigset();
  timespec zero{};
  while (sigtimedwait(&set, nullptr, &zero) > 0) {}
}

void record_state(std::string_view prefix, std::string_view properties) {
  ProcStatus st = self_status();
  auto key = [&](std::string_view name) { return std::string(prefix) + "." + std::string(name); };
  while (!properties.empty()) {
    size_t comma = properties.find(',');
    std::string prop(properties.substr(0, comma));
    properties.remove_prefix(comma == std::string_view::npos ? properties.size() : comma + 1);
    if (prop.empty()) continue;

    if (prop == "blocked") observe(key(prop), st.sig_blk);
    else if (prop == "ignored") observe(key(prop), st.sig_ign);
    else if (prop == "caught") observe(key(prop), st.sig_cgt);
    else if (prop == "pending") observe(key(prop), st.sig_pnd);
    else if (prop == "shared_pending") observe(key(prop), st.shd_pnd);
    else if (prop == "altstack") {
      stack_t ss{};
      KPC_SYS(sigaltstack(nullptr, &ss));
      observe(key(prop), (ss.ss_flags & SS_DISABLE) ? "disabled" : "enabled");
    } else if (prop == "pdeathsig") {
      int sig = 0;
      KPC_SYS(prctl(PR_GET_PDEATHSIG, &sig));
      observe(key(prop), single(sig));
    } else if (prop == "subreaper") {
      int on = 0;
      KPC_SYS(prctl(PR_GET_CHILD_SUBREAPER, &on));
      observe(key(prop), on != 0);
    } else if (prop == "itimer_real") observe(key(prop), itimer_armed(ITIMER_REAL));
    else if (prop == "itimer_virtual") observe(key(prop), itimer_armed(ITIMER_VIRTUAL));
    else if (prop == "itimer_prof") observe(key(prop), itimer_armed(ITIMER_PROF));
    else if (prop == "posix_timers") observe(key(prop), posix_timer_count());
    else if (prop == "exit_signal") {
      auto stat = read_stat(getpid());
      KPC_CHECK(stat.has_value());
      observe(key(prop), single(stat->exit_signal));
    } else if (prop == "pgrp_leader") observe(key(prop), getpgrp() == getpid());
    else if (prop == "session_leader") observe(key(prop), getsid(0) == getpid());
    else if (prop == "has_ctty") {
      auto stat = read_stat(getpid());
      KPC_CHECK(stat.has_value());
      observe(key(prop), stat->tty_nr != 0);
    } else if (prop == "no_new_privs") observe(key(prop), prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1);
    else if (prop == "fds") observe(key(prop), open_fds_above_stdio());
    else if (prop == "threads") observe(key(prop), st.threads);
    else if (prop == "euid_is_root") observe(key(prop), geteuid() == 0);
    else if (prop == "tid_is_pid") observe(key(prop), gettid() == getpid());
    else if (prop.starts_with("disp:") || prop.starts_with("flags:")) {
      bool disp = prop.starts_with("disp:");
      std::string name = prop.substr(prop.find(':') + 1);
      auto sig = signal_number(name);
      if (!sig) broken("record_state: unknown signal in '" + prop + "'");
      std::string k = key((disp ? "disp." : "flags.") + lower(signal_name(*sig)));
      observe(k, disp ? disposition_of(*sig) : sa_flags_of(*sig));
    } else {
      broken("record_state: unknown property '" + prop + "'");
    }
  }
}

}  // namespace kpc
