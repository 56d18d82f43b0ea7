// autoreap_orphan_under_subreaper: CLONE_AUTOREAP (7.1) promises one parent
// that this child never becomes a zombie and sends no exit signal. What
// does the child's *next* parent see, when the creator exits first and the
// child is reparented to a subreaper (an init, tini, a container shim)?
// Found the hard way: kpc's own launcher (a subreaper that waits for
// SIGCHLD) waited forever for such an orphan.
//   1. The probe becomes a child subreaper and blocks SIGCHLD to take it
//      with sigtimedwait.
//   2. A middle child clones a grandchild with CLONE_AUTOREAP (exit_signal
//      0), sends its PID up and exits; the probe reaps the middle one.
//   3. The grandchild, still waiting on a pipe, now has the probe as its
//      parent: waitpid(WNOHANG) sees a child that is not ready.
//   4. Released, the grandchild exits 7. Does the subreaper get SIGCHLD, a
//      zombie to wait for, or nothing? The pidfd says when it has exited.
#include <fcntl.h>
#include <linux/sched.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <string>

#include "kpc/pidfd.h"
#include "kpc/probe.h"
#include "kpc/proc.h"

namespace {
using namespace kpc::pidfd;

std::string waitpid_result(pid_t pid) {
  int st = 0;
  pid_t w = waitpid(pid, &st, WNOHANG | __WALL);
  if (w > 0) return "reaped: " + kpc::describe_wait_status(st);
  if (w == 0) return "child not ready";
  return kpc::errno_name(errno);
}
}  // namespace

int probe_main(kpc::Probe&) {
  // 1. Subreaper, SIGCHLD taken synchronously.
  KPC_SYS(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0));
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  KPC_SYS(sigprocmask(SIG_BLOCK, &chld, nullptr));
  auto take_sigchld = [&](int ms) {
    timespec ts{ms / 1000, (ms % 1000) * 1000000L};
    siginfo_t si{};
    return sigtimedwait(&chld, &si, &ts) == SIGCHLD;
  };

  // 2. The middle child clones the autoreaped grandchild and leaves.
  kpc::Pipe up = kpc::Pipe::make(O_CLOEXEC), release = kpc::Pipe::make(O_CLOEXEC);
  kpc::Child middle = kpc::fork_child([&] {
    clone_args args{};  // exit_signal 0, as CLONE_AUTOREAP requires
    args.flags = kCloneAutoreap;
    long gc = syscall(kSysClone3, &args, sizeof args);
    if (gc == 0) {
      close(release.write.get());  // EOF, not a hang, if the probe dies first
      char b;
      _exit(read(release.read.get(), &b, 1) >= 0 ? 7 : 8);
    }
    kpc::send_int(up.write.get(), gc > 0 ? static_cast<int>(gc) : -errno);
    return 0;
  });
  up.write.reset();
  auto got = kpc::recv_int(up.read.get(), 5000);
  KPC_CHECK_MSG(got.has_value(), "the middle child sent no PID");
  KPC_CHECK(middle.wait() == 0);
  if (*got == -EINVAL) kpc::skip("clone3 does not know CLONE_AUTOREAP (EINVAL): Linux 7.1 or later");
  KPC_CHECK_MSG(*got > 0, "clone3(CLONE_AUTOREAP): " + kpc::errno_name(-*got));
  const pid_t gc = *got;
  kpc::Fd watch(static_cast<int>(syscall(kSysOpen, gc, 0)));
  KPC_CHECK(watch);
  while (take_sigchld(0)) {}  // the middle child's SIGCHLD

  // 3. Reparented to us, alive, not waitable yet.
  auto st = kpc::read_status(gc);
  KPC_CHECK_MSG(st.has_value(), "cannot read the grandchild's /proc status");
  kpc::observe("orphan.parent_is_subreaper", st->ppid == getpid());
  kpc::observe("orphan.waitpid_while_alive", waitpid_result(-1));

  // 4. It exits: what reaches its new parent?
  kpc::send_byte(release.write.get());
  pollfd p{watch.get(), POLLIN, 0};
  kpc::observe("orphan.pidfd_readable", poll(&p, 1, 5000) == 1);
  kpc::observe("orphan.sigchld_to_subreaper", take_sigchld(500));
  kpc::observe("orphan.waitpid_after_exit", waitpid_result(gc));
  kpc::observe("orphan.waitpid_any_after_exit", waitpid_result(-1));
  return 0;
}
