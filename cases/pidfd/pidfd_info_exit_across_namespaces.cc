// pidfd_info_exit_across_namespaces: PIDFD_INFO_EXIT (6.15) gives the exit
// status of a process through its pidfd even after it was reaped -- to a
// holder in an ancestor PID namespace. A holder in an unrelated (sibling)
// PID namespace, where the process was never visible, is refused: ESRCH,
// and EREMOTE since ab89060fbc92e ("pidfs: return -EREMOTE when
// PIDFD_GET_INFO is called on another ns", 7.0; backported to 6.18.14 and
// 6.19.10, as LTP's ioctl_pidfd06.c notes).
#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "kpc/pidfd.h"
#include "kpc/probe.h"

namespace {
using namespace kpc::pidfd;
std::string exit_of(int pidfd) {
  for (int ms = 0; ms <= 2000; ms += 5) {
    Info info{};
    info.mask = kInfoExit;
    if (ioctl(pidfd, kGetInfo, &info) != 0) return kpc::errno_name(errno);
    if (info.mask & kInfoExit) return kpc::describe_wait_status(info.exit_code);
    usleep(5000);
  }
  return "no exit information";
}
}  // namespace

int probe_main(kpc::Probe&) {
  // 1. A process isolated in a PID namespace of its own, with a pidfd.
  int pidfd = -1;
  clone_args a{};
  a.flags = CLONE_NEWPID | kClonePidfd;
  a.exit_signal = SIGCHLD;
  a.pidfd = reinterpret_cast<uint64_t>(&pidfd);
  kpc::Pipe go = kpc::Pipe::make(O_CLOEXEC);
  long pid = syscall(kSysClone3, &a, sizeof a);
  if (pid == 0) {
    kpc::recv_byte(go.read.get(), 10000);
    _exit(1);
  }
  if (pid < 0 && errno == EPERM) kpc::skip("clone3(CLONE_NEWPID) needs CAP_SYS_ADMIN (EPERM)");
  KPC_SYS(pid);
  kpc::Fd fd(pidfd);
  // Skip where there is no PIDFD_INFO_EXIT (before 6.15).
  Info probe{};
  probe.mask = kInfoExit;
  if (ioctl(fd.get(), kGetInfo, &probe) != 0)
    kpc::skip("no PIDFD_GET_INFO here (" + kpc::errno_name(errno) + "; Linux 6.13, exit information 6.15)");
  // 2. It is killed and reaped; its parent (an ancestor namespace) asks.
  KPC_SYS(kill(static_cast<pid_t>(pid), SIGKILL));
  int st;
  KPC_SYS(waitpid(static_cast<pid_t>(pid), &st, 0));
  std::string mine = exit_of(fd.get());
  if (mine == "no exit information") kpc::skip("PIDFD_INFO_EXIT is not supported (Linux 6.15)");
  kpc::observe("ancestor.exit", mine);
  // 3. A process in a sibling namespace asks through the inherited pidfd.
  kpc::Child sibling = kpc::fork_child_in_new_pidns([&] {
    Info info{};
    info.mask = kInfoExit;
    kpc::observe("sibling.get_info",
                 ioctl(fd.get(), kGetInfo, &info) == 0 ? std::string("ok") : kpc::errno_name(errno));
  });
  sibling.wait();
  return 0;
}
