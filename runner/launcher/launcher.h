// kpc-launch: the only place that creates the runs' namespaces (a probe may
// make more inside its run) and supervises probes.
//
// Process structure of one run:
//
//   kpc-launch (L)          child subreaper; event loop; never blocks in waitpid
//    └─ shim (S)            host: a subreaper; pidns/userns: PID 1 of the new
//        │                  namespace. Sets PDEATHSIG, so L's death ends it.
//        └─ probe (P)       exec'd with a clean signal state, fd 3 = observations
//
// S reports P's wait status to L over a pipe, then ends the run: it kills
// its remaining descendants and exits once none is left. L watches S's
// whole tree for tasks stuck in uninterruptible sleep (a hang) and captures
// their kernel stacks; then it asks S to recover (a byte on S's command
// pipe): S frees the run's FUSE deadlocks (fuse_recovery.h) and kills its
// tree. S is the run's recovery agent because it outlives L: when L dies
// (its command pipe ends, PDEATHSIG) S recovers by itself, removes the run
// directory and runs the plan's cleanup command, so that killing the
// launcher, the runner or both leaves nothing behind.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "kpc/proc.h"

namespace kpcl {

using json = nlohmann::json;

enum class Flavor { host, pidns, userns };
std::optional<Flavor> parse_flavor(const std::string& s);
const char* flavor_name(Flavor f);

struct RunSpec {
  std::string run;  // unique id within a batch
  std::string case_id;
  std::string variant;
  Flavor flavor = Flavor::host;
  std::vector<std::string> argv;  // argv[0] is the probe's path
  std::map<std::string, std::string> env;
  int timeout_ms = 10000;  // deadline for the whole run
  int hang_ms = 1000;      // a task asleep without running this long is stuck
  bool exclusive = false;  // run alone (timing-sensitive cases)
  // After a hang: for this long only the run's FUSE connections are
  // aborted (by L, through fusectl) and the run may end by itself -- a
  // container engine reaps its container once the deadlock is undone
  // (engine_fuse_kill) -- before S is asked to kill the tree. 0: at once.
  int hang_grace_ms = 0;
  // The "dirty caller": signals blocked and ignored when argv[0] starts
  // (a runtime under test shows whether it passes them on). Empty: clean.
  std::vector<int> caller_blocked, caller_ignored;
  // Give the probe a socket to S in KPC_SUPERVISOR_FD (kpc/supervisor.h):
  // FUSE cases deposit their /dev/fuse descriptor there when recovering
  // without privilege. Off by default: an extra descriptor is state the
  // hygiene probes would see.
  bool supervisor_channel = false;
  // Run by S after the run's tree is gone, however the run ended (an OCI
  // runtime's container and bundle, say); stdio on /dev/null, 20 s at most.
  std::vector<std::string> cleanup;
};

// Parses one plan line; throws std::runtime_error with a reason.
RunSpec spec_from_json(const json& j);

struct Options {
  int jobs = 1;
  int scan_interval_ms = 100;
  int recovery_ms = 5000;  // how long recovery may take before a run is reported as not recovered
  int linger_ms = 20000;   // after the plan, how long L keeps helping such runs before it exits
  bool frame = false;      // prefix output lines for a noisy serial console
};

// Runs the plan: up to `jobs` runs at a time, exclusive ones alone, in
// order. `emit` receives one JSON object per event ("start", "result").
// Returns 0, or 130 when interrupted by SIGINT/SIGTERM/SIGHUP.
int run_batch(const std::vector<RunSpec>& plan, const Options& opt, const std::function<void(const json&)>& emit);

// --- pieces, exposed for the unit tests ------------------------------------

struct Spawned {
  pid_t shim = -1;
  int obs_r = -1, out_r = -1, err_r = -1, status_r = -1;
  int cmd_w = -1;  // to S: kRecoverByte asks it to recover; closing it (L's death) too
  std::string tmpdir;
};
inline constexpr char kRecoverByte = 'r';

// What a run's S needs to free the run's FUSE deadlocks by itself.
struct RecoveryScope {
  int fusectl_fd = -1;              // fuse::open_fusectl(), or -1
  std::string fuse_recovery;        // "fusectl" or "device" (kpc/supervisor.h)
  std::set<unsigned long> foreign;  // FUSE connections L saw before the run
};

// Remove run directories left by launchers that were killed.
void sweep_stale_run_dirs();

// Creates the run's directory (0700, in $TMPDIR or /tmp) and pipes and
// starts S in the flavor's namespaces. On failure returns nullopt and sets
// *error.
std::optional<Spawned> spawn_run(const RunSpec& spec, const RecoveryScope& scope, std::string* error);

// S, in shim.cc. Never returns.
struct ShimFds {
  int obs_w = -1, out_w = -1, err_w = -1, status_w = -1, sync_r = -1, cmd_r = -1;
  int sup = -1;        // S's end of the supervisor channel, or -1
  int sup_probe = -1;  // the probe's end (fd 4 in the probe)
};
[[noreturn]] void shim_main(const RunSpec& spec, const ShimFds& fds, const std::string& tmpdir,
                            const RecoveryScope& scope);

// One task (thread) of a supervised tree, as /proc shows it.
struct TaskInfo {
  pid_t pid = -1, tid = -1;
  std::string comm;
  char state = '?';
  bool exiting = false;
  bool sigkill_pending = false;
  uint64_t ctxt_switches = 0;
  std::vector<pid_t> nspid;
  std::string wchan;
  std::vector<std::string> stack;  // empty when unreadable
  std::string stack_error;         // why, e.g. "EACCES (needs root)"
};

// Every task of the process tree rooted at `root` (root included).
std::vector<pid_t> tree_processes(pid_t root);
std::vector<TaskInfo> tree_tasks(pid_t root, bool with_stacks);

// A task that may be stuck: asleep uninterruptibly, or asleep while exiting
// or with SIGKILL pending (nothing will wake it).
bool may_be_stuck(const TaskInfo& t);

json task_json(const TaskInfo& t);

// Tasks asleep on a FUSE request that no task of the tree can answer: every
// task that holds /dev/fuse is exiting or itself waiting on FUSE, or none is
// left (S's own recovery descriptor does not count). Such a waiter cannot
// make progress -- a hang as soon as it is seen, no need to wait hang_ms.
std::set<pid_t> unanswerable_fuse_waiters(const std::vector<TaskInfo>& tasks, pid_t shim);

// Detaches the mounts under `tmpdir` that the caller's mount namespace
// shows (a host-flavor probe's leftovers), deepest first; one entry each.
json unmount_leftovers(const std::string& tmpdir);
// ... found in `mounts`, the caller's mount table read already.
json unmount_leftovers(const std::string& tmpdir, std::vector<kpc::MountInfo> mounts);

// libcap's text form of this process's capabilities, e.g. "=ep".
std::string capabilities_text();
bool has_effective_cap(const char* name);
std::vector<std::string> effective_caps();  // "CAP_SYS_ADMIN", ...

}  // namespace kpcl
