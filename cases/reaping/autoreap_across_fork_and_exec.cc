// autoreap_across_fork_and_exec: a parent that set SIGCHLD to SIG_IGN, or
// SA_NOCLDWAIT, never gets zombies. What does its child inherit across
// fork, and what is left after the child execs a new program? The child
// (and the program it execs) each fork a grandchild and wait for it: ECHILD
// means they auto-reap too.
//   variant sig_ign:              SIGCHLD = SIG_IGN
//   variant nocldwait_default:    SIGCHLD = SIG_DFL with SA_NOCLDWAIT
//   variant nocldwait_handler:    SIGCHLD = a handler with SA_NOCLDWAIT
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "kpc/probe.h"
#include "kpc/state.h"

extern char** environ;

namespace {
constexpr const char* kProps = "disp:SIGCHLD,flags:SIGCHLD";
void on_chld(int) {}
}  // namespace

int probe_main(kpc::Probe& p) {
  struct sigaction sa {};
  sigemptyset(&sa.sa_mask);
  auto set_ign = [&] { sa.sa_handler = SIG_IGN; };
  auto set_dfl = [&] {
    sa.sa_handler = SIG_DFL;
    sa.sa_flags = SA_NOCLDWAIT;
  };
  auto set_handler = [&] {
    sa.sa_handler = on_chld;
    sa.sa_flags = SA_NOCLDWAIT | SA_RESTART;
  };
  KPC_CHECK(p.dispatch({{"sig_ign",
                         [&] {
                           set_ign();
                           return 0;
                         }},
                        {"nocldwait_default",
                         [&] {
                           set_dfl();
                           return 0;
                         }},
                        {"nocldwait_handler", [&] {
                           set_handler();
                           return 0;
                         }}}) == 0);
  const std::string helper = p.helper("exec_report");

  // 1. The scenario's parent is a child of the probe, so the probe can still
  //    wait for it; the parent sets SIGCHLD and checks itself first.
  kpc::Child parent = kpc::fork_child([&] {
    KPC_SYS(sigaction(SIGCHLD, &sa, nullptr));
    kpc::record_state("parent", kProps);
    kpc::observe("parent.wait_own_child", kpc::fork_exit_and_wait());
    // 2. Its child: what fork kept, then exec of exec_report, which records
    //    again and forks and waits in the new image.
    kpc::Pipe done = kpc::Pipe::make(O_CLOEXEC);
    pid_t c = kpc::fork_or_broken();
    if (c == 0) {
      done.read.reset();
      KPC_SYS(fcntl(done.write.get(), F_SETFD, 0));  // held open across exec: EOF = finished
      kpc::record_state("child", kProps);
      kpc::observe("child.wait_own_child", kpc::fork_exit_and_wait());
      std::string hp = helper;
      char* argv[] = {hp.data(),
                      const_cast<char*>("--prefix"),
                      const_cast<char*>("exec"),
                      const_cast<char*>("--record"),
                      const_cast<char*>(kProps),
                      const_cast<char*>("--fork-and-wait"),
                      nullptr};
      execve(argv[0], argv, environ);
      kpc::broken(std::string("execve: ") + strerror(errno));
    }
    done.write.reset();
    // 3. The exec'd program is done when the pipe reads EOF; then the parent
    //    tries to wait for it (it auto-reaps, so ECHILD is expected).
    KPC_CHECK(!kpc::recv_byte(done.read.get(), 5000).has_value());
    int status = 0;
    pid_t r = waitpid(c, &status, 0);
    kpc::observe("parent.wait_for_child", r == c ? kpc::describe_wait_status(status) : kpc::errno_name(errno));
    return 0;
  });
  kpc::observe("parent.status", kpc::describe_wait_status(parent.wait()));
  return 0;
}
