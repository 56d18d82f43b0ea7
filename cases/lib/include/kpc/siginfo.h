// siginfo_t in the words the tables use: what a SIGCHLD or a waitid() says
// about a child, who sent a signal, and taking one pending signal.
#pragma once

#include <signal.h>

#include <optional>
#include <string>

namespace kpc {

// A child's state change as siginfo reports it (SIGCHLD, waitid):
// "CLD_EXITED 42", "CLD_KILLED SIGKILL", "CLD_DUMPED SIGABRT",
// "CLD_STOPPED SIGSTOP", "CLD_CONTINUED SIGCONT", "CLD_TRAPPED SIGTRAP";
// "none" when si_pid is 0 (waitid(WNOHANG) found nothing).
std::string describe_child_siginfo(const siginfo_t& si);

// The si_code's name for a signal: "SI_USER", "SI_QUEUE", "SI_TKILL",
// "SI_KERNEL", "CLD_EXITED", ...; "code N" when it has none here.
std::string si_code_name(int signo, int code);

// Dequeues one pending `sig` (which the caller has blocked), waiting up to
// timeout_ms for it (0: only if it is pending now). nullopt when none came.
std::optional<siginfo_t> take_signal(int sig, int timeout_ms);

}  // namespace kpc
