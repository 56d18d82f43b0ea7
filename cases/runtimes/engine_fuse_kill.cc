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
#include <fcntl.h>
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

namespace {}  // namespace

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
  kpc::runtime::Reports reports(std::move(pipe.read));
  std::optional<std::string> l;
  do {
    l = reports.line(60000);
  } while (l && l->rfind("{", 0) == 0 && l->find("\"broken\"") == std::string::npos);  // the helper's records
  if (!l || l->rfind("ready ", 0) != 0) {
    auto st = client.wait_for(2000);
    kpc::observe("startup", "the workload never got ready: " + (l ? *l : std::string("no report")) + "; engine " +
                                (st ? kpc::describe_wait_status(*st) : "still running"));
    kpc::runtime::kill_workloads(token, "fuse_self_server");
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
    while (auto m = reports.line(0)) facts.push_back(*m);
  }
  int64_t took = kpc::monotonic_ms() - asked;
  for (auto m = reports.line(500); m; m = reports.line(500)) facts.push_back(*m);
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
  kpc::observe("kill.workload_left", kpc::runtime::kill_workloads(token, "fuse_self_server") > 0);
  return 0;
}
