// pidfd_getfd_rules: pidfd_getfd (5.6) duplicates a descriptor of another
// process into the caller: the copy is close-on-exec and is the same open
// file description (status flags set through one are seen through the
// other). An fd number the target does not have is EBADF; a process that
// has been reaped is ESRCH; and it needs ptrace access to the target
// (PTRACE_MODE_ATTACH_REALCREDS): a caller without CAP_SYS_PTRACE is
// refused (EPERM) by a target that made itself non-dumpable.
#include <fcntl.h>
#include <linux/capability.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kpc/caps.h"
#include "kpc/pidfd.h"
#include "kpc/probe.h"

namespace {
using namespace kpc::pidfd;
constexpr int kTargetFd = 50;

// A child holding `fd` as kTargetFd; `dumpable` 0 makes it non-dumpable.
// It says when it is ready, reports its fd's status flags when told, and
// lives until the `go` pipe is closed.
struct Target {
  kpc::Pipe ready = kpc::Pipe::make(O_CLOEXEC), go = kpc::Pipe::make(O_CLOEXEC), flags = kpc::Pipe::make(O_CLOEXEC);
  kpc::Child child;
  Target(int fd, int dumpable) {
    child = kpc::fork_child([&] {
      go.write.reset();  // so that the parent closing it means EOF here
      KPC_SYS(dup2(fd, kTargetFd));
      KPC_SYS(prctl(PR_SET_DUMPABLE, dumpable));
      kpc::send_byte(ready.write.get());
      if (kpc::recv_byte(go.read.get(), 10000)) kpc::send_int(flags.write.get(), fcntl(kTargetFd, F_GETFL));
      kpc::recv_byte(go.read.get(), 10000);  // lives until go is closed
    });
    KPC_CHECK(kpc::recv_byte(ready.read.get(), 5000).has_value());
  }
};

long getfd(pid_t pid, int fd) {
  int pidfd = static_cast<int>(KPC_SYS(syscall(kSysOpen, pid, 0)));
  long r = syscall(kSysGetfd, pidfd, fd, 0);
  int err = errno;
  close(pidfd);
  errno = err;
  return r;
}
}  // namespace

int probe_main(kpc::Probe&) {
  kpc::Pipe p = kpc::Pipe::make(O_CLOEXEC);
  {
    Target t(p.write.get(), 1);
    long probe_r = syscall(kSysGetfd, -1, 0, 0);
    if (probe_r < 0 && errno == ENOSYS) kpc::skip("no pidfd_getfd (Linux 5.6)");
    // 1. Duplicate its fd: close-on-exec, and the same open file.
    long fd = getfd(t.child.pid(), kTargetFd);
    kpc::observe_result("getfd", fd, fd < 0 ? errno : 0);
    if (fd >= 0) {
      kpc::Fd copy(static_cast<int>(fd));
      kpc::observe("copy.cloexec", (fcntl(copy.get(), F_GETFD) & FD_CLOEXEC) != 0);
      KPC_SYS(fcntl(copy.get(), F_SETFL, fcntl(copy.get(), F_GETFL) | O_NONBLOCK));
      kpc::send_byte(t.go.write.get());
      auto fl = kpc::recv_int(t.flags.read.get(), 5000);
      kpc::observe("copy.same_open_file", fl && (*fl & O_NONBLOCK));
    }
    // 2. A number the target does not have.
    kpc::observe("fd_not_open", result(getfd(t.child.pid(), kTargetFd + 1)));
    // 3. After the reap.
    int pidfd = static_cast<int>(KPC_SYS(syscall(kSysOpen, t.child.pid(), 0)));
    t.go.write.reset();
    t.child.wait();
    kpc::observe("after_reap", result(syscall(kSysGetfd, pidfd, kTargetFd, 0)));
    close(pidfd);
  }
  // 4. Without CAP_SYS_PTRACE, from the target's own parent: its
  //    dumpability decides.
  kpc::Child caller = kpc::fork_child([&] {
    kpc::drop_capabilities({CAP_SYS_PTRACE});
    for (int dumpable : {1, 0}) {
      Target t(p.write.get(), dumpable);
      long r = getfd(t.child.pid(), kTargetFd);
      if (r >= 0) close(static_cast<int>(r));
      kpc::observe(dumpable ? "no_cap_sys_ptrace.dumpable_target" : "no_cap_sys_ptrace.nondumpable_target", result(r));
    }
  });
  caller.wait();
  return 0;
}
