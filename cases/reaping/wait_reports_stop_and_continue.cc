// wait_reports_stop_and_continue: a parent learns that its child stopped
// (SIGSTOP) and continued (SIGCONT) only when it asks: WUNTRACED/WSTOPPED
// and WCONTINUED. Each change is reported once; a plain wait sees neither.
//   variant waitpid: waitpid(pid, WUNTRACED / WCONTINUED)
//   variant waitid:  waitid(P_PID, WSTOPPED / WCONTINUED): CLD_STOPPED, CLD_CONTINUED
//   variant pidfd:   waitid(P_PIDFD, ...) (5.4), SIGCONT sent with pidfd_send_signal
#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kpc/pidfd.h"
#include "kpc/probe.h"
#include "kpc/siginfo.h"

namespace {
using namespace kpc::pidfd;

// One way of asking: returns the report in the table's words, "none" when
// there is nothing to report (WNOHANG), or the errno name.
enum class How { waitpid, waitid, pidfd };

struct Waiter {
  How how;
  pid_t pid;
  int pidfd = -1;

  std::string ask(int options) const {
    if (how == How::waitpid) {
      int st = 0;
      // waitpid always reports exits; WUNTRACED is waitid's WSTOPPED.
      int wopts = (options & WSTOPPED ? WUNTRACED : 0) | (options & (WCONTINUED | WNOHANG));
      pid_t r = waitpid(pid, &st, wopts);
      if (r < 0) return kpc::errno_name(errno);
      return r == 0 ? "none" : kpc::describe_wait_status(st);
    }
    siginfo_t si{};
    long r = how == How::waitid ? syscall(SYS_waitid, P_PID, pid, &si, options, nullptr)
                                : syscall(SYS_waitid, kPPidfd, pidfd, &si, options, nullptr);
    if (r < 0) return kpc::errno_name(errno);
    return kpc::describe_child_siginfo(si);
  }
};
}  // namespace

int probe_main(kpc::Probe& p) {
  How how = How::waitpid;
  auto asks_by = [&](How h) {
    how = h;
    return 0;
  };
  p.dispatch({
      {"waitpid", [&] { return asks_by(How::waitpid); }},
      {"waitid", [&] { return asks_by(How::waitid); }},
      {"pidfd", [&] { return asks_by(How::pidfd); }},
  });
  // 1. A child that waits on a pipe and exits 0 when told.
  kpc::Pipe go = kpc::Pipe::make(O_CLOEXEC);
  kpc::Child child = kpc::fork_child([&] { go.wait_for_go(20000); });
  go.read.reset();
  Waiter w{how, child.pid()};
  kpc::Fd pidfd;
  if (how == How::pidfd) {
    long fd = syscall(kSysOpen, child.pid(), 0);
    if (fd < 0 && errno == ENOSYS) kpc::skip("no pidfd_open (Linux 5.3)");
    pidfd.reset(static_cast<int>(KPC_SYS(fd)));
    w.pidfd = pidfd.get();
    siginfo_t si{};
    if (syscall(SYS_waitid, kPPidfd, w.pidfd, &si, WEXITED | WNOHANG, nullptr) < 0 && errno == EINVAL)
      kpc::skip("waitid(P_PIDFD) is refused (EINVAL): it arrived in Linux 5.4");
  }

  // 2. Stop it. The stop is reported to WUNTRACED/WSTOPPED (this wait is
  //    also the event: it returns once the child has stopped), then never again.
  KPC_SYS(kill(child.pid(), SIGSTOP));
  kpc::observe("stop.report", w.ask(WSTOPPED));
  kpc::observe("stop.report_again", w.ask(WSTOPPED | WNOHANG));
  kpc::observe("stop.exit_wait_sees", w.ask(WEXITED | WNOHANG));

  // 3. Continue it (through the pidfd in that variant): WCONTINUED reports it once.
  if (how == How::pidfd) KPC_SYS(syscall(kSysSendSignal, w.pidfd, SIGCONT, nullptr, 0));
  else KPC_SYS(kill(child.pid(), SIGCONT));
  kpc::observe("continue.report", w.ask(WCONTINUED));
  kpc::observe("continue.report_again", w.ask(WCONTINUED | WNOHANG));

  // 4. Let it exit; the exit is reported as usual.
  kpc::send_byte(go.write.get());
  kpc::observe("exit.report", w.ask(WEXITED));
  child.release();
  return 0;
}
