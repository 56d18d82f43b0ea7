// engine_fuse_kill: story 002 through a container engine. The container's
// process serves its own FUSE mount from a thread and holds a file of that
// mount open (helper fuse_self_server). The probe plays the user: it starts
// the container (`KPC_RUNTIME_PREFIX fuse_self_server TOKEN`, with
// KPC_ENGINE_FUSE=1 so kpc's engine wrapper gives it /dev/fuse and
// CAP_SYS_ADMIN) and asks the engine to kill it (`podman kill` / `docker
// kill`: SIGUSR2 to the wrapper with KPC_ENGINE_KILL=1). The kill ends the
// server thread; the process's exit closes the file and waits in
// fuse_flush for an answer nobody will give: kpc-launch reports the hang
// with every task's stack and, for this case (hang_grace_ms), only aborts
// the run's FUSE connections at first -- the container's, nobody else's --
// and lets the engine finish on its own. Observed after that: how the
// engine's kill and its `run` client ended, how many containers the engine
// still lists, whether anything of the workload is left.
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
#include "kpc/runtime.h"
#include "kpc/supervisor.h"

namespace {

// The text of "key":"..." in a JSON line (kpc's own records: no escapes
// that matter for a reason), or nullopt.
std::optional<std::string> json_str(const std::string& line, const std::string& key) {
  auto at = line.find("\"" + key + "\"");
  if (at == std::string::npos) return std::nullopt;
  auto q = line.find('"', line.find(':', at) + 1);
  if (q == std::string::npos) return std::nullopt;
  auto e = line.find('"', q + 1);
  while (e != std::string::npos && line[e - 1] == '\\') e = line.find('"', e + 1);
  return line.substr(q + 1, e == std::string::npos ? std::string::npos : e - q - 1);
}

// The next line on fd within timeout_ms (nullopt on EOF or timeout). A skip
// record from the wrapper or the helper makes the probe skip in its words.
std::optional<std::string> next_line(int fd, std::string& buf, int timeout_ms) {
  int64_t end = kpc::monotonic_ms() + timeout_ms;
  for (;;) {
    auto nl = buf.find('\n');
    if (nl != std::string::npos) {
      std::string l = buf.substr(0, nl);
      buf.erase(0, nl + 1);
      if (l.rfind("{", 0) == 0)
        if (auto reason = json_str(l, "skip")) kpc::skip(*reason);
      return l;
    }
    int left = static_cast<int>(end - kpc::monotonic_ms());
    if (left <= 0) return std::nullopt;
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, left) <= 0) return std::nullopt;
    char tmp[512];
    ssize_t n = read(fd, tmp, sizeof tmp);
    if (n <= 0) return std::nullopt;
    buf.append(tmp, static_cast<size_t>(n));
  }
}

// The workload (fuse_self_server with the token) still alive: killed, counted.
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
    if (cmd && cmd->find(tok) != std::string::npos && cmd->find("fuse_self_server") != std::string::npos) {
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
        "asks the engine to kill its container");
  if (kpc::supervisor::fuse_recovery() != kpc::supervisor::kFusectl)
    kpc::skip(
        "the container's deadlock can only be undone through fusectl (root): without it kpc could not free "
        "the container");
  std::vector<std::string> argv = kpc::runtime::prefix_or_skip("runs only under --runtime");
  const std::string token = kpc::runtime::workload_token();
  argv.push_back(p.helper("fuse_self_server"));
  argv.push_back(token);

  kpc::Pipe pipe = kpc::Pipe::make(O_CLOEXEC);
  pid_t pid = kpc::fork_or_broken();
  if (pid == 0) {
    setenv("KPC_ENGINE_KILL", "1", 1);
    setenv("KPC_ENGINE_FUSE", "1", 1);
    kpc::runtime::exec_with_reports(argv, pipe.write.get());
  }
  kpc::Child client(pid);
  pipe.write.reset();
  std::string buf;
  std::optional<std::string> l;
  do {
    l = next_line(pipe.read.get(), buf, 60000);
  } while (l && l->rfind("{", 0) == 0 && l->find("\"broken\"") == std::string::npos);  // the helper's records
  if (!l || l->rfind("ready ", 0) != 0) {
    auto st = client.wait_for(2000);
    kpc::observe("startup", "the workload never got ready: " + (l ? *l : std::string("no report")) + "; engine " +
                                (st ? kpc::describe_wait_status(*st) : "still running"));
    kill_leftovers(token);
    kpc::finish();
  }
  kpc::observe("startup", "ready");
  if (auto c = l->find(" conn "); c != std::string::npos)
    kpc::note("container.fuse_connection", l->substr(c + 6, l->find(' ', c + 6) - c - 6));

  // `ENGINE kill`, through the wrapper.
  kpc::mark("engine-kill-asked");
  int64_t asked = kpc::monotonic_ms();
  KPC_CHECK(::kill(client.pid(), SIGUSR2) == 0);
  std::optional<int> st;
  std::vector<std::string> facts;
  while (!(st = client.wait_for(50))) {
    if (kpc::monotonic_ms() - asked > 60000) break;
    while (auto m = next_line(pipe.read.get(), buf, 0)) facts.push_back(*m);
  }
  int64_t took = kpc::monotonic_ms() - asked;
  for (auto m = next_line(pipe.read.get(), buf, 500); m; m = next_line(pipe.read.get(), buf, 500)) facts.push_back(*m);
  kpc::note("kill.ms", std::to_string(took));
  if (!st) {
    client.kill(SIGKILL);
    client.wait();
    kpc::observe("kill.client_status", std::string("still running"));
  } else {
    kpc::observe("kill.client_status", kpc::describe_wait_status(*st));
  }
  // The wrapper's report: "engine request exited N MS", "engine ps_a N".
  std::string request = "no report", listed = "no report";
  for (const auto& f : facts) {
    if (f.rfind("engine request ", 0) == 0) {
      std::string rest = f.substr(15);
      auto sp = rest.rfind(' ');
      request = rest.substr(0, sp);
      kpc::note("kill.engine_kill_ms", rest.substr(sp + 1));
    } else if (f.rfind("engine ps_a ", 0) == 0) {
      listed = f.substr(12);
    }
  }
  kpc::observe("kill.engine_kill", request);
  kpc::observe("kill.containers_listed_after", listed);
  usleep(300000);
  kpc::observe("kill.workload_left", kill_leftovers(token) > 0);
  return 0;
}
