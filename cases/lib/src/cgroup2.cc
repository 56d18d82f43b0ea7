#include "kpc/cgroup2.h"

#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <thread>
#include <vector>

#include "kpc/check.h"
#include "kpc/proc.h"
#include "kpc/raii.h"
#include "kpc/record.h"

namespace kpc::cgroup2 {

namespace {
// The caller's cgroup v2 path ("0::/a/b" in /proc/self/cgroup).
std::string own_cgroup() {
  auto text = read_text("/proc/self/cgroup").value_or("");
  auto at = text.find("0::");
  if (at == std::string::npos) return "";
  auto end = text.find('\n', at);
  return text.substr(at + 3, end == std::string::npos ? std::string::npos : end - at - 3);
}

// The names of the cgroups directly below `path` (none when unreadable).
std::vector<std::string> child_cgroups(const std::string& path) {
  std::vector<std::string> subs;
  if (DIR* d = opendir(path.c_str())) {
    while (dirent* e = readdir(d))
      if (e->d_type == DT_DIR && strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) subs.push_back(e->d_name);
    closedir(d);
  }
  return subs;
}

// Removes the cgroup at `path` and the ones below it, deepest first, after
// killing what is in them.
void remove_cgroup(const std::string& path) {
  for (const auto& s : child_cgroups(path)) remove_cgroup(path + "/" + s);
  // Thaw, kill every member, wait until empty (at most 2 s), remove.
  int fd = open((path + "/cgroup.freeze").c_str(), O_WRONLY | O_CLOEXEC);
  if (fd >= 0) {
    (void)!write(fd, "0", 1);
    close(fd);
  }
  for (int i = 0; i < 2000; ++i) {
    auto procs = read_text(path + "/cgroup.procs").value_or("");
    if (procs.empty()) break;
    for (size_t pos = 0; pos < procs.size();) {
      kill(static_cast<pid_t>(atol(procs.c_str() + pos)), SIGKILL);
      pos = procs.find('\n', pos);
      if (pos == std::string::npos) break;
      ++pos;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  rmdir(path.c_str());
}
// rmdir of `path` and the cgroups below it, deepest first, without killing
// anything: a cgroup that still has processes stays (EBUSY).
void rmdir_tree(const std::string& path) {
  for (const auto& s : child_cgroups(path)) rmdir_tree(path + "/" + s);
  rmdir(path.c_str());
}

// Scratch cgroups are named "kpc-<name>.<6 characters>" below the probe's
// own cgroup. One whose probe was SIGKILLed (by the launcher at a timeout, or
// by a user) is left behind, empty. No run lives longer than a case's
// maximum timeout (3600 s) plus recovery: an empty scratch cgroup older than
// two hours is stale, and the next probe that makes one removes it.
void sweep_stale(const std::string& parent) {
  DIR* d = opendir(parent.c_str());
  if (!d) return;
  std::vector<std::string> stale;
  const time_t now = time(nullptr);
  while (dirent* e = readdir(d)) {
    std::string n = e->d_name;
    auto dot = n.rfind('.');
    if (e->d_type != DT_DIR || !n.starts_with("kpc-") || dot == std::string::npos || n.size() - dot != 7) continue;
    struct stat st {};
    if (stat((parent + "/" + n).c_str(), &st) == 0 && now - st.st_mtime > 2 * 3600) stale.push_back(n);
  }
  closedir(d);
  for (const auto& n : stale) rmdir_tree(parent + "/" + n);
}

struct Leftovers {
  std::string path, mount;
};

// at_abnormal_exit: skip() and broken() _exit() without destructors.
void remove_on_abnormal_exit(void* arg) {
  auto* l = static_cast<Leftovers*>(arg);
  remove_cgroup(l->path);
  umount2(l->mount.c_str(), MNT_DETACH);
  rmdir(l->mount.c_str());
}
}  // namespace

std::unique_ptr<Scratch> Scratch::create(const std::string& name) {
  kpc::enter_private_mount_namespace();  // cgroup2 is mounted where only this probe sees it
  std::unique_ptr<Scratch> s(new Scratch());
  char tmpl[] = "/tmp/kpc-cgroup2.XXXXXX";
  const char* tmpdir = getenv("KPC_TMPDIR");
  std::string base = tmpdir && *tmpdir ? std::string(tmpdir) + "/cg.XXXXXX" : tmpl;
  std::vector<char> buf(base.begin(), base.end());
  buf.push_back('\0');
  KPC_CHECK_MSG(mkdtemp(buf.data()) != nullptr, "mkdtemp: " + errno_name(errno));
  s->mount_ = buf.data();
  int r = mount("cgroup2", s->mount_.c_str(), "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr);
  if (r != 0 && errno == EPERM && unshare(CLONE_NEWCGROUP) == 0) {
    // In a user namespace: a cgroup namespace of our own (rooted at our
    // cgroup) may be mounted; its files still belong to whoever owns them.
    r = mount("cgroup2", s->mount_.c_str(), "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr);
  }
  if (r != 0) {
    int err = errno;
    rmdir(s->mount_.c_str());
    s->mount_.clear();
    kpc::skip("mounting cgroup2: " + errno_name(err) +
              (err == EPERM    ? " (in a user namespace cgroup2 mounts need a cgroup namespace of its own)"
               : err == ENODEV ? " (no cgroup2 in this kernel)"
                               : ""));
  }
  std::string own = own_cgroup();
  if (own.empty()) kpc::skip("no cgroup v2 entry in /proc/self/cgroup");
  // Unique among concurrent runs (whose PIDs repeat in their namespaces):
  // the random part of our private mount point's name.
  std::string unique = s->mount_.substr(s->mount_.rfind('.') + 1);
  s->path_ = s->mount_ + (own == "/" ? "" : own) + "/kpc-" + name + "." + unique;
  sweep_stale(s->path_.substr(0, s->path_.rfind('/')));
  if (mkdir(s->path_.c_str(), 0755) != 0) {
    int err = errno;
    umount2(s->mount_.c_str(), MNT_DETACH);
    rmdir(s->mount_.c_str());
    s->mount_.clear();
    kpc::skip("cannot create a cgroup below " + own + ": " + errno_name(err) + " (cgroup2 not writable here)");
  }
  kpc::at_abnormal_exit(remove_on_abnormal_exit, new Leftovers{s->path_, s->mount_});
  return s;
}

Scratch::~Scratch() {
  if (!path_.empty()) remove_cgroup(path_);
  if (!mount_.empty()) {
    umount2(mount_.c_str(), MNT_DETACH);
    rmdir(mount_.c_str());
  }
}

void Scratch::make(const std::string& sub) const { KPC_SYS(mkdir(path_of(sub).c_str(), 0755)); }

std::string Scratch::write(const std::string& file, const std::string& text) const {
  int fd = open(path_of(file).c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return errno_name(errno);
  ssize_t n = ::write(fd, text.data(), text.size());
  int err = errno;
  close(fd);
  return n == static_cast<ssize_t>(text.size()) ? "" : errno_name(n < 0 ? err : EIO);
}

std::optional<std::string> Scratch::read(const std::string& file) const { return read_text(path_of(file)); }

std::optional<long> Scratch::key(const std::string& file, const std::string& k) const {
  auto text = read(file);
  if (!text) return std::nullopt;
  std::string t = "\n" + *text;
  auto at = t.find("\n" + k + " ");
  if (at == std::string::npos) return std::nullopt;
  return atol(t.c_str() + at + k.size() + 2);
}

std::optional<long> Scratch::wait_key(const std::string& file, const std::string& k, long want, int timeout_ms) const {
  const int64_t end = monotonic_ms() + timeout_ms;
  for (;;) {
    auto v = key(file, k);
    if ((v && *v == want) || monotonic_ms() >= end) return v;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

std::string Scratch::enable(const std::string& controller) const {
  // The controller must be enabled on the way down from the root: at the
  // mount's root and every ancestor of the scratch cgroup, then in it.
  auto available = read_text(mount_ + "/cgroup.controllers").value_or("");
  if ((" " + available + " ").find(" " + controller) == std::string::npos)
    return controller + " is not a cgroup v2 controller here (cgroup.controllers: '" + available +
           "'; on a hybrid host it is attached to cgroup v1)";
  std::vector<std::string> dirs{mount_};
  std::string rel = path_.substr(mount_.size());  // "/a/b/kpc-x.N"
  for (size_t at = rel.find('/', 1); at != std::string::npos; at = rel.find('/', at + 1))
    dirs.push_back(mount_ + rel.substr(0, at));
  dirs.push_back(path_);
  for (const auto& dir : dirs) {
    int fd = open((dir + "/cgroup.subtree_control").c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) return "cgroup.subtree_control of " + dir + ": " + errno_name(errno);
    std::string add = "+" + controller;
    ssize_t n = ::write(fd, add.data(), add.size());
    int err = errno;
    close(fd);
    if (n < 0)
      return "enabling " + controller + " in " + dir + ": " + errno_name(err) +
             (err == EBUSY ? " (that cgroup has processes of its own)" : "");
  }
  return "";
}

void Scratch::move(pid_t pid, const std::string& sub) const {
  std::string err = write(sub.empty() ? "cgroup.procs" : sub + "/cgroup.procs", std::to_string(pid));
  KPC_CHECK_MSG(err.empty(), "moving " + std::to_string(pid) + " into " + path_of(sub) + ": " + err);
}

}  // namespace kpc::cgroup2
