// pidfd_features: which pidfd features this kernel has, and how they behave,
// one variant each: a pidfd's life, pidfd_open's flags, CLONE_PIDFD and
// process_mrelease.
// Every call uses the raw syscall number, so a probe built on new headers
// runs on old kernels; a missing feature is an observation (its errno), not
// a crash. The expected table states from which version each one holds.
#include <fcntl.h>
#include <linux/sched.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

#include "kpc/pidfd.h"
#include "kpc/probe.h"

namespace {
using namespace kpc::pidfd;

// A child that waits on a pipe until told to exit with status 3.
struct Sleeper {
  kpc::Pipe go = kpc::Pipe::make(O_CLOEXEC);
  pid_t pid = kpc::fork_or_broken();
  Sleeper() {
    if (pid == 0) {
      go.write.reset();
      kpc::recv_byte(go.read.get(), 10000);
      _exit(3);
    }
  }
  void release() { kpc::send_byte(go.write.get()); }
};

short poll_events(int fd) {
  pollfd p{fd, POLLIN, 0};
  return poll(&p, 1, 2000) == 1 ? p.revents : 0;
}
std::string revents_name(short r) {
  std::string s;
  if (r & POLLIN) s += "POLLIN";
  if (r & POLLHUP) s += std::string(s.empty() ? "" : "|") + "POLLHUP";
  return s.empty() ? "none" : s;
}

// pidfd_open (5.3) and a pidfd's life: getfd, send_signal with its flags,
// exit, waitid(P_PIDFD), reap, PIDFD_GET_INFO, a signal after the reap.
int lifecycle() {
  // 1. close-on-exec; read() refused.
  Sleeper a;
  long fd = syscall(kSysOpen, a.pid, 0);
  kpc::observe("pidfd_open", result(fd));
  if (fd >= 0) {
    kpc::Fd pidfd(static_cast<int>(fd));
    kpc::observe("pidfd_open.cloexec", (fcntl(pidfd.get(), F_GETFD) & FD_CLOEXEC) != 0);
    char c;
    kpc::observe("pidfd_read", result(read(pidfd.get(), &c, 1)));
    // 2. pidfd_getfd (5.6): duplicate the child's fd 0.
    long dup = syscall(kSysGetfd, pidfd.get(), 0, 0);
    kpc::observe("pidfd_getfd", result(dup));
    if (dup >= 0) close(static_cast<int>(dup));
    // 3. pidfd_send_signal (5.1) with flags (6.9) and on a live process.
    kpc::observe("pidfd_send_signal", result(syscall(kSysSendSignal, pidfd.get(), 0, nullptr, 0)));
    kpc::observe("pidfd_send_signal.thread_group_flag",
                 result(syscall(kSysSendSignal, pidfd.get(), 0, nullptr, kSignalThreadGroup)));
    kpc::observe("pidfd_send_signal.process_group_flag",
                 result(syscall(kSysSendSignal, pidfd.get(), 0, nullptr, kSignalProcessGroup)));
    // 4. The child exits: POLLIN; then waitid(P_PIDFD) (5.4) reaps it.
    a.release();
    kpc::observe("poll_after_exit", revents_name(poll_events(pidfd.get())));
    siginfo_t info{};
    long w = syscall(SYS_waitid, kPPidfd, pidfd.get(), &info, WEXITED, nullptr);
    kpc::observe("waitid_p_pidfd", result(w));
    if (w < 0) waitpid(a.pid, nullptr, 0);
    else kpc::observe("waitid_p_pidfd.status", info.si_status);
    kpc::observe("poll_after_reap", revents_name(poll_events(pidfd.get())));
    // 5. PIDFD_GET_INFO (6.13), and exit information after reap (6.15).
    Info pi{};
    pi.mask = kInfoExit;
    long r = ioctl(pidfd.get(), kGetInfo, &pi);
    kpc::observe("pidfd_get_info_after_reap", result(r));
    if (r == 0) kpc::observe("pidfd_get_info.exit_known", (pi.mask & kInfoExit) != 0);
    // 6. Signalling a reaped process: ESRCH.
    kpc::observe("pidfd_send_signal.after_reap", result(syscall(kSysSendSignal, pidfd.get(), 0, nullptr, 0)));
  } else {
    a.release();
    waitpid(a.pid, nullptr, 0);
  }
  return 0;
}

// PIDFD_NONBLOCK (5.10) and PIDFD_THREAD (6.9) flags of pidfd_open.
int open_flags() {
  for (auto [flag, key] : {std::pair{kNonblock, "pidfd_open.nonblock"}, std::pair{kThread, "pidfd_open.thread"}}) {
    long f = syscall(kSysOpen, getpid(), flag);
    kpc::observe(key, result(f));
    if (f >= 0) close(static_cast<int>(f));
  }
  return 0;
}

// CLONE_PIDFD (5.2) through clone3 (5.3).
int clone_pidfd() {
  int cfd = -1;
  clone_args args{};
  args.flags = kClonePidfd;
  args.pidfd = reinterpret_cast<uint64_t>(&cfd);
  args.exit_signal = SIGCHLD;
  long c = syscall(kSysClone3, &args, sizeof args);
  if (c == 0) _exit(0);
  kpc::observe("clone3_clone_pidfd", result(c));
  if (c > 0) {
    waitpid(static_cast<pid_t>(c), nullptr, 0);
    kpc::observe("clone3_clone_pidfd.got_fd", cfd >= 0);
    if (cfd >= 0) close(cfd);
  }
  return 0;
}

// process_mrelease (5.15) on a live process: EINVAL (it must be dying);
// ENOSYS where the call does not exist.
int mrelease() {
  long self = syscall(kSysOpen, getpid(), 0);
  if (self >= 0) {
    kpc::observe("process_mrelease_live", result(syscall(kSysProcessMrelease, self, 0)));
    close(static_cast<int>(self));
  }
  return 0;
}
}  // namespace

int probe_main(kpc::Probe& p) {
  return p.dispatch({
      {"lifecycle", lifecycle},
      {"open_flags", open_flags},
      {"clone_pidfd", clone_pidfd},
      {"mrelease", mrelease},
  });
}
