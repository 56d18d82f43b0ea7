#include "kpc/runtime.h"

#include <dirent.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>

#include "kpc/proc.h"
#include "kpc/record.h"

namespace kpc::runtime {

std::vector<std::string> prefix_or_skip(std::string_view why) {
  const char* env = getenv("KPC_RUNTIME_PREFIX");
  if (!env || !*env) skip(why);
  std::vector<std::string> out(1);
  for (const char* c = env; *c; ++c) {
    if (*c == '\x1f') out.emplace_back();
    else out.back() += *c;
  }
  return out;
}

std::optional<std::string> Reports::line(int timeout_ms) {
  int64_t end = monotonic_ms() + timeout_ms;
  for (;;) {
    auto nl = buf_.find('\n');
    if (nl != std::string::npos) {
      std::string l = buf_.substr(0, nl);
      buf_.erase(0, nl + 1);
      if (l.rfind("{\"skip\": \"", 0) == 0) {
        std::string reason = l.substr(10);
        skip(reason.substr(0, reason.rfind('"')));
      }
      return l;
    }
    int left = static_cast<int>(end - monotonic_ms());
    if (left <= 0) return std::nullopt;
    pollfd p{rd_.get(), POLLIN, 0};
    if (poll(&p, 1, left) <= 0) return std::nullopt;
    char tmp[256];
    ssize_t n = read(rd_.get(), tmp, sizeof tmp);
    if (n <= 0) return std::nullopt;
    buf_.append(tmp, static_cast<size_t>(n));
  }
}

bool Reports::writers_gone(int timeout_ms) {
  int64_t end = monotonic_ms() + timeout_ms;
  for (;;) {
    int left = static_cast<int>(end - monotonic_ms());
    if (left <= 0) return false;
    pollfd p{rd_.get(), POLLIN, 0};
    if (poll(&p, 1, left) <= 0) return false;
    char tmp[256];
    ssize_t n = read(rd_.get(), tmp, sizeof tmp);
    if (n == 0) return true;
    if (n < 0) return false;
  }
}

void exec_with_reports(std::vector<std::string> argv, int report_w) {
  dup2(report_w, 3);
  setenv("KPC_OBS_FD", "3", 1);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  execv(cargv[0], cargv.data());
  _exit(127);
}

std::string workload_token() { return "kpc-token-" + std::to_string(getpid()); }

int kill_workloads(const std::string& token, std::string_view program) {
  DIR* d = opendir("/proc");
  if (!d) return 0;
  std::vector<pid_t> pids;
  while (dirent* e = readdir(d))
    if (e->d_name[0] >= '1' && e->d_name[0] <= '9') pids.push_back(static_cast<pid_t>(atoi(e->d_name)));
  closedir(d);
  int n = 0;
  for (pid_t pid : pids) {
    auto cmd = read_text("/proc/" + std::to_string(pid) + "/cmdline");
    auto st = read_stat(pid);
    if (!cmd || cmd->find(token) == std::string::npos || cmd->find(program) == std::string::npos) continue;
    if (!st || st->state == 'Z') continue;  // gone, or dead and only not yet reaped
    ::kill(pid, SIGKILL);
    ++n;
  }
  return n;
}

}  // namespace kpc::runtime
