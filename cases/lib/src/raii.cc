#include "kpc/raii.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "kpc/check.h"
#include "kpc/record.h"

namespace kpc {

Fd& Fd::operator=(Fd&& o) noexcept {
  if (this != &o) reset(o.release());
  return *this;
}

void Fd::reset(int fd) {
  if (fd_ >= 0) close(fd_);
  fd_ = fd;
}

void copy_file_into(const std::string& from, int dirfd, const char* name, mode_t mode) {
  Fd in(KPC_SYS(open(from.c_str(), O_RDONLY | O_CLOEXEC)));
  Fd out(KPC_SYS(openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0700)));
  char buf[65536];
  for (;;) {
    ssize_t n = KPC_SYS(read(in.get(), buf, sizeof buf));
    if (n == 0) break;
    KPC_CHECK(write(out.get(), buf, static_cast<size_t>(n)) == n);
  }
  KPC_SYS(fchmod(out.get(), mode));
}

Fd open_pty_or_skip(std::string* slave) {
  int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (m < 0) skip("posix_openpt: " + errno_name(errno) + " (no /dev/ptmx or devpts here)");
  Fd master(m);
  KPC_SYS(grantpt(m));
  KPC_SYS(unlockpt(m));
  *slave = ptsname(m);
  return master;
}

Pipe Pipe::make(int flags) {
  int fds[2];
  KPC_SYS(pipe2(fds, flags));
  return Pipe{Fd(fds[0]), Fd(fds[1])};
}

void Pipe::wait_for_go(int timeout_ms) {
  write.reset();
  recv_byte(read.get(), timeout_ms);
}

void send_byte(int fd, char c) {
  for (;;) {
    ssize_t n = write(fd, &c, 1);
    if (n == 1) return;
    if (n < 0 && errno == EINTR) continue;
    detail::sys_failed("write(handshake)", __FILE__, __LINE__, errno);
  }
}

void send_int(int fd, int value) {
  for (;;) {
    ssize_t n = write(fd, &value, sizeof value);
    if (n == sizeof value) return;
    if (n < 0 && errno == EINTR) continue;
    detail::sys_failed("write(handshake)", __FILE__, __LINE__, n < 0 ? errno : EIO);
  }
}

void expect_ready(Child& child, int fd, int timeout_ms, std::string_view what) {
  if (recv_byte(fd, timeout_ms)) return;
  auto st = child.wait_for(2000);
  if (st && WIFEXITED(*st) && WEXITSTATUS(*st) == kExitSkip) skip("a process of the probe skipped (reason above)");
  broken(std::string(what) + " (" + (st ? describe_wait_status(*st) : std::string("still running")) + ")");
}

std::optional<int> recv_int(int fd, int timeout_ms) {
  pollfd p{fd, POLLIN, 0};
  for (;;) {
    int r = poll(&p, 1, timeout_ms);
    if (r < 0 && errno == EINTR) continue;  // (restarts the timeout: good enough for handshakes)
    if (r < 0) detail::sys_failed("poll(handshake)", __FILE__, __LINE__, errno);
    if (r == 0) return std::nullopt;
    int value;
    ssize_t n = read(fd, &value, sizeof value);
    if (n < 0 && errno == EINTR) continue;
    if (n != sizeof value) return std::nullopt;  // EOF: the writer is gone
    return value;
  }
}

int64_t monotonic_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

std::optional<char> recv_byte(int fd, int timeout_ms) {
  const int64_t start = monotonic_ms();
  for (;;) {
    int left = timeout_ms;
    if (timeout_ms >= 0) {
      int64_t elapsed = monotonic_ms() - start;
      left = elapsed >= timeout_ms ? 0 : static_cast<int>(timeout_ms - elapsed);
    }
    pollfd p{fd, POLLIN, 0};
    int r = poll(&p, 1, left);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) detail::sys_failed("poll(handshake)", __FILE__, __LINE__, errno);
    if (r == 0) return std::nullopt;
    char c;
    ssize_t n = read(fd, &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n == 1) return c;
    return std::nullopt;
  }
}

std::string describe_wait_status(int status) {
  if (WIFEXITED(status)) return "exited " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "killed " + signal_name(WTERMSIG(status)) + (WCOREDUMP(status) ? " (core)" : "");
  if (WIFSTOPPED(status)) return "stopped " + signal_name(WSTOPSIG(status));
  if (WIFCONTINUED(status)) return "continued";
  return "status " + std::to_string(status);
}

Child& Child::operator=(Child&& o) noexcept {
  if (this != &o) {
    this->~Child();
    pid_ = o.release();
  }
  return *this;
}

Child::~Child() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int st;
  while (waitpid(pid_, &st, __WALL) < 0 && errno == EINTR) {}
}

int Child::wait(int options) {
  KPC_CHECK(pid_ > 0);
  int st = 0;
  for (;;) {
    pid_t r = waitpid(pid_, &st, options);
    if (r == pid_) break;
    if (r < 0 && errno == EINTR) continue;
    detail::sys_failed("waitpid(child)", __FILE__, __LINE__, errno);
  }
  if (!WIFSTOPPED(st) && !WIFCONTINUED(st)) pid_ = -1;
  return st;
}

std::optional<int> Child::wait_for(int timeout_ms, int options) {
  KPC_CHECK(pid_ > 0);
  const int64_t start = monotonic_ms();
  for (int delay_us = 100;; delay_us = delay_us < 10000 ? delay_us * 2 : 10000) {
    int st = 0;
    pid_t r = waitpid(pid_, &st, options | WNOHANG);
    if (r == pid_) {
      if (!WIFSTOPPED(st) && !WIFCONTINUED(st)) pid_ = -1;
      return st;
    }
    if (r < 0 && errno != EINTR) detail::sys_failed("waitpid(child)", __FILE__, __LINE__, errno);
    if (monotonic_ms() - start >= timeout_ms) return std::nullopt;
    usleep(static_cast<useconds_t>(delay_us));
  }
}

void Child::kill(int sig) const {
  if (pid_ > 0) ::kill(pid_, sig);
}

pid_t fork_or_broken() { return KPC_SYS(fork()); }

std::string fork_exit_and_wait() {
  pid_t c = fork_or_broken();
  if (c == 0) _exit(0);
  int status = 0;
  pid_t r = waitpid(c, &status, 0);
  return r == c ? describe_wait_status(status) : errno_name(errno);
}

void observe_setns_then_fork(const std::string& prefix, int nsfd) {
  Child helper = fork_child([&] {
    long rc = setns(nsfd, CLONE_NEWPID);
    observe_result(prefix + ".setns", rc, errno);
    if (rc != 0) return 0;
    pid_t pid = fork();
    if (pid == 0) _exit(0);
    observe_result(prefix + ".fork", pid, errno);
    if (pid > 0) waitpid(pid, nullptr, 0);
    return 0;
  });
  helper.wait();
}

pid_t fork_into_new_pidns_or_skip(unsigned long extra_flags) {
  long pid = syscall(SYS_clone, CLONE_NEWPID | extra_flags | SIGCHLD, nullptr, nullptr, nullptr, nullptr);
  if (pid < 0 && errno == EPERM)
    skip("creating a PID namespace needs CAP_SYS_ADMIN in the current user namespace (EPERM)");
  if (pid < 0) broken("clone(CLONE_NEWPID): " + errno_name(errno));
  return static_cast<pid_t>(pid);
}

Mount& Mount::operator=(Mount&& o) noexcept {
  if (this != &o) {
    this->~Mount();
    target_ = std::exchange(o.target_, {});
  }
  return *this;
}

Mount::~Mount() {
  if (!target_.empty()) umount2(target_.c_str(), MNT_DETACH);
}

ScopedSigaction::ScopedSigaction(int sig, const struct sigaction& act) : sig_(sig) {
  KPC_SYS(sigaction(sig, &act, &old_));
}

ScopedSigaction::ScopedSigaction(int sig, void (*handler)(int), int flags) : sig_(sig) {
  struct sigaction act {};
  act.sa_handler = handler;
  act.sa_flags = flags;
  sigemptyset(&act.sa_mask);
  KPC_SYS(sigaction(sig, &act, &old_));
}

ScopedSigaction::~ScopedSigaction() { sigaction(sig_, &old_, nullptr); }

ScopedSigmask::ScopedSigmask(int how, SigSet set) {
  sigset_t s = set.to_sigset();
  KPC_ERRNUM(pthread_sigmask(how, &s, &old_));
}

ScopedSigmask::~ScopedSigmask() { pthread_sigmask(SIG_SETMASK, &old_, nullptr); }

TempDir::TempDir(const std::string& prefix) {
  const char* base = getenv("KPC_TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/" + prefix + ".XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  KPC_CHECK_MSG(mkdtemp(buf.data()) != nullptr, std::string("mkdtemp ") + tmpl + ": " + strerror(errno));
  path_ = buf.data();
}

TempDir::~TempDir() { remove_tree(path_); }

namespace {

// Empties the directory open as `dirfd` (on device `dev`), by descriptor
// only: every entry is looked at with fstatat(AT_SYMLINK_NOFOLLOW), every
// subdirectory opened with openat(O_NOFOLLOW) and checked to be the same
// inode fstatat saw, every removal is unlinkat() relative to its parent.
// A name swapped for a symlink or another directory between two steps is
// left alone, never followed; nothing on another filesystem is entered.
void empty_dir(int dirfd, dev_t dev, int depth) {
  if (depth > 64) return;
  int dup = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
  if (dup < 0) return;
  DIR* d = fdopendir(dup);
  if (!d) {
    close(dup);
    return;
  }
  std::vector<std::string> names;
  while (dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  closedir(d);
  for (const auto& n : names) {
    struct stat st {};
    if (fstatat(dirfd, n.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    if (!S_ISDIR(st.st_mode)) {
      unlinkat(dirfd, n.c_str(), 0);
      continue;
    }
    if (st.st_dev != dev) continue;  // a mount point: not ours to empty
    Fd sub(openat(dirfd, n.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    struct stat again {};
    if (!sub || fstat(sub.get(), &again) != 0 || again.st_dev != st.st_dev || again.st_ino != st.st_ino) continue;
    empty_dir(sub.get(), dev, depth + 1);
    unlinkat(dirfd, n.c_str(), AT_REMOVEDIR);
  }
}

}  // namespace

void remove_tree(const std::string& path) {
  // The parent is opened by path (it is ours: $TMPDIR or the run
  // directory); from there on, descriptors only.
  auto slash = path.find_last_of('/');
  std::string parent = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  if (name.empty() || name == "." || name == "..") return;
  Fd pfd(open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!pfd) return;
  struct stat st {};
  if (fstatat(pfd.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode)) return;
  Fd dfd(openat(pfd.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  struct stat again {};
  if (!dfd || fstat(dfd.get(), &again) != 0 || again.st_dev != st.st_dev || again.st_ino != st.st_ino) return;
  empty_dir(dfd.get(), st.st_dev, 0);
  unlinkat(pfd.get(), name.c_str(), AT_REMOVEDIR);
}

}  // namespace kpc
