// For probes that play the container engine under --runtime
// (cases/runtimes/): the launcher hands them the runtime's command prefix in
// $KPC_RUNTIME_PREFIX, they start `PREFIX pid1_workload MODE ... TOKEN`
// themselves, and the workload reports on fd 3, a pipe to the probe that
// the runtime (or kpc's OCI wrapper) passes into the container.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kpc/raii.h"

namespace kpc::runtime {

// $KPC_RUNTIME_PREFIX split at \x1f; skips the probe, saying `why`, when
// it is unset or empty (the probe does not run under --runtime).
std::vector<std::string> prefix_or_skip(std::string_view why);

// The read end of a workload's report pipe, read a line at a time.
class Reports {
 public:
  explicit Reports(Fd rd) : rd_(std::move(rd)) {}
  // The next line, or nullopt on EOF or after timeout_ms. A runtime that
  // could not start its container (kpc's OCI wrapper writes {"skip": ...}
  // to fd 3) makes the whole probe skip with the runtime's own words.
  std::optional<std::string> line(int timeout_ms);
  // True when every writer of the pipe is gone within timeout_ms (EOF).
  bool writers_gone(int timeout_ms);

 private:
  Fd rd_;
  std::string buf_;
};

// In a forked child: fd 3 = report_w (and $KPC_OBS_FD=3), an empty signal
// mask, then execv(argv); _exit(127) when the exec fails.
[[noreturn]] void exec_with_reports(std::vector<std::string> argv, int report_w);

// A word unique to this probe, put in every workload's argv so the ones a
// runtime leaves behind can be found (kill_workloads).
std::string workload_token();

// SIGKILLs every live (not zombie) `program` (its path in the command line)
// whose command line carries `token`; returns how many there were.
int kill_workloads(const std::string& token, std::string_view program = "pid1_workload");

}  // namespace kpc::runtime
