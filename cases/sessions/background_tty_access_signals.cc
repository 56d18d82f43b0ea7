// background_tty_access_signals: job control on a terminal. A process in a
// background process group of the terminal's session that reads from it,
// or calls tcsetpgrp() on it, gets SIGTTIN / SIGTTOU -- whose default action
// stops it -- unless the signal is ignored (read: EIO; tcsetpgrp: allowed)
// or blocked (tcsetpgrp: allowed).
//   variants tcsetpgrp_default|tcsetpgrp_ignored|tcsetpgrp_blocked
//            read_default|read_ignored
// The probe makes a pty; S, a new session's leader, opens its slave (its
// controlling terminal, S's group in the foreground) and starts B in a
// background group.
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <string>

#include "kpc/probe.h"

int probe_main(kpc::Probe& p) {
  // What B does (read, or tcsetpgrp), and how it holds that signal (SIGTTIN, SIGTTOU).
  enum class Holds { default_action, ignored, blocked };
  bool do_read = false;
  Holds holds = Holds::default_action;
  auto b_does = [&](bool read, Holds h) {
    do_read = read;
    holds = h;
    return 0;
  };
  p.dispatch({
      {"tcsetpgrp_default", [&] { return b_does(false, Holds::default_action); }},
      {"tcsetpgrp_ignored", [&] { return b_does(false, Holds::ignored); }},
      {"tcsetpgrp_blocked", [&] { return b_does(false, Holds::blocked); }},
      {"read_default", [&] { return b_does(true, Holds::default_action); }},
      {"read_ignored", [&] { return b_does(true, Holds::ignored); }},
  });
  std::string slave;
  kpc::Fd master = kpc::open_pty_or_skip(&slave);
  kpc::Child s = kpc::fork_child([&] {
    KPC_SYS(setsid());
    int t = KPC_SYS(open(slave.c_str(), O_RDWR));  // the session's first terminal: its controlling terminal
    kpc::observe("leader.is_foreground", tcgetpgrp(t) == getpgrp());
    kpc::Pipe ready = kpc::Pipe::make(O_CLOEXEC), go = kpc::Pipe::make(O_CLOEXEC);
    pid_t b = kpc::fork_or_broken();
    if (b == 0) {
      setpgid(0, 0);
      int sig = do_read ? SIGTTIN : SIGTTOU;
      if (holds == Holds::ignored) signal(sig, SIG_IGN);
      if (holds == Holds::blocked) {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, sig);
        sigprocmask(SIG_BLOCK, &set, nullptr);
      }
      kpc::send_byte(ready.write.get());
      kpc::recv_byte(go.read.get(), 5000);
      long r;
      if (do_read) {
        char c;
        r = read(t, &c, 1);
      } else {
        r = tcsetpgrp(t, getpgrp());
      }
      _exit(r >= 0 ? 0 : 100 + errno);
    }
    setpgid(b, b);
    KPC_CHECK(kpc::recv_byte(ready.read.get(), 5000).has_value());
    kpc::observe("background.is_foreground", tcgetpgrp(t) == b);
    kpc::send_byte(go.write.get());
    int st = 0;
    KPC_SYS(waitpid(b, &st, WUNTRACED));
    std::string outcome = WIFEXITED(st) && WEXITSTATUS(st) >= 100 ? kpc::errno_name(WEXITSTATUS(st) - 100)
                          : WIFEXITED(st) && WEXITSTATUS(st) == 0 ? std::string("ok")
                                                                  : kpc::describe_wait_status(st);
    kpc::observe("background.outcome", outcome);
    kpc::observe("background.now_foreground", tcgetpgrp(t) == b);
    if (WIFSTOPPED(st)) {
      kill(b, SIGKILL);
      waitpid(b, &st, 0);
    }
  });
  kpc::observe("leader.status", kpc::describe_wait_status(s.wait()));
  return 0;
}
