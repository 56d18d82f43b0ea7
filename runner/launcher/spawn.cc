// Starting a run: the run directory, the pipes, the flavor's namespaces and
// the shim (S) that execs the probe (P).
#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include "kpc/proc.h"
#include "kpc/raii.h"
#include "kpc/record.h"
#include "launcher.h"

namespace kpcl {

std::optional<Flavor> parse_flavor(const std::string& s) {
  if (s == "host") return Flavor::host;
  if (s == "pidns") return Flavor::pidns;
  if (s == "userns") return Flavor::userns;
  return std::nullopt;
}

const char* flavor_name(Flavor f) {
  switch (f) {
    case Flavor::host: return "host";
    case Flavor::pidns: return "pidns";
    case Flavor::userns: return "userns";
  }
  return "?";
}

RunSpec spec_from_json(const json& j) {
  if (!j.is_object()) throw std::runtime_error("plan entry is not an object");
  RunSpec s;
  s.run = j.at("run").get<std::string>();
  s.case_id = j.value("case", s.run);
  s.variant = j.value("variant", "");
  auto f = parse_flavor(j.value("flavor", "host"));
  if (!f) throw std::runtime_error("unknown flavor '" + j.value("flavor", "") + "'");
  s.flavor = *f;
  s.argv = j.at("argv").get<std::vector<std::string>>();
  if (s.argv.empty()) throw std::runtime_error("argv is empty");
  // The probe starts in its run directory, so a relative path would not resolve.
  if (!s.argv[0].starts_with("/")) throw std::runtime_error("argv[0] must be an absolute path: " + s.argv[0]);
  if (j.contains("env")) s.env = j.at("env").get<std::map<std::string, std::string>>();
  s.timeout_ms = j.value("timeout_ms", s.timeout_ms);
  s.hang_ms = j.value("hang_ms", s.hang_ms);
  s.exclusive = j.value("exclusive", false);
  if (j.contains("caller")) {
    const auto& c = j.at("caller");
    s.caller_blocked = c.value("blocked", std::vector<int>{});
    s.caller_ignored = c.value("ignored", std::vector<int>{});
    for (int sig : s.caller_blocked) if (sig < 1 || sig >= NSIG) throw std::runtime_error("caller.blocked: bad signal " + std::to_string(sig));
    for (int sig : s.caller_ignored) if (sig < 1 || sig >= NSIG) throw std::runtime_error("caller.ignored: bad signal " + std::to_string(sig));
  }
  if (s.timeout_ms <= 0 || s.hang_ms <= 0) throw std::runtime_error("timeout_ms and hang_ms must be positive");
  return s;
}

namespace {

// The probe's fixed descriptor for observations.
constexpr int kObsFd = 3;

pid_t raw_clone(unsigned long flags) {
  // fork()-like clone: no new stack, copy-on-write memory. S then only makes
  // system calls and a glibc fork(), which resets glibc's per-thread state
  // for P; L is single-threaded, so no lock can be held across the clone.
  return static_cast<pid_t>(syscall(SYS_clone, flags | SIGCHLD, nullptr, nullptr, nullptr, nullptr));
}

bool write_file(const std::string& path, const std::string& text, std::string* error) {
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    *error = "open " + path + ": " + strerror(errno);
    return false;
  }
  ssize_t n = write(fd, text.data(), text.size());
  int err = errno;
  close(fd);
  if (n != static_cast<ssize_t>(text.size())) {
    *error = "write " + path + ": " + strerror(err);
    return false;
  }
  return true;
}

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

struct ShimFds {
  int obs_w, out_w, err_w, status_w, sync_r;
};

[[noreturn]] void exec_probe(const RunSpec& spec, const ShimFds& fds, const std::string& tmpdir) {
  // Descriptors: 0 = /dev/null, 1/2 = capture pipes, 3 = observations.
  int devnull = open("/dev/null", O_RDONLY);
  if (devnull >= 0 && devnull != 0) {
    dup2(devnull, 0);
    close(devnull);
  }
  dup2(fds.out_w, 1);
  dup2(fds.err_w, 2);
  if (fds.obs_w != kObsFd) dup2(fds.obs_w, kObsFd);
  fcntl(kObsFd, F_SETFD, 0);
  close_from(kObsFd + 1);
  reset_signal_state();
  // A deliberately dirty caller, when the plan asks for one.
  for (int sig : spec.caller_ignored) signal(sig, SIG_IGN);
  sigset_t blocked;
  sigemptyset(&blocked);
  for (int sig : spec.caller_blocked) sigaddset(&blocked, sig);
  sigprocmask(SIG_BLOCK, &blocked, nullptr);
  if (chdir(tmpdir.c_str()) != 0) _exit(126);

  std::vector<std::string> env = {
      "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
      "LANG=C.UTF-8",
      "HOME=" + tmpdir,
      "KPC_OBS_FD=" + std::to_string(kObsFd),
      "KPC_TMPDIR=" + tmpdir,
      "KPC_FLAVOR=" + std::string(flavor_name(spec.flavor)),
      "KPC_CASE=" + spec.case_id,
      "KPC_VARIANT=" + spec.variant,
  };
  for (const auto& [k, v] : spec.env) env.push_back(k + "=" + v);
  std::vector<char*> envp, argv;
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  for (const auto& a : spec.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  execve(argv[0], argv.data(), envp.data());
  int err = errno;
  std::string rec = "{\"broken\":\"launcher: execve " + spec.argv[0] + ": " + kpc::errno_name(err) + "\"}\n";
  write_str(kObsFd, rec);
  _exit(127);
}

// S. Never returns.
[[noreturn]] void shim_main(const RunSpec& spec, const ShimFds& fds, const std::string& tmpdir) {
  const bool own_pidns = spec.flavor != Flavor::host;
  auto fail = [&](const std::string& what) {
    write_str(fds.status_w, "error " + what + ": " + strerror(errno) + "\n");
    _exit(1);
  };

  // 1. Die with L: in a PID namespace SIGKILL ends the namespace; on the
  //    host S catches SIGTERM and kills its subtree first.
  prctl(PR_SET_PDEATHSIG, own_pidns ? SIGKILL : SIGTERM);
  prctl(PR_SET_NAME, "kpc-shim");
  sigset_t waitset;
  sigemptyset(&waitset);
  for (int s : {SIGCHLD, SIGTERM, SIGINT, SIGHUP}) sigaddset(&waitset, s);
  sigprocmask(SIG_BLOCK, &waitset, nullptr);

  // 2. Wait for L's go (after it wrote our uid/gid maps). EOF: L is gone.
  char go = 0;
  if (read(fds.sync_r, &go, 1) != 1) _exit(1);
  close(fds.sync_r);

  // 3. A PID namespace gets its own /proc, in a private mount namespace.
  if (own_pidns) {
    if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) fail("make / private");
    if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0) fail("mount /proc");
  } else if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
    fail("PR_SET_CHILD_SUBREAPER");
  }
  setpgid(0, 0);

  // 4. Start P.
  pid_t probe = fork();
  if (probe < 0) fail("fork probe");
  if (probe == 0) exec_probe(spec, fds, tmpdir);
  write_str(fds.status_w, "started " + std::to_string(probe) + "\n");
  close(fds.obs_w);
  close(fds.out_w);
  close(fds.err_w);

  // 5. Reap everything; report P's status; then end the run.
  bool ending = false;
  auto kill_children = [] {
    for (pid_t c : kpc::list_children(getpid())) kill(c, SIGKILL);
  };
  // Once ending, poll as well: a child that exits without notifying us
  // sends no SIGCHLD -- an orphan created with CLONE_AUTOREAP (7.1) that was
  // reparented to us is one (a 15 s timeout in CI on 7.2 before this).
  const timespec poll_interval{0, 20 * 1000 * 1000};
  for (;;) {
    siginfo_t si;
    int sig = ending ? sigtimedwait(&waitset, &si, &poll_interval) : sigwaitinfo(&waitset, &si);
    if (sig < 0 && !(ending && errno == EAGAIN)) continue;
    if (sig > 0 && sig != SIGCHLD) {  // L died or asked us to stop
      if (own_pidns) _exit(2);
      ending = true;
    }
    for (;;) {
      int st = 0;
      pid_t w = waitpid(-1, &st, WNOHANG | __WALL);
      if (w == probe) {
        write_str(fds.status_w, "status " + std::to_string(st) + "\n");
        if (own_pidns) _exit(0);  // the kernel kills the namespace's other members
        ending = true;
      }
      if (w > 0) continue;
      if (w < 0 && errno == ECHILD && ending) _exit(0);
      break;
    }
    if (ending) kill_children();
  }
}

}  // namespace

namespace {
std::string run_dir_base() {
  const char* base = getenv("TMPDIR");
  return base && *base ? base : "/tmp";
}
}  // namespace

// Run directories are named kpc-run.<launcher pid>.XXXXXX. A launcher that
// was SIGKILLed cannot remove its own; the next launcher removes those of
// dead launchers (same owner, PID no longer alive; a reused PID keeps the
// directory, which is the safe side).
void sweep_stale_run_dirs() {
  std::string base = run_dir_base();
  DIR* d = opendir(base.c_str());
  if (!d) return;
  std::vector<std::string> stale;
  while (dirent* e = readdir(d)) {
    std::string_view name = e->d_name;
    if (!name.starts_with("kpc-run.")) continue;
    std::string_view rest = name.substr(8);
    size_t dot = rest.find('.');
    if (dot == std::string_view::npos) continue;
    pid_t pid = 0;
    auto [end, ec] = std::from_chars(rest.data(), rest.data() + dot, pid);
    if (ec != std::errc() || end != rest.data() + dot || pid <= 0 || pid == getpid()) continue;
    if (kill(pid, 0) == 0 || errno != ESRCH) continue;
    struct stat st {};
    std::string path = base + "/" + std::string(name);
    if (lstat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != geteuid()) continue;
    stale.push_back(path);
  }
  closedir(d);
  for (const auto& path : stale) kpc::remove_tree(path);
}

std::optional<Spawned> spawn_run(const RunSpec& spec, std::string* error) {
  std::string tmpl = run_dir_base() + "/kpc-run." + std::to_string(getpid()) + ".XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (!mkdtemp(buf.data())) {
    *error = "mkdtemp " + tmpl + ": " + strerror(errno);
    return std::nullopt;
  }
  std::string tmpdir = buf.data();
  // The probe may run as another uid (userns mapping): let it write here.
  chmod(tmpdir.c_str(), 0777 | S_ISVTX);

  int obs[2], out[2], err[2], status[2], sync[2];
  int* all[] = {obs, out, err, status, sync};
  int made = 0;
  for (int* p : all) {
    if (pipe2(p, O_CLOEXEC) != 0) {
      *error = std::string("pipe2: ") + strerror(errno);
      for (int i = 0; i < made; ++i) {
        close(all[i][0]);
        close(all[i][1]);
      }
      rmdir(tmpdir.c_str());
      return std::nullopt;
    }
    ++made;
  }

  unsigned long flags = 0;
  if (spec.flavor == Flavor::pidns) flags = CLONE_NEWPID | CLONE_NEWNS;
  if (spec.flavor == Flavor::userns) flags = CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS;

  uid_t uid = getuid();
  gid_t gid = getgid();
  pid_t pid = raw_clone(flags);
  if (pid == 0) {
    // S: keep only our ends. Everything else L holds is O_CLOEXEC and is
    // gone once P execs; S itself never execs, so close the rest now.
    ShimFds fds{obs[1], out[1], err[1], status[1], sync[0]};
    close(obs[0]);
    close(out[0]);
    close(err[0]);
    close(status[0]);
    close(sync[1]);
    shim_main(spec, fds, tmpdir);
  }
  int clone_err = errno;
  close(obs[1]);
  close(out[1]);
  close(err[1]);
  close(status[1]);
  close(sync[0]);
  auto cleanup = [&] {
    for (int fd : {obs[0], out[0], err[0], status[0], sync[1]}) close(fd);
    rmdir(tmpdir.c_str());
  };
  if (pid < 0) {
    *error = std::string("clone(") + flavor_name(spec.flavor) + "): " + kpc::errno_name(clone_err) + " (" +
             strerror(clone_err) + ")";
    cleanup();
    return std::nullopt;
  }

  if (spec.flavor == Flavor::userns) {
    // Root inside maps to the caller outside, as `unshare -r` does: works
    // unprivileged, and never grants more than the caller has.
    std::string p = "/proc/" + std::to_string(pid);
    if (!write_file(p + "/uid_map", "0 " + std::to_string(uid) + " 1\n", error) ||
        !write_file(p + "/setgroups", "deny\n", error) ||
        !write_file(p + "/gid_map", "0 " + std::to_string(gid) + " 1\n", error)) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);  // S has no children yet: this cannot block long
      cleanup();
      return std::nullopt;
    }
  }
  char go = 'g';
  if (write(sync[1], &go, 1) != 1) {
    *error = std::string("write go byte: ") + strerror(errno);
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    cleanup();
    return std::nullopt;
  }
  close(sync[1]);

  for (int fd : {obs[0], out[0], err[0], status[0]}) fcntl(fd, F_SETFL, O_NONBLOCK);
  return Spawned{pid, obs[0], out[0], err[0], status[0], tmpdir};
}

}  // namespace kpcl
