#include "kpc/proc.h"

#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>

#include "kpc/check.h"
#include "kpc/raii.h"
#include "kpc/record.h"

namespace kpc {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\n')) s.remove_suffix(1);
  return s;
}

template <typename T>
bool to_int(std::string_view s, T& out, int base = 10) {
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out, base);
  return ec == std::errc() && end == s.data() + s.size();
}

bool to_mask(std::string_view s, SigSet& out) {
  uint64_t v = 0;
  if (s.size() != 16 || !to_int(s, v, 16)) return false;
  out.bits = v;
  return true;
}

std::vector<std::string_view> split_ws(std::string_view s) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n')) ++i;
    size_t j = i;
    while (j < s.size() && s[j] != ' ' && s[j] != '\t' && s[j] != '\n') ++j;
    if (j > i) out.push_back(s.substr(i, j - i));
    i = j;
  }
  return out;
}

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string unescape_octal(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && s.size() - i >= 4) {
      int v = 0;
      if (to_int(s.substr(i + 1, 3), v, 8)) {
        out += static_cast<char>(v);
        i += 3;
        continue;
      }
    }
    out += s[i];
  }
  return out;
}

}  // namespace

std::optional<ProcStatus> parse_status(std::string_view text) {
  ProcStatus st;
  bool saw_pid = false;
  int signal_fields = 0;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string_view key = line.substr(0, colon);
    std::string_view val = trim(line.substr(colon + 1));
    bool ok = true;
    // The five signal masks, SigPnd to SigCgt: has_signals wants all five.
    const std::pair<std::string_view, SigSet*> masks[] = {{"SigPnd", &st.sig_pnd},
                                                          {"ShdPnd", &st.shd_pnd},
                                                          {"SigBlk", &st.sig_blk},
                                                          {"SigIgn", &st.sig_ign},
                                                          {"SigCgt", &st.sig_cgt}};
    auto mask = std::find_if(std::begin(masks), std::end(masks), [&](const auto& m) { return m.first == key; });
    if (mask != std::end(masks)) {
      ok = to_mask(val, *mask->second);
      ++signal_fields;
    } else if (key == "Name") st.name = std::string(val);
    else if (key == "State") {
      st.state_text = std::string(val);
      st.state = val.empty() ? '?' : val[0];
    } else if (key == "Tgid") ok = to_int(val, st.tgid);
    else if (key == "Pid") {
      ok = to_int(val, st.pid);
      saw_pid = ok;
    } else if (key == "PPid") ok = to_int(val, st.ppid);
    else if (key == "TracerPid") ok = to_int(val, st.tracer_pid);
    else if (key == "Threads") ok = to_int(val, st.threads);
    else if (key == "NSpid") {
      for (auto f : split_ws(val)) {
        pid_t p;
        if (!to_int(f, p)) return std::nullopt;
        st.nspid.push_back(p);
      }
    } else if (key == "NoNewPrivs") {
      int v;
      ok = to_int(val, v);
      st.no_new_privs = v;
    } else if (key == "voluntary_ctxt_switches") {
      ok = to_int(val, st.voluntary_ctxt_switches);
      st.has_ctxt_switches = ok;
    } else if (key == "nonvoluntary_ctxt_switches") ok = to_int(val, st.nonvoluntary_ctxt_switches);
    if (!ok) return std::nullopt;
  }
  if (!saw_pid) return std::nullopt;
  st.has_signals = signal_fields == 5;
  return st;
}

std::optional<ProcStat> parse_stat(std::string_view text) {
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so
  // split at the first '(' and the last ')'.
  size_t open = text.find('(');
  size_t close = text.rfind(')');
  if (open == std::string_view::npos || close == std::string_view::npos || close < open) return std::nullopt;
  ProcStat st;
  if (!to_int(trim(text.substr(0, open)), st.pid)) return std::nullopt;
  st.comm = std::string(text.substr(open + 1, close - open - 1));
  auto f = split_ws(text.substr(close + 1));
  // f[0] is field 3 (state); field N is f[N-3].
  if (f.size() < 36 || f[0].size() != 1) return std::nullopt;
  st.state = f[0][0];
  bool ok = to_int(f[1], st.ppid) && to_int(f[2], st.pgrp) && to_int(f[3], st.session) && to_int(f[4], st.tty_nr) &&
            to_int(f[6], st.flags) && to_int(f[19], st.start_time) && to_int(f[35], st.exit_signal);
  if (!ok) return std::nullopt;
  return st;
}

std::vector<MountInfo> parse_mountinfo(std::string_view text) {
  std::vector<MountInfo> out;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    auto f = split_ws(line);
    // id parent major:minor root mount-point options [optional...] - fstype source super-options
    auto dash = std::find(f.begin(), f.end(), std::string_view("-"));
    if (f.size() < 7 || dash == f.end() || f.end() - dash < 3) continue;
    MountInfo m;
    size_t colon = f[2].find(':');
    if (colon == std::string_view::npos || !to_int(f[0], m.mount_id) || !to_int(f[1], m.parent_id) ||
        !to_int(f[2].substr(0, colon), m.major) || !to_int(f[2].substr(colon + 1), m.minor))
      continue;
    m.root = unescape_octal(f[3]);
    m.mount_point = unescape_octal(f[4]);
    m.fs_type = std::string(dash[1]);
    m.source = unescape_octal(dash[2]);
    if (f.end() - dash > 3) m.super_options = std::string(dash[3]);
    out.push_back(std::move(m));
  }
  return out;
}

std::optional<std::string> read_text(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0) {
      close(fd);
      return std::nullopt;
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return out;
}

namespace {
std::string proc_path(pid_t pid, pid_t tid, const char* file) {
  std::string p = "/proc/" + std::to_string(pid);
  if (tid >= 0) p += "/task/" + std::to_string(tid);
  return p + "/" + file;
}

std::vector<pid_t> list_numeric_dir(const std::string& path) {
  std::vector<pid_t> out;
  DIR* d = opendir(path.c_str());
  if (!d) return out;
  while (dirent* e = readdir(d)) {
    pid_t p;
    std::string_view n(e->d_name);
    if (to_int(n, p)) out.push_back(p);
  }
  closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}
}  // namespace

std::optional<ProcStatus> read_status(pid_t pid, pid_t tid) {
  auto text = read_text(proc_path(pid, tid, "status"));
  if (!text) return std::nullopt;
  return parse_status(*text);
}

std::optional<ProcStat> read_stat(pid_t pid, pid_t tid) {
  auto text = read_text(proc_path(pid, tid, "stat"));
  if (!text) return std::nullopt;
  return parse_stat(*text);
}

std::vector<pid_t> list_tasks(pid_t pid) { return list_numeric_dir("/proc/" + std::to_string(pid) + "/task"); }

std::optional<ProcStatus> read_self_status() {
  auto text = read_text("/proc/thread-self/status");
  if (!text) text = read_text("/proc/self/status");  // kernels before 3.17
  if (!text) return std::nullopt;
  return parse_status(*text);
}

pid_t pid_in_mounted_proc() {
  auto st = read_self_status();
  KPC_CHECK_MSG(st.has_value(), "cannot read /proc/thread-self/status");
  return st->pid;
}

bool pid_gone(pid_t pid) { return kill(pid, 0) != 0 && errno == ESRCH; }

char wait_for_state(pid_t pid, char want, int timeout_ms) {
  // A deadline in milliseconds, not a count of 1 ms naps: under load (a
  // TCG guest) each nap and /proc read takes longer than its nominal time.
  const int64_t deadline = monotonic_ms() + timeout_ms;
  for (;;) {
    auto st = read_stat(pid);
    char last = st ? st->state : '-';
    if (last == want || monotonic_ms() >= deadline) return last;
    usleep(1000);
  }
}

void set_ns_last_pid(long last) {
  Fd fd(open("/proc/sys/kernel/ns_last_pid", O_WRONLY | O_CLOEXEC));
  if (!fd && errno == ENOENT) skip("no /proc/sys/kernel/ns_last_pid (CONFIG_CHECKPOINT_RESTORE)");
  KPC_CHECK_MSG(fd, "open /proc/sys/kernel/ns_last_pid: " + errno_name(errno));
  std::string text = std::to_string(last);
  if (write(fd.get(), text.data(), text.size()) < 0) {
    if (errno == EPERM) skip("writing ns_last_pid needs CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE (EPERM)");
    broken("write ns_last_pid: " + errno_name(errno));
  }
}

bool root_is_mount_point(std::string_view mountinfo_text) {
  auto mounts = parse_mountinfo(mountinfo_text);
  return std::any_of(mounts.begin(), mounts.end(), [](const MountInfo& m) { return m.mount_point == "/"; });
}

namespace {
constexpr const char* kChrootReason =
    "/ is not a mount point here (a chroot): the case needs its mounts private, and mount(2) cannot make / "
    "private where it is not a mount point";
}  // namespace

void skip_unless_root_is_mount_point() {
  auto text = read_text("/proc/self/mountinfo");
  if (text && !root_is_mount_point(*text)) skip(kChrootReason);
}

void enter_private_mount_namespace() {
  if (unshare(CLONE_NEWNS) != 0)
    skip("unshare(CLONE_NEWNS): " + errno_name(errno) + " (a private mount namespace needs CAP_SYS_ADMIN)");
  if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0) return;
  const int err = errno;
  auto text = read_text("/proc/self/mountinfo");
  if (err == EINVAL && text && !root_is_mount_point(*text)) skip(kChrootReason);
  broken("mount(nullptr, \"/\", nullptr, MS_REC | MS_PRIVATE, nullptr) failed: " + errno_name(err));
}

std::vector<pid_t> list_children(pid_t pid) {
  std::vector<pid_t> out;
  bool have_children_files = false;
  std::vector<pid_t> tasks = list_tasks(pid);
  for (pid_t tid : tasks) {
    auto text = read_text(proc_path(pid, tid, "children"));
    if (!text) continue;
    have_children_files = true;
    for (auto f : split_ws(*text)) {
      pid_t c;
      if (to_int(f, c)) out.push_back(c);
    }
  }
  if (!have_children_files && !tasks.empty()) {
    // No CONFIG_PROC_CHILDREN (or the process is gone): scan every process.
    for (pid_t p : list_numeric_dir("/proc")) {
      auto st = read_stat(p);
      if (st && st->ppid == pid) out.push_back(p);
    }
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace kpc
