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
#include "kpc/runtime.h"

namespace {

constexpr int kGraceS = 2;

}  // namespace

int probe_main(kpc::Probe& p) {
  const char* why =
      "runs only under --runtime with a container engine (podman, docker, podman:init, docker:init): it "
      "asks the engine to stop its container";
  std::vector<std::string> argv = kpc::runtime::prefix_or_skip(why);
  const char* engine = getenv("KPC_RUNTIME_ENGINE");
  if (!engine || !*engine) kpc::skip(why);
  const std::string token = kpc::runtime::workload_token();
  argv.push_back(p.helper("pid1_workload"));
  argv.push_back("stubborn");
  argv.push_back(token);

  kpc::Pipe pipe = kpc::Pipe::make(O_CLOEXEC);
  pid_t pid = kpc::fork_or_broken();
  if (pid == 0) {
    setenv("KPC_ENGINE_STOP_GRACE", std::to_string(kGraceS).c_str(), 1);
    kpc::runtime::exec_with_reports(argv, pipe.write.get());
  }
  kpc::Child client(pid);
  pipe.write.reset();
  kpc::runtime::Reports reports(std::move(pipe.read));
  auto l = reports.line(60000);
  if (l && l->rfind("pending ", 0) == 0) l = reports.line(60000);
  if (!l || l->rfind("ready ", 0) != 0) {
    auto st = client.wait_for(2000);
    kpc::observe("startup", "the workload never got ready: " + (l ? *l : std::string("no report")) + "; engine " +
                                (st ? kpc::describe_wait_status(*st) : "still running"));
    kpc::runtime::kill_workloads(token);
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
    auto m = reports.line(0);
    if (m && *m == "sig 15") got_term = true;
  }
  int64_t took = kpc::monotonic_ms() - asked;
  for (auto m = reports.line(200); m; m = reports.line(200))
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
  kpc::observe("stop.workload_left", kpc::runtime::kill_workloads(token) > 0);
  return 0;
}
