// S, the shim: one per run, between the launcher (L) and the probe (P).
// Starts P with a clean state, reaps, reports P's status, ends the run --
// and recovers it: when L asks, or by itself when L is gone.
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <list>

#include "fuse_recovery.h"
#include "kpc/fdpass.h"
#include "kpc/pidfd.h"
#include "kpc/proc.h"
#include "kpc/raii.h"
#include "kpc/record.h"
#include "kpc/supervisor.h"
#include "launcher.h"

namespace kpcl {
namespace {

// The probe's fixed descriptors: 0 = /dev/null, 1/2 = capture pipes,
// 3 = observations, 4 = the supervisor channel (when the plan asks).
constexpr int kObsFd = 3;
constexpr int kSupervisorFd = 4;
// An orphaned S (L is gone) keeps trying to free a stuck tree this long.
constexpr int64_t kOrphanRecoveryMs = 60'000;
constexpr int kCleanupMs = 20'000;

void write_str(int fd, const std::string& s) {
  const char* p = s.data();
  size_t left = s.size();
  while (left) {
    ssize_t n = write(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    p += n;
    left -= static_cast<size_t>(n);
  }
}

#ifndef SYS_close_range
#define SYS_close_range 436  // Linux 5.9, one number on every architecture; glibc < 2.32 does not name it
#endif

void close_from(int lowest) {
  if (syscall(SYS_close_range, lowest, ~0U, 0) == 0) return;
  // Kernels before 5.9 lack close_range: close what /proc/self/fd lists.
  std::vector<int> fds;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (dirent* e = readdir(d)) {
      int fd = atoi(e->d_name);
      if (fd >= lowest && fd != dirfd(d)) fds.push_back(fd);
    }
    closedir(d);
  }
  for (int fd : fds) close(fd);
}

// Puts descriptors at fixed numbers (sources may sit on each other's
// targets: all are lifted out of the way first), then closes the rest.
void place_fds(const std::vector<std::pair<int, int>>& src_to_dst) {
  std::vector<std::pair<int, int>> lifted;
  int highest = -1;
  for (auto [src, dst] : src_to_dst) {
    lifted.emplace_back(fcntl(src, F_DUPFD_CLOEXEC, 64), dst);
    highest = std::max(highest, dst);
  }
  for (auto [tmp, dst] : lifted) dup2(tmp, dst);  // dup2 clears FD_CLOEXEC on dst
  close_from(highest + 1);
}

// S's own hygiene, right after the clone: nothing of L's but what S needs.
// (L's descriptors include the runner's stdout/stderr: a shim holding them
// kept `kpc run` waiting forever once L had died.)
void keep_only(std::vector<int*> keep) {
  int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
  std::vector<std::pair<int, int>> moves;
  int next = 3;
  for (int* fd : keep)
    if (*fd >= 0) moves.emplace_back(*fd, next++);
  std::vector<std::pair<int, int>> all{{devnull, 0}, {devnull, 1}, {devnull, 2}};
  all.insert(all.end(), moves.begin(), moves.end());
  place_fds(all);
  next = 3;
  for (int* fd : keep)
    if (*fd >= 0) {
      *fd = next++;
      fcntl(*fd, F_SETFD, FD_CLOEXEC);
    }
}

// The probe's clean start: default dispositions, nothing blocked.
void reset_signal_state() {
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    // glibc rejects 32/33 in sigaction(); use the raw call for all.
    struct {
      void* handler;
      unsigned long flags;
      void* restorer;
      uint64_t mask;
    } kact{reinterpret_cast<void*>(SIG_DFL), 0, nullptr, 0};
    syscall(SYS_rt_sigaction, sig, &kact, nullptr, sizeof(uint64_t));
  }
  uint64_t none = 0;
  syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, nullptr, sizeof none);
}

std::vector<std::string> probe_env(const RunSpec& spec, const std::string& tmpdir, const RecoveryScope& scope,
                                   bool channel) {
  std::vector<std::string> env = {
      "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
      "LANG=C.UTF-8",
      "HOME=" + tmpdir,
      "KPC_OBS_FD=" + std::to_string(kObsFd),
      "KPC_TMPDIR=" + tmpdir,
      "KPC_FLAVOR=" + std::string(flavor_name(spec.flavor)),
      "KPC_CASE=" + spec.case_id,
      "KPC_VARIANT=" + spec.variant,
      std::string(kpc::supervisor::kFuseRecoveryEnv) + "=" + scope.fuse_recovery,
  };
  if (channel) env.push_back(std::string(kpc::supervisor::kFdEnv) + "=" + std::to_string(kSupervisorFd));
  for (const auto& [k, v] : spec.env) env.push_back(k + "=" + v);
  return env;
}

[[noreturn]] void exec_argv(const std::vector<std::string>& argv, std::vector<std::string> env) {
  std::vector<char*> envp, args;
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  execve(args[0], args.data(), envp.data());
  int err = errno;
  std::string rec = "{\"broken\":\"launcher: execve " + argv[0] + ": " + kpc::errno_name(err) + "\"}\n";
  write_str(kObsFd, rec);
  _exit(127);
}

[[noreturn]] void exec_probe(const RunSpec& spec, const ShimFds& fds, const std::string& tmpdir,
                             const RecoveryScope& scope) {
  int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  std::vector<std::pair<int, int>> layout{{devnull, 0}, {fds.out_w, 1}, {fds.err_w, 2}, {fds.obs_w, kObsFd}};
  if (fds.sup_probe >= 0) layout.emplace_back(fds.sup_probe, kSupervisorFd);
  place_fds(layout);
  reset_signal_state();
  // A deliberately dirty caller, when the plan asks for one.
  for (int sig : spec.caller_ignored) signal(sig, SIG_IGN);
  sigset_t blocked;
  sigemptyset(&blocked);
  for (int sig : spec.caller_blocked) sigaddset(&blocked, sig);
  sigprocmask(SIG_BLOCK, &blocked, nullptr);
  if (chdir(tmpdir.c_str()) != 0) _exit(126);
  exec_argv(spec.argv, probe_env(spec, tmpdir, scope, fds.sup_probe >= 0));
}

// Runs the plan's cleanup command once the tree is gone; waits at most
// kCleanupMs for it.
void run_cleanup(const RunSpec& spec, const std::string& tmpdir, const RecoveryScope& scope) {
  if (spec.cleanup.empty()) return;
  pid_t pid = fork();
  if (pid < 0) return;
  if (pid == 0) {
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    place_fds({{devnull, 0}, {devnull, 1}, {devnull, 2}});
    reset_signal_state();
    exec_argv(spec.cleanup, probe_env(spec, tmpdir, scope, false));
  }
  for (int64_t end = kpc::monotonic_ms() + kCleanupMs; kpc::monotonic_ms() < end;) {
    if (waitpid(pid, nullptr, WNOHANG) == pid) return;
    usleep(10'000);
  }
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
}

class Shim {
 public:
  Shim(const RunSpec& spec, const ShimFds& fds, const std::string& tmpdir, const RecoveryScope& scope)
      : spec_(spec), fds_(fds), tmpdir_(tmpdir), scope_(scope), own_pidns_(spec.flavor != Flavor::host) {}
  [[noreturn]] void run();

 private:
  void fail(const std::string& what) {
    write_str(fds_.status_w, "error " + what + ": " + strerror(errno) + "\n");
    if (made_dir_ && probe_ <= 0) kpc::remove_tree(tmpdir_);  // nothing of the run is in it
    _exit(1);
  }
  void on_command();
  void on_deposit();
  void reap();
  void kill_tree();
  void recover_fuse();
  [[noreturn]] void finish();

  const RunSpec& spec_;
  ShimFds fds_;
  std::string tmpdir_;
  bool made_dir_ = false;
  RecoveryScope scope_;
  const bool own_pidns_;
  kpc::Fd sigfd_;
  pid_t probe_ = -1;
  bool ending_ = false;      // P is gone (or L asked): kill what is left
  bool recovering_ = false;  // L asked, or L is gone: free FUSE deadlocks too
  bool orphaned_ = false;    // L is gone: nobody else will clean up
  bool no_children_ = false;
  int64_t orphaned_at_ms_ = 0;
  std::set<unsigned long> aborted_;
  std::list<fuse::DeviceClone> devices_;
};

void Shim::on_command() {
  char c;
  ssize_t n = read(fds_.cmd_r, &c, 1);
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
  if (n == 1 && c == kRecoverByte) {
    ending_ = recovering_ = true;
    return;
  }
  // EOF (or anything else): L is gone.
  close(fds_.cmd_r);
  fds_.cmd_r = -1;
  ending_ = recovering_ = orphaned_ = true;
  orphaned_at_ms_ = kpc::monotonic_ms();
}

// A probe hands over a /dev/fuse descriptor: hold a clone of the connection.
void Shim::on_deposit() {
  auto got = kpc::recv_fd(fds_.sup, /*nonblocking=*/true);
  if (!got) {
    if (errno == EAGAIN || errno == EINTR) return;
    close(fds_.sup);  // the probe side closed: nothing more will come
    fds_.sup = -1;
    return;
  }
  std::string why;
  const std::string prefix = kpc::supervisor::kFuseDevicePrefix;
  if (got->fd < 0 || !got->text.starts_with(prefix)) {
    why = "expected '" + prefix + "N' with a descriptor";
  } else {
    unsigned long conn = strtoul(got->text.c_str() + prefix.size(), nullptr, 10);
    if (auto dev = fuse::DeviceClone::adopt(got->fd, conn, &why)) devices_.push_back(std::move(*dev));
  }
  if (got->fd >= 0) close(got->fd);
  std::string reply = why.empty() ? std::string(1, kpc::supervisor::kAck) : kpc::supervisor::kNak + why;
  send(fds_.sup, reply.data(), reply.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
}

void Shim::reap() {
  for (;;) {
    int st = 0;
    pid_t w = waitpid(-1, &st, WNOHANG | __WALL);
    if (w == probe_) {
      write_str(fds_.status_w, "status " + std::to_string(st) + "\n");
      ending_ = true;
    }
    if (w > 0) continue;
    no_children_ = w < 0 && errno == ECHILD;
    return;
  }
}

// SIGKILL P only if it is still our descendant. Between listing the tree
// and the kill, a grandchild can be reaped by its parent and its PID given
// to a stranger (pid_max is 32768 here, and a suite forks thousands): kill
// by a pidfd opened first, after checking that the process it names has
// its parent chain through us. (A kill by PID number killed other runs'
// FUSE servers: their fresh mounts said ENOTCONN beside a second kpc.)
void kill_if_descendant(pid_t p) {
  int fd = static_cast<int>(syscall(kpc::pidfd::kSysOpen, p, 0));
  if (fd < 0 && errno != ENOSYS) return;  // gone
  pid_t self = getpid(), at = p;
  bool ours = false;
  for (int depth = 0; depth < 64 && at > 1; ++depth) {
    auto st = kpc::read_status(at);
    if (!st) break;
    if (st->ppid == self) {
      ours = true;
      break;
    }
    at = st->ppid;
  }
  if (ours) {
    if (fd >= 0) syscall(kpc::pidfd::kSysSendSignal, fd, SIGKILL, nullptr, 0);
    else kill(p, SIGKILL);  // no pidfds (before 5.3): the old way
  }
  if (fd >= 0) close(fd);
}

void Shim::kill_tree() {
  if (own_pidns_) {
    kill(-1, SIGKILL);  // every other member of our namespace: nobody else's
    return;
  }
  for (pid_t p : tree_processes(getpid()))
    if (p != getpid()) kill_if_descendant(p);
}

// Frees what waits on the run's FUSE connections (never on anyone else's).
void Shim::recover_fuse() {
  if (scope_.fusectl_fd >= 0) {
    std::vector<pid_t> procs = tree_processes(getpid());
    procs.erase(std::remove(procs.begin(), procs.end(), getpid()), procs.end());
    fuse::PinnedConnections conns = fuse::run_connections(procs);  // held until aborted
    std::set<unsigned long> foreign = scope_.foreign;
    // On the host S shares L's mount namespace: what it sees is the
    // machine's, never the run's (probes mount in namespaces of their own).
    if (!own_pidns_) foreign.merge(fuse::connections_in("/proc/thread-self/mountinfo"));
    for (unsigned long c : conns.ids)
      if (!foreign.count(c) && aborted_.insert(c).second) fuse::abort_connection(scope_.fusectl_fd, c);
  }
  for (auto& d : devices_) d.answer_pending();
}

// A probe killed before its destructors ran (a hang, a timeout) leaves its
// scratch cgroups behind, empty: kpc::cgroup2::Scratch names them
// "kpc-<what>.<6 letters>" below the probe's cgroup -- ours -- where the
// letters are those of the cgroup2 mount point it made in the run
// directory ("cg.<6 letters>"). Remove those, deepest first (rmdir only:
// a cgroup with members or children is never removed), and nothing else.
namespace {
void remove_scratch_cgroups(const std::string& rundir) {
  std::vector<std::string> suffixes;
  if (DIR* d = opendir(rundir.c_str())) {
    while (dirent* e = readdir(d)) {
      std::string n = e->d_name;
      if (n.size() == 9 && n.starts_with("cg.")) suffixes.push_back(n.substr(2));  // ".XXXXXX"
    }
    closedir(d);
  }
  if (suffixes.empty()) return;
  std::string mount_point, own;
  if (auto text = kpc::read_text("/proc/thread-self/mountinfo"))
    for (const auto& m : kpc::parse_mountinfo(*text))
      if (m.fs_type == "cgroup2" && m.root == "/") mount_point = m.mount_point;
  if (auto text = kpc::read_text("/proc/thread-self/cgroup")) {
    size_t at = text->starts_with("0::") ? 0 : text->find("\n0::");
    if (at != std::string::npos) {
      at += text->starts_with("0::") ? 3 : 4;
      own = text->substr(at, text->find('\n', at) - at);
    }
  }
  if (mount_point.empty() || own.empty()) return;
  kpc::Fd parent(
      open((mount_point + (own == "/" ? "" : own)).c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!parent) return;
  std::vector<std::string> names;
  if (DIR* d = fdopendir(dup(parent.get()))) {
    while (dirent* e = readdir(d)) {
      std::string n = e->d_name;
      if (!n.starts_with("kpc-")) continue;
      for (const auto& sfx : suffixes)
        if (n.size() > sfx.size() + 4 && n.ends_with(sfx)) names.push_back(n);
    }
    closedir(d);
  }
  // Depth first, by descriptor: a cgroup directory holds only files and
  // cgroups (no symlinks), and none is followed anyway.
  std::function<void(int, const std::string&)> remove = [&](int dirfd, const std::string& name) {
    kpc::Fd fd(openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) return;
    std::vector<std::string> subs;
    if (DIR* d = fdopendir(dup(fd.get()))) {
      while (dirent* e = readdir(d))
        if (e->d_type == DT_DIR && strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
          subs.push_back(e->d_name);
      closedir(d);
    }
    for (const auto& s : subs) remove(fd.get(), s);
    unlinkat(dirfd, name.c_str(), AT_REMOVEDIR);
  };
  for (const auto& n : names) remove(parent.get(), n);
}
}  // namespace

void Shim::finish() {
  devices_.clear();  // the run is over: let its connections end
  run_cleanup(spec_, tmpdir_, scope_);
  // L may be gone without our having read the news yet (it was killed just
  // after asking us to recover): look once more.
  pollfd p{fds_.cmd_r, POLLIN, 0};
  if (fds_.cmd_r >= 0 && poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR))) orphaned_ = true;
  if (orphaned_ && !own_pidns_) unmount_leftovers(tmpdir_);  // L would report and detach them
  remove_scratch_cgroups(tmpdir_);
  // L removes the run directory too, after reporting what is left in it;
  // removing it here as well means it goes even if L dies in between.
  // (A mount L has still to detach keeps it: remove_tree enters no mount.)
  kpc::remove_tree(tmpdir_);
  _exit(0);
}

void Shim::run() {
  keep_only({&fds_.obs_w, &fds_.out_w, &fds_.err_w, &fds_.status_w, &fds_.sync_r, &fds_.cmd_r, &fds_.sup,
             &fds_.sup_probe, &scope_.fusectl_fd});

  // 1. L's death is news: PDEATHSIG (SIGTERM, also for a namespace's init:
  //    it is blocked, so init's immunity does not drop it), and EOF on the
  //    command pipe.
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  prctl(PR_SET_NAME, "kpc-shim");
  sigset_t waitset;
  sigemptyset(&waitset);
  for (int s : {SIGCHLD, SIGTERM, SIGINT, SIGHUP}) sigaddset(&waitset, s);
  sigprocmask(SIG_BLOCK, &waitset, nullptr);
  sigfd_.reset(signalfd(-1, &waitset, SFD_NONBLOCK | SFD_CLOEXEC));
  if (!sigfd_) fail("signalfd");

  // 2. Wait for L's go (after it wrote our uid/gid maps). EOF: L is gone,
  //    and nothing of the run exists yet. Then make the run directory: S
  //    removes it at the end whatever happened to L (L only names it).
  char go = 0;
  if (read(fds_.sync_r, &go, 1) != 1) _exit(1);
  close(fds_.sync_r);
  if (mkdir(tmpdir_.c_str(), 0700) != 0) fail("mkdir run directory " + tmpdir_);
  made_dir_ = true;

  // 3. A PID namespace gets its own /proc, in a private mount namespace;
  //    on the host, S is the subreaper of everything the probe starts.
  if (own_pidns_) {
    if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) fail("make / private");
    if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0) fail("mount /proc");
    // What this copy of L's mount namespace holds before P runs is the
    // machine's, never the run's: a FUSE mount someone made after L started
    // (L's list is from then) is in it too, and must not be aborted.
    scope_.foreign.merge(fuse::connections_in("/proc/thread-self/mountinfo"));
  } else if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
    fail("PR_SET_CHILD_SUBREAPER");
  }
  setpgid(0, 0);

  // 4. Start P.
  probe_ = fork();
  if (probe_ < 0) fail("fork probe");
  if (probe_ == 0) exec_probe(spec_, fds_, tmpdir_, scope_);
  write_str(fds_.status_w, "started " + std::to_string(probe_) + "\n");
  for (int* fd : {&fds_.obs_w, &fds_.out_w, &fds_.err_w, &fds_.sup_probe})
    if (*fd >= 0) {
      close(*fd);
      *fd = -1;
    }

  // 5. Reap; report P's status; end the run: kill what is left and leave
  //    when nothing is. Once ending, poll as well: a child that exits
  //    without notifying us sends no SIGCHLD -- an orphan created with
  //    CLONE_AUTOREAP (7.1) reparented to us is one (a 15 s timeout in CI
  //    on 7.2 before this).
  for (;;) {
    pollfd pfds[3] = {{sigfd_.get(), POLLIN, 0}, {fds_.cmd_r, POLLIN, 0}, {fds_.sup, POLLIN, 0}};
    int rc = poll(pfds, 3, ending_ ? 20 : -1);
    if (rc < 0 && errno != EINTR) fail("poll");
    signalfd_siginfo si;
    while (read(sigfd_.get(), &si, sizeof si) == sizeof si)
      if (si.ssi_signo != SIGCHLD && !orphaned_) {  // PDEATHSIG, or someone wants us gone
        ending_ = recovering_ = orphaned_ = true;
        orphaned_at_ms_ = kpc::monotonic_ms();
      }
    if (fds_.cmd_r >= 0 && (pfds[1].revents & (POLLIN | POLLHUP | POLLERR))) on_command();
    if (fds_.sup >= 0 && (pfds[2].revents & (POLLIN | POLLHUP | POLLERR))) on_deposit();
    reap();
    if (!ending_) continue;
    if (no_children_) finish();
    kill_tree();
    if (recovering_) recover_fuse();
    reap();
    if (no_children_) finish();
    // Nothing more can be done for a tree that cannot be freed: an orphan
    // stops trying (L, when alive, reports it and keeps its own deadline).
    if (orphaned_ && kpc::monotonic_ms() - orphaned_at_ms_ > kOrphanRecoveryMs) _exit(1);
  }
}

}  // namespace

void shim_main(const RunSpec& spec, const ShimFds& fds, const std::string& tmpdir, const RecoveryScope& scope) {
  Shim(spec, fds, tmpdir, scope).run();
}

}  // namespace kpcl
