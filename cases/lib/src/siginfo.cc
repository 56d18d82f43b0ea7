#include "kpc/siginfo.h"

#include <time.h>

#include <cerrno>

#include "kpc/check.h"
#include "kpc/signals.h"

namespace kpc {

std::string si_code_name(int signo, int code) {
  switch (code) {
    case SI_USER:
      return "SI_USER";
    case SI_QUEUE:
      return "SI_QUEUE";
    case SI_TKILL:
      return "SI_TKILL";
    case SI_KERNEL:
      return "SI_KERNEL";
    case SI_TIMER:
      return "SI_TIMER";
    case SI_MESGQ:
      return "SI_MESGQ";
    case SI_ASYNCIO:
      return "SI_ASYNCIO";
    case SI_SIGIO:
      return "SI_SIGIO";
    default:
      break;
  }
  if (signo == SIGCHLD) {
    switch (code) {
      case CLD_EXITED:
        return "CLD_EXITED";
      case CLD_KILLED:
        return "CLD_KILLED";
      case CLD_DUMPED:
        return "CLD_DUMPED";
      case CLD_TRAPPED:
        return "CLD_TRAPPED";
      case CLD_STOPPED:
        return "CLD_STOPPED";
      case CLD_CONTINUED:
        return "CLD_CONTINUED";
      default:
        break;
    }
  }
  return "code " + std::to_string(code);
}

std::string describe_child_siginfo(const siginfo_t& si) {
  if (si.si_pid == 0 && si.si_signo == 0) return "none";
  std::string code = si_code_name(SIGCHLD, si.si_code);
  if (si.si_code == CLD_EXITED) return code + " " + std::to_string(si.si_status);
  return code + " " + signal_name(si.si_status);
}

std::optional<siginfo_t> take_signal(int sig, int timeout_ms) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, sig);
  timespec ts{timeout_ms / 1000, (timeout_ms % 1000) * 1000000L};
  siginfo_t si{};
  for (;;) {
    int r = sigtimedwait(&set, &si, &ts);
    if (r == sig) return si;
    if (r < 0 && errno == EINTR) continue;  // (restarts the timeout: good enough here)
    if (r < 0 && errno == EAGAIN) return std::nullopt;
    detail::sys_failed("sigtimedwait", __FILE__, __LINE__, errno);
  }
}

}  // namespace kpc
