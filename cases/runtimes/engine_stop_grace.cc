// engine_stop_grace: story 004 through a container engine. The workload is
// PID 1 of a container (or the engine's init's child) that catches SIGTERM,
// forwards it to a worker that ignores SIGTERM, and then waits for the
// worker -- forever, as the story's multiprocessing atexit join did. The
// probe plays the user: it starts the container (`KPC_RUNTIME_PREFIX
// pid1_workload stubborn`) and asks the engine to stop it with a grace
// period of 2 s (`podman stop -t 2` / `docker stop -t 2`: kpc's engine
// wrapper runs it when it receives SIGUSR2 and KPC_ENGINE_STOP_GRACE is
// set). The engine should send SIGTERM, wait the grace period, then SIGKILL
// the container: observed are whether SIGTERM reached the workload, whether
// the stop took the whole grace period, how the engine's client ended, and
// whether anything of the container is left.
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "kpc/probe.h"
#include "kpc/proc.h"
#include "kpc/raii.h"

namespace {

constexpr int kGraceS = 2;

std::vector<std::string> split_prefix(const char* env) {
  std::vector<std::string> out;
  std::string cur;
  for (const char* c = env; *c; ++c) {
    if (*c == '\x1f') {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += *c;
    }
  }
  out.push_back(cur);
  return out;
}

// The next line on fd within timeout_ms (nullopt on EOF or timeout); a
// {"skip": ...} line from the wrapper makes the probe skip in its words.
std::optional<std::string> next_line(int fd, std::string& buf, int timeout_ms) {
  int64_t end = kpc::monotonic_ms() + timeout_ms;
  for (;;) {
    auto nl = buf.find('\n');
    if (nl != std::string::npos) {
      std::string l = buf.substr(0, nl);
      buf.erase(0, nl + 1);
      if (l.rfind("{\"skip\": \"", 0) == 0) {
        std::string reason = l.substr(10);
        kpc::skip(reason.substr(0, reason.rfind('"')));
      }
      return l;
    }
    int left = static_cast<int>(end - kpc::monotonic_ms());
    if (left <= 0) return std::nullopt;
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, left) <= 0) return std::nullopt;
    char tmp[256];
    ssize_t n = read(fd, tmp, sizeof tmp);
    if (n <= 0) return std::nullopt;
    buf.append(tmp, static_cast<size_t>(n));
  }
}

// Workloads (and their workers) carrying the token, still alive; killed.
int kill_leftovers(const std::string& tok) {
  DIR* d = opendir("/proc");
  if (!d) return 0;
  std::vector<pid_t> pids;
  while (dirent* e = readdir(d))
    if (e->d_name[0] >= '1' && e->d_name[0] <= '9') pids.push_back(static_cast<pid_t>(atoi(e->d_name)));
  closedir(d);
  int n = 0;
  for (pid_t pid : pids) {
    auto cmd = kpc::read_text("/proc/" + std::to_string(pid) + "/cmdline");
    auto stat = kpc::read_text("/proc/" + std::to_string(pid) + "/stat");
    if (cmd && cmd->find(tok) != std::string::npos && cmd->find("pid1_workload") != std::string::npos && stat) {
      auto rp = stat->rfind(')');
      if (rp != std::string::npos && rp + 2 < stat->size() && (*stat)[rp + 2] == 'Z') continue;
      ::kill(pid, SIGKILL);
      ++n;
    }
  }
  return n;
}

}  // namespace

int probe_main(kpc::Probe& p) {
  const char* prefix_env = getenv("KPC_RUNTIME_PREFIX");
  const char* engine = getenv("KPC_RUNTIME_ENGINE");
  if (!prefix_env || !*prefix_env || !engine || !*engine)
    kpc::skip(
        "runs only under --runtime with a container engine (podman, docker, podman:init, docker:init): it "
        "asks the engine to stop its container");
  std::vector<std::string> argv = split_prefix(prefix_env);
  const std::string token = "kpc-token-" + std::to_string(getpid());
  argv.push_back(p.helper("pid1_workload"));
  argv.push_back("stubborn");
  argv.push_back(token);

  kpc::Pipe pipe = kpc::Pipe::make(O_CLOEXEC);
  pid_t pid = kpc::fork_or_broken();
  if (pid == 0) {
    dup2(pipe.write.get(), 3);
    setenv("KPC_OBS_FD", "3", 1);
    setenv("KPC_ENGINE_STOP_GRACE", std::to_string(kGraceS).c_str(), 1);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    std::vector<char*> cargv;
    for (auto& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    execv(cargv[0], cargv.data());
    _exit(127);
  }
  kpc::Child client(pid);
  pipe.write.reset();
  std::string buf;
  auto l = next_line(pipe.read.get(), buf, 60000);
  if (l && l->rfind("pending ", 0) == 0) l = next_line(pipe.read.get(), buf, 60000);
  if (!l || l->rfind("ready ", 0) != 0) {
    auto st = client.wait_for(2000);
    kpc::observe("startup", "the workload never got ready: " + (l ? *l : std::string("no report")) + "; engine " +
                                (st ? kpc::describe_wait_status(*st) : "still running"));
    kill_leftovers(token);
    kpc::finish();
  }
  kpc::observe("startup", "ready");

  // `ENGINE stop -t 2`, through the wrapper.
  int64_t asked = kpc::monotonic_ms();
  KPC_CHECK(::kill(client.pid(), SIGUSR2) == 0);
  bool got_term = false;
  std::optional<int> st;
  while (!(st = client.wait_for(50))) {
    if (kpc::monotonic_ms() - asked > 30000) break;
    auto m = next_line(pipe.read.get(), buf, 0);
    if (m && *m == "sig 15") got_term = true;
  }
  int64_t took = kpc::monotonic_ms() - asked;
  for (auto m = next_line(pipe.read.get(), buf, 200); m; m = next_line(pipe.read.get(), buf, 200))
    if (*m == "sig 15") got_term = true;
  kpc::observe("stop.sigterm_reached_workload", got_term);
  // the engine kills after the grace period: allow its own start-up slack,
  // but a stop well under the grace was no grace at all
  kpc::observe("stop.took_the_grace_period", took >= kGraceS * 1000 - 100);
  kpc::note("stop.ms", std::to_string(took));
  if (!st) {
    client.kill(SIGKILL);
    client.wait();
    kpc::observe("stop.client_status", std::string("still running"));
  } else {
    kpc::observe("stop.client_status", kpc::describe_wait_status(*st));
  }
  usleep(300000);
  kpc::observe("stop.workload_left", kill_leftovers(token) > 0);
  return 0;
}
