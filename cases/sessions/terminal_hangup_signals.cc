// terminal_hangup_signals: what losing the controlling terminal sends.
//   variant tiocnotty:    the session leader gives up its controlling
//                         terminal (ioctl TIOCNOTTY): the foreground group
//                         gets SIGHUP and SIGCONT and loses the terminal
//   variant master_close: the pty's master is closed (the terminal emulator
//                         or sshd went away): the session leader gets
//                         SIGHUP and SIGCONT; the foreground job is told
//                         nothing directly
// S (a new session's leader, its controlling terminal the probe's pty) puts
// F in a foreground group of its own. Both keep SIGHUP, SIGCONT and SIGUSR1
// blocked and report the set of signals that came before a SIGUSR1 marker.
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <string>

#include "kpc/probe.h"
#include "kpc/proc.h"
#include "kpc/siginfo.h"

namespace {
// Signals (of SIGHUP, SIGCONT) that came before the SIGUSR1 marker.
kpc::SigSet collect_until_marker() {
  kpc::SigSet got;
  for (;;) {
    sigset_t all;
    sigemptyset(&all);
    for (int s : {SIGHUP, SIGCONT, SIGUSR1}) sigaddset(&all, s);
    siginfo_t info;
    int s = sigwaitinfo(&all, &info);
    if (s == SIGUSR1) break;
    if (s > 0) got.add(s);
  }
  for (int s : {SIGHUP, SIGCONT})
    if (kpc::take_signal(s, 0)) got.add(s);
  return got;
}
bool has_ctty() {
  auto st = kpc::read_stat(getpid());
  return st && st->tty_nr != 0;
}
}  // namespace

int probe_main(kpc::Probe& p) {
  bool master_close = p.variant_is("master_close", "tiocnotty");
  kpc::ScopedSigmask block(SIG_BLOCK, kpc::SigSet::of({SIGHUP, SIGCONT, SIGUSR1}));
  std::string slave;
  kpc::Fd master = kpc::open_pty_or_skip(&slave);
  kpc::Pipe s_ready = kpc::Pipe::make(O_CLOEXEC), report = kpc::Pipe::make(O_CLOEXEC);
  kpc::Child s = kpc::fork_child([&] {
    master.reset();  // only the probe holds the master
    KPC_SYS(setsid());
    int t = KPC_SYS(open(slave.c_str(), O_RDWR));
    kpc::Pipe f_ready = kpc::Pipe::make(O_CLOEXEC);
    pid_t f = kpc::fork_or_broken();
    if (f == 0) {
      setpgid(0, 0);
      kpc::send_byte(f_ready.write.get());
      kpc::SigSet got = collect_until_marker();
      kpc::send_int(report.write.get(), static_cast<int>(got.bits));
      kpc::send_int(report.write.get(), has_ctty() ? 1 : 0);
      _exit(0);
    }
    setpgid(f, f);
    KPC_CHECK(kpc::recv_byte(f_ready.read.get(), 5000).has_value());
    KPC_SYS(tcsetpgrp(t, f));  // F's group in the foreground
    if (!master_close) {
      KPC_OBSERVE_CALL("leader.tiocnotty", ioctl(t, TIOCNOTTY));
    } else {
      kpc::send_byte(s_ready.write.get());
      // The probe closes the master: wait for what that sends us.
      kpc::observe("leader.got_sighup", kpc::take_signal(SIGHUP, 5000).has_value());
    }
    KPC_SYS(kill(f, SIGUSR1));  // the marker: what came before it came from the hangup
    int st;
    KPC_SYS(waitpid(f, &st, 0));
    kill(getpid(), SIGUSR1);
    kpc::SigSet mine = collect_until_marker();
    if (master_close) mine.add(SIGHUP);  // taken above
    kpc::observe("leader.signals", mine);
    kpc::observe("leader.has_ctty_after", has_ctty());
    close(t);
  });
  if (master_close) {
    KPC_CHECK(kpc::recv_byte(s_ready.read.get(), 5000).has_value());
    master.reset();
  }
  auto bits = kpc::recv_int(report.read.get(), 10000), ctty = kpc::recv_int(report.read.get(), 1000);
  KPC_CHECK(bits && ctty);
  kpc::observe("foreground.signals", kpc::SigSet{static_cast<uint32_t>(*bits)});
  kpc::observe("foreground.has_ctty_after", *ctty == 1);
  kpc::observe("leader.status", kpc::describe_wait_status(s.wait()));
  return 0;
}
