// Looking at a supervised tree from the outside: its tasks, their states and
// kernel stacks.
#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/capability.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <deque>
#include <map>
#include <set>

#include "kpc/proc.h"
#include "kpc/record.h"
#include "launcher.h"

namespace kpcl {
namespace {

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

namespace {
// Waiting for a FUSE server's answer. (Not any fuse_* wait: an exiting
// server's own fuse_wait_aborted, say, is teardown, not a request.) Where
// wchan says nothing (Debian's 5.10 with the ORC unwinder gives 0), the
// kernel stack tells, for an exiting or D-state task, when we may read it.
bool in_fuse_wait(const TaskInfo& t) {
  if (t.state != 'S' && t.state != 'D') return false;
  if (t.wchan == "request_wait_answer") return true;
  if (!t.wchan.empty() || !(t.exiting || t.state == 'D')) return false;
  auto stack = kpc::read_text(task_file(t.pid, t.tid, "stack"));
  return stack && stack->find("request_wait_answer") != std::string::npos;
}

// A task on its way out, past exit_files (no descriptor table: not a holder
// below) but maybe not past exit_task_work, where the fput of its last
// /dev/fuse file runs and ends the connection -- the waiters then fail and
// go on. Under load that window outlasts the 20 ms recheck:
// cgroup_freezer_states:fuse_stuck was a false hang at load 8, its killed
// server seen exiting. A task in zap_pid_ns_processes (exit_notify, after
// exit_task_work) or a zombie has released everything.
bool may_still_release_devfuse(const TaskInfo& t) {
  if (!t.exiting || t.state == 'Z' || t.state == 'X' || in_fuse_wait(t)) return false;
  if (t.wchan == "zap_pid_ns_processes") return false;
  // The init waits in do_wait inside zap_pid_ns_processes (wchan do_wait,
  // or nothing on Debian's 5.10): the stack tells.
  auto stack = kpc::read_text(task_file(t.pid, t.tid, "stack"));
  return !(stack && stack->find("zap_pid_ns_processes") != std::string::npos);
}

bool holds_devfuse(pid_t pid) {
  std::string dir = "/proc/" + std::to_string(pid) + "/fd";
  DIR* d = opendir(dir.c_str());
  if (!d) return false;
  bool found = false;
  char target[PATH_MAX];
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    ssize_t n = readlinkat(dirfd(d), e->d_name, target, sizeof target - 1);
    if (n <= 0) continue;
    // By path, never by stat (a stat of a descriptor on a FUSE file could
    // wait on the very server that is stuck): "/dev/fuse", or a node of it
    // in a root of the probe's own ("/tmp/.../dev/fuse" seen from here: a
    // server in fuse_owner_aborts_from_user_namespace was taken for gone).
    std::string_view t(target, static_cast<size_t>(n));
    if (t.ends_with(" (deleted)")) t.remove_suffix(10);
    if (t == "/dev/fuse" || (t.starts_with("/") && t.ends_with("/dev/fuse"))) {
      found = true;
      break;
    }
  }
  closedir(d);
  return found;
}
}  // namespace

std::set<pid_t> unanswerable_fuse_waiters(const std::vector<TaskInfo>& tasks, pid_t shim) {
  std::set<pid_t> waiters;
  for (const auto& t : tasks)
    if (in_fuse_wait(t)) waiters.insert(t.tid);
  if (waiters.empty()) return waiters;
  // Who could still answer: a task that is neither exiting nor itself
  // waiting on FUSE, in a process that holds a /dev/fuse descriptor. (A
  // process whose last thread is exiting has no descriptor table left.)
  // An exiting holder that still has the device in its descriptor table
  // has not reached exit_files: it is on its way to closing it, which ends
  // the connection (a killed server, preempted or in exit_mm under load,
  // outlasted the 20 ms recheck: cgroup_freezer_states:fuse_stuck was a
  // hang twice on a loaded machine). Unless it waits on FUSE itself -- the
  // self-served deadlock. (A namespace's init in zap_pid_ns_processes has
  // closed its files already: no descriptor table, not a holder.)
  std::map<pid_t, bool> holder;
  for (const auto& t : tasks) {
    if (t.pid == shim) continue;  // a device S holds is for recovery: S never serves
    auto [it, fresh] = holder.try_emplace(t.pid, false);
    if (fresh) it->second = holds_devfuse(t.pid);
    if (it->second && !in_fuse_wait(t) && t.state != 'Z') return {};
    if (!it->second && may_still_release_devfuse(t)) return {};
  }
  return waiters;
}

json task_json(const TaskInfo& t) {
  json j = {{"pid", t.pid},         {"tid", t.tid},
            {"comm", t.comm},       {"state", std::string(1, t.state)},
            {"exiting", t.exiting}, {"sigkill_pending", t.sigkill_pending},
            {"wchan", t.wchan},     {"nspid", t.nspid},
            {"stack", t.stack}};
  if (!t.stack_error.empty()) j["stack_error"] = t.stack_error;
  return j;
}

// FUSE mounts a host-flavor probe left in the launcher's own mount
// namespace under its run directory.
json unmount_leftovers(const std::string& tmpdir) {
  auto text = kpc::read_text("/proc/self/mountinfo");
  if (!text) return json::array();
  return unmount_leftovers(tmpdir, kpc::parse_mountinfo(*text));
}

json unmount_leftovers(const std::string& tmpdir, std::vector<kpc::MountInfo> mounts) {
  json out = json::array();
  // Deepest first.
  std::sort(mounts.begin(), mounts.end(),
            [](const auto& a, const auto& b) { return a.mount_point.size() > b.mount_point.size(); });
  for (const auto& m : mounts) {
    if (!m.mount_point.starts_with(tmpdir + "/") && m.mount_point != tmpdir) continue;
    std::string res = umount2(m.mount_point.c_str(), MNT_DETACH) == 0 ? "unmounted" : strerror(errno);
    out.push_back({{"mount_point", m.mount_point}, {"fs_type", m.fs_type}, {"result", res}});
  }
  return out;
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
