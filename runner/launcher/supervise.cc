// Looking at a supervised tree from the outside: its tasks, their states and
// kernel stacks, and the FUSE connections they can see.
#include <fcntl.h>
#include <sched.h>
#include <sys/capability.h>
#include <sys/wait.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <set>

#include "kpc/proc.h"
#include "kpc/record.h"
#include "launcher.h"

namespace kpcl {
namespace {

constexpr long kFusectlMagic = 0x65735543;
const char* const kFuseConnections = "/sys/fs/fuse/connections";

std::string task_file(pid_t pid, pid_t tid, const char* name) {
  return "/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/" + name;
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < text.size()) {
    size_t nl = text.find('\n', start);
    if (nl == std::string::npos) nl = text.size();
    if (nl > start) out.push_back(text.substr(start, nl - start));
    start = nl + 1;
  }
  return out;
}

bool is_fuse(const kpc::MountInfo& m) {
  return m.fs_type == "fuse" || m.fs_type == "fuseblk" || m.fs_type.starts_with("fuse.");
}

}  // namespace

std::vector<pid_t> tree_processes(pid_t root) {
  std::vector<pid_t> out;
  std::set<pid_t> seen;
  std::deque<pid_t> todo{root};
  while (!todo.empty()) {
    pid_t p = todo.front();
    todo.pop_front();
    if (!seen.insert(p).second) continue;
    if (access(("/proc/" + std::to_string(p)).c_str(), F_OK) != 0) continue;
    out.push_back(p);
    for (pid_t c : kpc::list_children(p)) todo.push_back(c);
  }
  return out;
}

std::vector<TaskInfo> tree_tasks(pid_t root, bool with_stacks) {
  std::vector<TaskInfo> out;
  for (pid_t pid : tree_processes(root)) {
    for (pid_t tid : kpc::list_tasks(pid)) {
      auto stat = kpc::read_stat(pid, tid);
      auto status = kpc::read_status(pid, tid);
      if (!stat || !status) continue;  // exited meanwhile
      TaskInfo t;
      t.pid = pid;
      t.tid = tid;
      t.comm = stat->comm;
      t.state = stat->state;
      t.exiting = (stat->flags & kpc::kPfExiting) != 0;
      t.sigkill_pending = status->sig_pnd.has(SIGKILL) || status->shd_pnd.has(SIGKILL);
      t.ctxt_switches = status->voluntary_ctxt_switches + status->nonvoluntary_ctxt_switches;
      t.nspid = status->nspid;
      if (auto w = kpc::read_text(task_file(pid, tid, "wchan"))) t.wchan = *w == "0" ? "" : *w;
      if (with_stacks) {
        errno = 0;
        if (auto s = kpc::read_text(task_file(pid, tid, "stack"))) {
          t.stack = split_lines(*s);
        } else {
          int err = errno;
          t.stack_error = kpc::errno_name(err) + (err == EACCES || err == EPERM ? " (reading stacks needs root)" : "");
        }
      }
      out.push_back(std::move(t));
    }
  }
  return out;
}

bool may_be_stuck(const TaskInfo& t) {
  if (t.state == 'D') return true;
  return t.state == 'S' && (t.exiting || t.sigkill_pending);
}

json task_json(const TaskInfo& t) {
  json j = {{"pid", t.pid},   {"tid", t.tid},         {"comm", t.comm},
            {"state", std::string(1, t.state)},        {"exiting", t.exiting},
            {"sigkill_pending", t.sigkill_pending},    {"wchan", t.wchan},
            {"nspid", t.nspid}, {"stack", t.stack}};
  if (!t.stack_error.empty()) j["stack_error"] = t.stack_error;
  return j;
}

std::vector<unsigned long> tree_fuse_connections(const std::vector<pid_t>& procs) {
  std::set<unsigned long> conns;
  // Per task, not per process: in the deadlock of story 002 the leader is a
  // zombie (its namespaces are gone) while another thread holds the file.
  for (pid_t p : procs) {
    for (pid_t tid : kpc::list_tasks(p)) {
      auto text = kpc::read_text(task_file(p, tid, "mountinfo"));
      if (!text) continue;
      for (const auto& m : kpc::parse_mountinfo(*text))
        if (is_fuse(m) && m.major == 0) conns.insert(m.minor);
    }
  }
  return {conns.begin(), conns.end()};
}

namespace {
std::string write_abort(unsigned long conn) {
  std::string path = std::string(kFuseConnections) + "/" + std::to_string(conn) + "/abort";
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT ? "" : path + ": " + strerror(errno);  // ENOENT: already gone
  ssize_t n = write(fd, "1", 1);
  int err = errno;
  close(fd);
  return n == 1 ? "" : path + ": " + strerror(err);
}
}  // namespace

std::string abort_fuse_connection(unsigned long conn) {
  struct statfs fs {};
  if (statfs(kFuseConnections, &fs) != 0) return std::string(kFuseConnections) + ": " + strerror(errno);
  if (fs.f_type == kFusectlMagic) return write_abort(conn);
  // fusectl is not mounted: mount it in a private mount namespace of a
  // short-lived child, so the machine's mounts stay as they were.
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) != 0) return std::string("pipe: ") + strerror(errno);
  pid_t pid = fork();
  if (pid < 0) {
    close(pipefd[0]);
    close(pipefd[1]);
    return std::string("fork: ") + strerror(errno);
  }
  if (pid == 0) {
    std::string err;
    if (unshare(CLONE_NEWNS) != 0 || mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
      err = std::string("private mount namespace for fusectl: ") + strerror(errno);
    else if (mount("fusectl", kFuseConnections, "fusectl", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0)
      err = std::string("mount fusectl on ") + kFuseConnections + ": " + strerror(errno);
    else
      err = write_abort(conn);
    if (!err.empty() && write(pipefd[1], err.data(), err.size()) < 0) _exit(2);
    _exit(0);
  }
  close(pipefd[1]);
  std::string err;
  char buf[512];
  ssize_t n;
  while ((n = read(pipefd[0], buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR))
    if (n > 0) err.append(buf, n);
  close(pipefd[0]);
  while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
  }
  return err;
}

std::string capabilities_text() {
  cap_t caps = cap_get_proc();
  if (!caps) return std::string("unknown: ") + strerror(errno);
  char* text = cap_to_text(caps, nullptr);
  std::string out = text ? text : "unknown";
  cap_free(text);
  cap_free(caps);
  return out;
}

std::vector<std::string> effective_caps() {
  std::vector<std::string> out;
  cap_t caps = cap_get_proc();
  if (!caps) return out;
  for (cap_value_t v = 0; v <= CAP_LAST_CAP; ++v) {
    cap_flag_value_t on = CAP_CLEAR;
    if (cap_get_flag(caps, v, CAP_EFFECTIVE, &on) == 0 && on == CAP_SET) {
      char* name = cap_to_name(v);
      if (name) {
        std::string n = name;
        for (char& c : n) c = static_cast<char>(toupper(static_cast<unsigned char>(c)));
        out.push_back(n);
        cap_free(name);
      }
    }
  }
  cap_free(caps);
  return out;
}

bool has_effective_cap(const char* name) {
  cap_value_t value;
  if (cap_from_name(name, &value) != 0) return false;
  cap_t caps = cap_get_proc();
  if (!caps) return false;
  cap_flag_value_t on = CAP_CLEAR;
  cap_get_flag(caps, value, CAP_EFFECTIVE, &on);
  cap_free(caps);
  return on == CAP_SET;
}

}  // namespace kpcl
