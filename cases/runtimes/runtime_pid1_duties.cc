// runtime_pid1_duties: what a runtime or init does for the workload it
// starts — the duties of a container's PID 1, one duty per variant. Runs
// only under --runtime: the launcher hands this probe the runtime's command
// prefix ($KPC_RUNTIME_PREFIX, fields separated by \x1f) and the probe
// plays the container engine: it starts `PREFIX pid1_workload MODE` itself,
// once per run, and watches from outside. The workload reports on fd 3 (a
// pipe to us, passed through the runtime). Every variant first checks that
// the runtime got its workload running and left it no pending signal
// (startup, workload.inherited_pending), then its duty:
//
//   *_exit_status:     the workload exits 7; how does the runtime exit?
//   *_signal_death:    the workload dies of SIGUSR2; how does the runtime
//                      exit? (docker-style inits report 128+12 = 140)
//   *_forwarding:      SIGTERM, SIGINT, SIGHUP, SIGUSR1 sent to the runtime;
//                      which reach the workload's handlers? Does SIGTERM
//                      also reach another process of the workload's process
//                      group (group forwarding mode)?
//   *_orphan_reaping:  the workload double-forks; who adopts the orphan (the
//                      runtime, the workload itself as a container's PID 1,
//                      or someone else), and is it reaped 1.5 s after it
//                      exits or left a zombie?
//   *_runtime_sigkill: SIGKILL of the runtime: does the workload survive it?
//
// child_*: the engine starts the runtime as its plain child (docker run
// --init, a shell); pid1_*: as PID 1 of a new PID namespace with its own
// /proc (clone(CLONE_NEWPID|CLONE_NEWNS), as `unshare --pid --fork
// --mount-proc` does; with the engine's /proc the workload's PIDs name other
// processes and runc fails), the place an init is made for: orphans reach
// it without a subreaper, signals from the engine arrive only if it handles
// (or blocks) them, and its death ends the namespace.
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "kpc/probe.h"
#include "kpc/proc.h"
#include "kpc/raii.h"
#include "kpc/runtime.h"
#include "kpc/signals.h"

namespace {

// One runtime instance with its workload, and the report pipe.
struct Instance {
  kpc::Child runtime;
  kpc::runtime::Reports reports;
  std::string workload;  // the workload's pid as it sees itself ("ready N")
  std::string pending;   // signals pending for the workload at its start ("pending MASK")

  std::optional<std::string> line(int timeout_ms) { return reports.line(timeout_ms); }
  bool writers_gone(int timeout_ms) { return reports.writers_gone(timeout_ms); }
};

// "pending MASK" from the workload: the hex mask as a set (bit N-1 = signal N).
kpc::SigSet pending_set(const std::string& hex) {
  kpc::SigSet s;
  s.bits = strtoull(hex.c_str(), nullptr, 16);
  return s;
}

// The engine this probe plays: the runtime's prefix, the workload, and
// where the runtime runs (the engine's child, or PID 1 of a new namespace).
struct Engine {
  std::vector<std::string> prefix;
  std::string workload;
  bool as_pid1 = false;

  // Starts `PREFIX pid1_workload ARGS TOKEN` and waits for it to be ready;
  // records startup and what the workload inherited. A runtime that does
  // not get its workload running ends the run here.
  Instance start(const std::vector<std::string>& args) const;
};

Instance Engine::start(const std::vector<std::string>& args) const {
  kpc::Pipe pipe = kpc::Pipe::make(O_CLOEXEC);
  std::vector<std::string> argv = prefix;
  argv.push_back(workload);
  for (const auto& a : args) argv.push_back(a);
  argv.push_back(kpc::runtime::workload_token());
  pid_t pid = as_pid1 ? kpc::fork_into_new_pidns_or_skip(CLONE_NEWNS) : kpc::fork_or_broken();
  if (pid == 0) {
    if (as_pid1 && (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
                    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0))
      _exit(126);
    // The engine's child: fd 3 = the report pipe (also the fd the OCI
    // wrapper passes into the container), a clean signal state.
    kpc::runtime::exec_with_reports(argv, pipe.write.get());
  }
  Instance in{kpc::Child(pid), kpc::runtime::Reports(std::move(pipe.read)), "", ""};
  pipe.write.reset();
  // A container engine starts a container in 1.5-2 s alone, but many at
  // once on a loaded machine took over 10 s (kpc's docker wrapper starts a
  // private dockerd per container): give an engine 60 s.
  const char* engine = getenv("KPC_RUNTIME_ENGINE");
  const int ready_ms = engine && *engine ? 60000 : 10000;
  auto ready = in.line(ready_ms);
  if (ready && ready->rfind("pending ", 0) == 0) {
    in.pending = ready->substr(8);
    ready = in.line(ready_ms);
  }
  if (!ready || ready->rfind("ready ", 0) != 0) {
    // The runtime did not get its workload running: the runtime's failure,
    // judged as such (startup = ready in the table), with what the workload
    // inherited when that is why it died -- then this run is over.
    auto st = in.runtime.wait_for(2000);
    if (!in.pending.empty()) kpc::observe("workload.inherited_pending", pending_set(in.pending));
    kpc::observe("startup", "the workload never got ready: " + (ready ? *ready : std::string("no report")) +
                                "; runtime " + (st ? kpc::describe_wait_status(*st) : "still running"));
    if (!st) {
      in.runtime.kill(SIGKILL);
      in.runtime.wait();
    }
    kpc::runtime::kill_workloads(kpc::runtime::workload_token());
    kpc::finish();
  }
  // It got ready: the runtime started it, and left it no pending signal.
  in.workload = ready->substr(6);
  kpc::observe("startup", "ready");
  kpc::observe("workload.inherited_pending", pending_set(in.pending));
  return in;
}

std::string runtime_end(Instance& in, int timeout_ms) {
  auto st = in.runtime.wait_for(timeout_ms);
  if (!st) {
    in.runtime.kill(SIGKILL);
    in.runtime.wait();
    kpc::runtime::kill_workloads(kpc::runtime::workload_token());
    return "still running";
  }
  return kpc::describe_wait_status(*st);
}

// The workload exits 7.
void exit_status(const Engine& e) {
  Instance in = e.start({"exit", "7"});
  kpc::observe("exit7.runtime_status", runtime_end(in, 5000));
}

// The workload dies of SIGUSR2.
void signal_death(const Engine& e) {
  Instance in = e.start({"selfkill", std::to_string(SIGUSR2)});
  kpc::observe("killed_by_sigusr2.runtime_status", runtime_end(in, 5000));
}

// Signals sent to the runtime: which reach the workload?
void forwarding(const Engine& e) {
  Instance in = e.start({"signals"});
  bool group = false;
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGUSR1}) {
    bool got = false;
    if (::kill(in.runtime.pid(), sig) == 0) {
      // The workload's line, and for SIGTERM its group member's (up to
      // 1 s more once the workload's has come).
      int64_t end = kpc::monotonic_ms() + 2000;
      for (;;) {
        int left = static_cast<int>(end - kpc::monotonic_ms());
        auto l = in.line(left > 0 ? left : 0);
        if (!l) break;
        if (*l == "sig " + std::to_string(sig)) {
          got = true;
          if (sig != SIGTERM || group) break;
          end = std::min(end, kpc::monotonic_ms() + 1000);
        } else if (*l == "grp " + std::to_string(SIGTERM)) {
          group = true;
          if (got) break;
        }
      }
    }
    std::string name = "forwards." + kpc::signal_name(sig);  // sigabbrev_np is glibc >= 2.32
    for (auto& c : name) c = static_cast<char>(tolower(c));
    kpc::observe(name, got);
  }
  kpc::observe("forwards.sigterm_to_process_group", group);
  kpc::note("signals.runtime_status", runtime_end(in, 7000));
}

// An orphan of the workload: who adopts it, and is it reaped?
void orphan_reaping(const Engine& e) {
  Instance in = e.start({"orphan"});
  std::string adopted = "nobody reported", state = "not reported";
  for (int i = 0; i < 2; ++i) {
    auto l = in.line(5000);
    if (!l) break;
    if (l->rfind("orphan ", 0) == 0) {
      // PIDs as the orphan sees them: the runtime is 1 in the pid1
      // variants; a workload that is PID 1 itself (runc) says so first.
      std::string ppid = l->substr(l->rfind(' ') + 1);
      const std::string runtime_pid = e.as_pid1 ? "1" : std::to_string(in.runtime.pid());
      adopted = ppid == in.workload   ? "the workload (PID 1 of its namespace)"
                : ppid == runtime_pid ? "the runtime"
                                      : "another process";
    } else if (l->rfind("orphan_state ", 0) == 0) {
      state = l->substr(13);
    }
  }
  kpc::observe("orphan.adopted_by", adopted);
  kpc::observe("orphan.after_exit", state);
  kpc::note("orphan.runtime_status", runtime_end(in, 5000));
}

// SIGKILL of the runtime: does the workload outlive it?
void runtime_sigkill(const Engine& e) {
  Instance in = e.start({"sleep"});
  in.runtime.kill(SIGKILL);
  in.runtime.wait();
  // Every writer of the report pipe gone = the workload died too.
  kpc::observe("sigkill_of_runtime.workload_survives", !in.writers_gone(1500));
  kpc::runtime::kill_workloads(kpc::runtime::workload_token());
}

}  // namespace

int probe_main(kpc::Probe& p) {
  const std::vector<std::string> prefix =
      kpc::runtime::prefix_or_skip("runs only under --runtime (it plays the engine that starts the runtime)");
  const std::string workload = p.helper("pid1_workload");
  // A duty, with the runtime as the engine's child or as PID 1 of its own
  // namespace (whose /proc it mounts: / must be a mount point).
  auto duty = [&](bool as_pid1, void (*check)(const Engine&)) -> std::function<int()> {
    return [&prefix, &workload, as_pid1, check] {
      if (as_pid1) kpc::skip_unless_root_is_mount_point();
      check(Engine{prefix, workload, as_pid1});
      return 0;
    };
  };
  return p.dispatch({
      {"child_exit_status", duty(false, exit_status)},
      {"child_signal_death", duty(false, signal_death)},
      {"child_forwarding", duty(false, forwarding)},
      {"child_orphan_reaping", duty(false, orphan_reaping)},
      {"child_runtime_sigkill", duty(false, runtime_sigkill)},
      {"pid1_exit_status", duty(true, exit_status)},
      {"pid1_signal_death", duty(true, signal_death)},
      {"pid1_forwarding", duty(true, forwarding)},
      {"pid1_orphan_reaping", duty(true, orphan_reaping)},
      {"pid1_runtime_sigkill", duty(true, runtime_sigkill)},
  });
}
