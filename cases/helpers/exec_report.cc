// exec_report: the exec side of a scenario. A probe sets up some state,
// creates a process and execs this helper, which records what survived the
// exec — in the new program image, where it matters.
//
//   exec_report --prefix exec --record blocked,ignored,disp:SIGUSR1
//               [--signal-self SIGTERM] [--then-exec PATH ARGS...]
//
// --signal-self SIG   kill(getpid(), SIG) after recording; if still alive,
//                     record <prefix>.after_<sig> = "alive". (If the signal
//                     kills it, the probe sees that in the wait status.)
// --fork-and-wait     fork a child that exits 0 and wait for it: record
//                     <prefix>.wait_own_child = "exited 0", or the errno
//                     (ECHILD when this image auto-reaps its children).
// --then-exec ...     exec the next program (the shell-in-the-middle of
//                     story 001), keeping everything else as it is.
#include <signal.h>
#include <unistd.h>

#include <cctype>
#include <cstring>
#include <string>
#include <vector>

#include "kpc/raii.h"
#include "kpc/record.h"
#include "kpc/state.h"

int main(int argc, char** argv) {
  std::string prefix = "exec", props;
  std::vector<std::string> self_signals;
  bool fork_and_wait = false;
  int i = 1;
  for (; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--prefix" && i + 1 < argc) prefix = argv[++i];
    else if (a == "--record" && i + 1 < argc) props = argv[++i];
    else if (a == "--signal-self" && i + 1 < argc) self_signals.emplace_back(argv[++i]);
    else if (a == "--fork-and-wait") fork_and_wait = true;
    else if (a == "--then-exec") {
      ++i;
      break;
    } else if (a == "--help") {
      std::fputs(
          "usage: exec_report --prefix P --record PROPS [--signal-self SIG] [--fork-and-wait]\n"
          "                   [--then-exec PATH ARGS...]\n",
          stdout);
      return 0;
    } else kpc::broken("exec_report: unknown argument '" + a + "'");
  }

  kpc::record_state(prefix, props);

  if (fork_and_wait) kpc::observe(prefix + ".wait_own_child", kpc::fork_exit_and_wait());

  for (const auto& name : self_signals) {
    auto sig = kpc::signal_number(name);
    if (!sig) kpc::broken("exec_report: unknown signal " + name);
    kill(getpid(), *sig);
    std::string lname = kpc::signal_name(*sig);
    for (char& c : lname) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    kpc::observe(prefix + ".after_" + lname, "alive");
  }

  if (i < argc) {
    execv(argv[i], argv + i);
    kpc::broken(std::string("exec_report: execv ") + argv[i] + ": " + strerror(errno));
  }
  return 0;
}
