// RAII owners for what probes create: descriptors, children, mounts,
// signal dispositions and masks, temporary directories.
#pragma once

#include <signal.h>
#include <sys/types.h>
#include <unistd.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

#include "kpc/signals.h"

namespace kpc {

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }

  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

struct Pipe {
  Fd read, write;
  static Pipe make(int flags = 0);  // pipe2() flags, e.g. O_CLOEXEC
  // In a child that shares the pipe: close this copy of the write end, then
  // wait until the parent writes a byte or closes its end (or timeout_ms).
  void wait_for_go(int timeout_ms = 10000);
};

// A new pseudo-terminal: its master (O_NOCTTY, close-on-exec), granted and
// unlocked; *slave is the slave's path. Skips the probe where there is no
// /dev/ptmx or devpts.
Fd open_pty_or_skip(std::string* slave);

// A new file `name` in `dirfd` (never an existing one, never through a
// link) with the bytes of `from`, then chmod `mode` (after writing: a write
// clears S_ISUID). How a probe makes its own copy of a helper to give it
// file capabilities or a set-user-ID bit.
void copy_file_into(const std::string& from, int dirfd, const char* name, mode_t mode);

// Milliseconds on CLOCK_MONOTONIC, for deadlines.
int64_t monotonic_ms();

// Handshakes over pipes or socketpairs: one byte each way, no sleeps.
void send_byte(int fd, char c = 'x');
// The byte, or nullopt on EOF (the other side is gone) or timeout.
std::optional<char> recv_byte(int fd, int timeout_ms = -1);
// The same for one int (a pid, an errno): one atomic pipe write each.
void send_int(int fd, int value);
std::optional<int> recv_int(int fd, int timeout_ms = -1);

// How a process ended, in the words the tables use:
// "exited 0", "killed SIGKILL", "killed SIGABRT (core)", "stopped SIGSTOP".
std::string describe_wait_status(int status);

// fork() a child that _exit(0)s at once and waitpid() for it: "exited 0", or
// the errno name when the wait fails (ECHILD where children are auto-reaped).
std::string fork_exit_and_wait();

class Child {
 public:
  Child() = default;
  explicit Child(pid_t pid) : pid_(pid) {}
  Child(Child&& o) noexcept : pid_(std::exchange(o.pid_, -1)) {}
  Child& operator=(Child&& o) noexcept;
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  // An unreaped child is SIGKILLed and reaped, so no probe leaves zombies.
  ~Child();

  pid_t pid() const { return pid_; }
  explicit operator bool() const { return pid_ > 0; }
  // Reap; returns the raw wait status. `options` adds __WALL etc.
  int wait(int options = 0);
  // Reap within timeout_ms, or nullopt (child left running and owned).
  std::optional<int> wait_for(int timeout_ms, int options = 0);
  void kill(int sig = SIGKILL) const;
  pid_t release() { return std::exchange(pid_, -1); }

 private:
  pid_t pid_ = -1;
};

pid_t fork_or_broken();

// Waits for a child's "ready" byte on `fd`. If the child ended instead: one
// that skipped (its reason is already recorded) skips the probe too; any
// other end makes the probe broken, naming `what` and the child's status.
void expect_ready(Child& child, int fd, int timeout_ms, std::string_view what);

// Runs a child's body and _exit()s with its result (0 for void).
template <typename F>
[[noreturn]] void run_child_body(F&& fn) {
  if constexpr (std::is_void_v<std::invoke_result_t<F>>) {
    fn();
    _exit(0);
  } else {
    _exit(static_cast<int>(fn()));
  }
}

// fork(); the child runs fn and _exit()s with its return value (0 when fn
// returns void). The child never returns into the caller's stack.
template <typename F>
Child fork_child(F&& fn) {
  pid_t pid = fork_or_broken();
  if (pid == 0) run_child_body(fn);
  return Child(pid);
}

// clone(CLONE_NEWPID | extra | SIGCHLD) with fork semantics: the child is
// PID 1 of a new PID namespace. Without the privilege for it (EPERM) the
// probe is skipped with the reason.
pid_t fork_into_new_pidns_or_skip(unsigned long extra_flags = 0);

template <typename F>
Child fork_child_in_new_pidns(F&& fn, unsigned long extra_flags = 0) {
  pid_t pid = fork_into_new_pidns_or_skip(extra_flags);
  if (pid == 0) run_child_body(fn);
  return Child(pid);
}

// How "docker exec" enters a PID namespace: in a helper process (so the
// caller's pid_for_children stays as it was) setns(nsfd, CLONE_NEWPID), then
// fork(). Records "<prefix>.setns" and, when that worked, "<prefix>.fork",
// each "ok" or the errno name; reaps the helper and the forked child.
void observe_setns_then_fork(const std::string& prefix, int nsfd);

class Mount {
 public:
  Mount() = default;
  explicit Mount(std::string target) : target_(std::move(target)) {}
  Mount(Mount&& o) noexcept : target_(std::exchange(o.target_, {})) {}
  Mount& operator=(Mount&& o) noexcept;
  Mount(const Mount&) = delete;
  Mount& operator=(const Mount&) = delete;
  ~Mount();  // umount2(MNT_DETACH)
  const std::string& target() const { return target_; }
  void release() { target_.clear(); }

 private:
  std::string target_;
};

// Installs a disposition for `sig` and restores the previous one.
class ScopedSigaction {
 public:
  ScopedSigaction(int sig, const struct sigaction& act);
  ScopedSigaction(int sig, void (*handler)(int), int flags = 0);
  ~ScopedSigaction();
  ScopedSigaction(const ScopedSigaction&) = delete;
  ScopedSigaction& operator=(const ScopedSigaction&) = delete;

 private:
  int sig_;
  struct sigaction old_ {};
};

// sigprocmask(how, set) and restore the previous mask.
class ScopedSigmask {
 public:
  ScopedSigmask(int how, SigSet set);
  ~ScopedSigmask();
  ScopedSigmask(const ScopedSigmask&) = delete;
  ScopedSigmask& operator=(const ScopedSigmask&) = delete;

 private:
  sigset_t old_{};
};

// mkdtemp under $KPC_TMPDIR (the launcher's per-run directory) or /tmp;
// removed recursively on destruction.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "kpc");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Removes the directory `path` and everything in it, by descriptor only
// (openat/fstatat/unlinkat with O_NOFOLLOW): a symlink planted or swapped in
// while it works is removed, never followed; nothing on another filesystem
// (a mount point inside) is entered. Safe as root in a directory others
// could write to.
void remove_tree(const std::string& path);

}  // namespace kpc
