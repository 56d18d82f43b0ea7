// Starting a run: the run directory, the pipes, the flavor's namespaces and
// the shim (S) that execs the probe (P).
#include <dirent.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <set>
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
    case Flavor::host:
      return "host";
    case Flavor::pidns:
      return "pidns";
    case Flavor::userns:
      return "userns";
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
  s.hang_grace_ms = j.value("hang_grace_ms", 0);
  if (s.hang_grace_ms < 0 || s.hang_grace_ms > 120000) throw std::runtime_error("hang_grace_ms must be 0..120000");
  if (j.contains("caller")) {
    const auto& c = j.at("caller");
    s.caller_blocked = c.value("blocked", std::vector<int>{});
    s.caller_ignored = c.value("ignored", std::vector<int>{});
    for (int sig : s.caller_blocked)
      if (sig < 1 || sig >= NSIG) throw std::runtime_error("caller.blocked: bad signal " + std::to_string(sig));
    for (int sig : s.caller_ignored)
      if (sig < 1 || sig >= NSIG) throw std::runtime_error("caller.ignored: bad signal " + std::to_string(sig));
  }
  s.supervisor_channel = j.value("supervisor_channel", false);
  if (j.contains("cleanup")) {
    s.cleanup = j.at("cleanup").get<std::vector<std::string>>();
    if (!s.cleanup.empty() && !s.cleanup[0].starts_with("/"))
      throw std::runtime_error("cleanup[0] must be an absolute path: " + s.cleanup[0]);
  }
  if (s.timeout_ms <= 0 || s.hang_ms <= 0) throw std::runtime_error("timeout_ms and hang_ms must be positive");
  return s;
}

namespace {

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

}  // namespace

namespace {
// 12 letters from getrandom: the run directory's name, made by S with
// mkdir (EEXIST is a failure, never a reuse).
std::string random_suffix() {
  static constexpr char kAlphabet[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  unsigned char bytes[12];
  if (getrandom(bytes, sizeof bytes, 0) != static_cast<ssize_t>(sizeof bytes))
    throw std::runtime_error(std::string("getrandom: ") + strerror(errno));
  std::string out;
  for (unsigned char b : bytes) out += kAlphabet[b % (sizeof kAlphabet - 1)];
  return out;
}

// Where run directories may be made: a directory of root or of ours that
// nobody else can write to, or that is sticky (like /tmp: others cannot
// rename or replace our entries in it). "" or what is wrong.
std::string unsafe_base(const std::string& base) {
  struct stat st {};
  if (stat(base.c_str(), &st) != 0) return base + ": " + strerror(errno);
  if (!S_ISDIR(st.st_mode)) return base + " is not a directory";
  if (st.st_uid != 0 && st.st_uid != geteuid()) return base + " belongs to another user";
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) && !(st.st_mode & S_ISVTX))
    return base + " is writable by others and not sticky: they could replace a run directory (set TMPDIR)";
  return "";
}

// Where run directories go when $TMPDIR is not set: /dev/shm when it is a
// tmpfs mounted without noexec, nosuid and nodev (so a probe's run
// directory behaves as a plain directory would), else /tmp. A RAM
// filesystem: on the project's 2-core VM (ext4 with discard) making and
// removing the directory in /tmp was ~0.5 ms of the ~1.5 ms the launcher
// added to a run. /dev/shm is sticky like /tmp (unsafe_base checks it).
std::string default_base() {
  struct stat st {};
  struct statfs fs {};
  struct statvfs vfs {};
  if (lstat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && statfs("/dev/shm", &fs) == 0 && fs.f_type == TMPFS_MAGIC &&
      statvfs("/dev/shm", &vfs) == 0 && !(vfs.f_flag & (ST_NOEXEC | ST_NOSUID | ST_NODEV | ST_RDONLY)) &&
      unsafe_base("/dev/shm").empty())
    return "/dev/shm";
  return "/tmp";
}

std::string run_dir_base() {
  static const std::string base = [] {
    const char* env = getenv("TMPDIR");
    return env && *env ? std::string(env) : default_base();
  }();
  return base;
}

void sweep_stale_run_dirs_in(const std::string& base) {
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

}  // namespace

// Run directories are named kpc-run.<launcher pid>.XXXXXX. A launcher that
// was SIGKILLed cannot remove its own; the next launcher removes those of
// dead launchers (same owner, PID no longer alive; a reused PID keeps the
// directory, which is the safe side).
void sweep_stale_run_dirs() {
  // Where this launcher makes them, and where one without $TMPDIR does
  // (/tmp too: launchers before /dev/shm was the default, or where it is not).
  std::set<std::string> bases{run_dir_base(), default_base(), "/tmp"};
  for (const auto& base : bases) sweep_stale_run_dirs_in(base);
}

std::optional<Spawned> spawn_run(const RunSpec& spec, const RecoveryScope& scope, std::string* error) {
  // 0700, the launcher's own: the probe runs as the same uid (the userns
  // flavor maps the caller's uid to root), and nobody else may enter.
  if (std::string why = unsafe_base(run_dir_base()); !why.empty()) {
    *error = "run directory base: " + why;
    return std::nullopt;
  }
  // S makes the directory (after L's go) and removes it whatever happens;
  // L only names it. Made here, it would outlive an L killed before S
  // existed or before the go byte (test_kill_anytime, seed 151974).
  std::string tmpdir = run_dir_base() + "/kpc-run." + std::to_string(getpid()) + "." + random_suffix();

  // Every descriptor is closed again on every path out of here.
  std::vector<kpc::Fd> owned;
  auto pipe_pair = [&](int* r, int* w) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) return false;
    owned.emplace_back(p[0]);
    owned.emplace_back(p[1]);
    *r = p[0];
    *w = p[1];
    return true;
  };
  ShimFds fds;
  int obs_r, out_r, err_r, status_r, sync_w, cmd_w;
  bool ok = pipe_pair(&obs_r, &fds.obs_w) && pipe_pair(&out_r, &fds.out_w) && pipe_pair(&err_r, &fds.err_w) &&
            pipe_pair(&status_r, &fds.status_w) && pipe_pair(&fds.sync_r, &sync_w) && pipe_pair(&fds.cmd_r, &cmd_w);
  if (ok && spec.supervisor_channel) {
    int sp[2];
    ok = socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) == 0;
    if (ok) {
      owned.emplace_back(sp[0]);
      owned.emplace_back(sp[1]);
      fds.sup = sp[0];
      fds.sup_probe = sp[1];
    }
  }
  if (!ok) {
    *error = std::string("pipe2/socketpair: ") + strerror(errno);
    return std::nullopt;
  }

  unsigned long flags = 0;
  if (spec.flavor == Flavor::pidns) flags = CLONE_NEWPID | CLONE_NEWNS;
  if (spec.flavor == Flavor::userns) flags = CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS;

  uid_t uid = getuid();
  gid_t gid = getgid();
  pid_t pid = raw_clone(flags);
  if (pid == 0) shim_main(spec, fds, tmpdir, scope);  // S: keeps only what it needs
  int clone_err = errno;
  // L keeps the read ends of the output pipes and the write ends of the
  // go and command pipes.
  std::set<int> keep{obs_r, out_r, err_r, status_r, sync_w, cmd_w};
  for (auto& fd : owned)
    if (!keep.count(fd.get())) fd.reset();
  auto cleanup = [&] { owned.clear(); };  // S made no directory: it never had the go
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
  if (write(sync_w, &go, 1) != 1) {
    *error = std::string("write go byte: ") + strerror(errno);
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    cleanup();
    return std::nullopt;
  }

  for (int fd : {obs_r, out_r, err_r, status_r}) fcntl(fd, F_SETFL, O_NONBLOCK);
  Spawned sp{pid, obs_r, out_r, err_r, status_r, cmd_w, tmpdir};
  for (auto& fd : owned)  // L's ends now belong to the caller; the go pipe is done
    if (fd.get() != sync_w) fd.release();
  return sp;
}

}  // namespace kpcl
