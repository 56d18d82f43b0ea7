// kpc-launch: the only place that creates namespaces and supervises probes.
//
// Process structure of one run:
//
//   kpc-launch (L)          child subreaper; event loop; never blocks in waitpid
//    └─ shim (S)            host: a subreaper; pidns/userns: PID 1 of the new
//        │                  namespace. Sets PDEATHSIG, so L's death ends it.
//        └─ probe (P)       exec'd with a clean signal state, fd 3 = observations
//
// S reports P's wait status to L over a pipe, then ends the run: in a PID
// namespace by exiting (the kernel kills the rest), on the host by killing
// its remaining descendants. L watches S's whole tree for tasks stuck in
// uninterruptible sleep (a hang), captures their kernel stacks, aborts the
// run's FUSE connections and kills the tree.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace kpcl {

using json = nlohmann::json;

enum class Flavor { host, pidns, userns };
std::optional<Flavor> parse_flavor(const std::string& s);
const char* flavor_name(Flavor f);

struct RunSpec {
  std::string run;        // unique id within a batch
  std::string case_id;
  std::string variant;
  Flavor flavor = Flavor::host;
  std::vector<std::string> argv;  // argv[0] is the probe's path
  std::map<std::string, std::string> env;
  int timeout_ms = 10000;  // deadline for the whole run
  int hang_ms = 1000;      // a task asleep without running this long is stuck
  bool exclusive = false;  // run alone (timing-sensitive cases)
  // The "dirty caller": signals blocked and ignored when argv[0] starts
  // (a runtime under test shows whether it passes them on). Empty: clean.
  std::vector<int> caller_blocked, caller_ignored;
};

// Parses one plan line; throws std::runtime_error with a reason.
RunSpec spec_from_json(const json& j);

struct Options {
  int jobs = 1;
  int scan_interval_ms = 100;
  int recovery_ms = 5000;  // how long recovery may take before giving up
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
  std::string tmpdir;
};

// Creates the run's directory and pipes and starts S in the flavor's
// namespaces. On failure returns nullopt and sets *error.
// Remove run directories left by launchers that were killed.
void sweep_stale_run_dirs();

std::optional<Spawned> spawn_run(const RunSpec& spec, std::string* error);

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

// FUSE connections (the /sys/fs/fuse/connections/N numbers) of every mount
// that the tree's tasks can see.
std::vector<unsigned long> tree_fuse_connections(const std::vector<pid_t>& procs);
// Writes to /sys/fs/fuse/connections/N/abort. When fusectl is not mounted
// there, a short-lived child mounts it in a private mount namespace, so the
// machine's mounts are left as they were. Returns "" or an error text.
std::string abort_fuse_connection(unsigned long conn);

// libcap's text form of this process's capabilities, e.g. "=ep".
std::string capabilities_text();
bool has_effective_cap(const char* name);
std::vector<std::string> effective_caps();  // "CAP_SYS_ADMIN", ...

}  // namespace kpcl
