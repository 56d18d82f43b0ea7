// runtime_delivers_every_signal: podman's test/system/130-kill.bats for
// every container runtime kpc drives. The workload (sigtrap_workload)
// traps every catchable signal 1..64 (not SIGKILL, SIGSTOP, glibc's 32 and
// 33) the way a shell's `trap` does -- not one that was ignored when it
// started -- and the probe sends each through the runtime's own kill
// command (`podman kill -s N`, `docker kill -s N`, `runc kill ID N`, `crun
// kill ID N`: SIGUSR2 to kpc's wrapper with KPC_KILL_SIGNALS set). Every
// one must arrive. The class: containers/crun#2058 (a crun change let the
// container inherit SIGPIPE ignored from its Go parent, and `trap ... 13`
// silently failed).
//
// Variant go_ignored_caller: the runtime is started with SIGHUP, SIGINT,
// SIGTSTP, SIGTTIN, SIGTTOU and SIGUSR2 ignored. A Go program keeps an
// inherited ignore of the first five for its children (Go's runtime
// respects SIG_IGN for SIGHUP and SIGINT, and never touches the job-control
// three) and resets SIGUSR2 (it installs its own handler): does the
// container's process start with them ignored? (kpc's own wrapper catches
// SIGHUP, SIGINT and SIGUSR2 to forward them: only the job-control three
// reach the engine or runc ignored.)
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdlib>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "kpc/probe.h"
#include "kpc/proc.h"
#include "kpc/raii.h"
#include "kpc/runtime.h"
#include "kpc/signals.h"

namespace {

std::optional<std::string> next_line(int fd, std::string& buf, int timeout_ms, bool* eof = nullptr) {
  int64_t end = kpc::monotonic_ms() + timeout_ms;
  for (;;) {
    auto nl = buf.find('\n');
    if (nl != std::string::npos) {
      std::string l = buf.substr(0, nl);
      buf.erase(0, nl + 1);
      if (l.rfind("{\"skip\":", 0) == 0) {
        auto q = l.find('"', 8);
        auto e = l.rfind('"');
        kpc::skip(q != std::string::npos && e > q ? l.substr(q + 1, e - q - 1) : l);
      }
      return l;
    }
    int left = static_cast<int>(end - kpc::monotonic_ms());
    if (left <= 0) return std::nullopt;
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, left) <= 0) return std::nullopt;
    char tmp[1024];
    ssize_t n = read(fd, tmp, sizeof tmp);
    if (n == 0 && eof) *eof = true;
    if (n <= 0) return std::nullopt;
    buf.append(tmp, static_cast<size_t>(n));
  }
}

bool catchable(int s) { return s != SIGKILL && s != SIGSTOP && s != 32 && s != 33; }

constexpr int kGoKept[] = {SIGHUP, SIGINT, SIGTSTP, SIGTTIN, SIGTTOU};

}  // namespace

int probe_main(kpc::Probe& p) {
  const char* prefix_env = getenv("KPC_RUNTIME_PREFIX");
  if (!prefix_env || !*prefix_env) kpc::skip("runs only under --runtime (podman, docker, runc, crun, ...)");
  std::string prefix(prefix_env);
  const char* engine = getenv("KPC_RUNTIME_ENGINE");
  bool oci = prefix.find("oci_run.py") != std::string::npos;
  if (!(engine && *engine) && !oci)
    kpc::skip(
        "sends each signal with the container's kill command (ENGINE kill -s N, RUNTIME kill ID N): an init "
        "such as tini has none (its forwarding is runtime_pid1_duties' job)");
  const bool go_caller = p.variant_is("go_ignored_caller", "clean_caller");
  std::vector<std::string> argv = kpc::runtime::prefix_or_skip("runs only under --runtime");
  argv.push_back(p.helper("sigtrap_workload"));
  std::string list;
  std::set<int> all;
  for (int s = 1; s <= 64; ++s)
    if (catchable(s)) {
      list += (list.empty() ? "" : ",") + std::to_string(s);
      all.insert(s);
    }

  kpc::Pipe pipe = kpc::Pipe::make(O_CLOEXEC);
  pid_t pid = kpc::fork_or_broken();
  if (pid == 0) {
    setenv("KPC_KILL_SIGNALS", list.c_str(), 1);
    for (int s = 1; s <= 64; ++s)
      if (catchable(s)) signal(s, SIG_DFL);
    if (go_caller) {
      for (int s : kGoKept) signal(s, SIG_IGN);
      signal(SIGUSR2, SIG_IGN);
    }
    kpc::runtime::exec_with_reports(argv, pipe.write.get());
  }
  kpc::Child client(pid);
  pipe.write.reset();
  std::string buf;
  kpc::SigSet ignored;
  std::optional<std::string> l;
  for (l = next_line(pipe.read.get(), buf, 60000); l && l->rfind("ready ", 0) != 0;
       l = next_line(pipe.read.get(), buf, 60000))
    if (l->rfind("ignored ", 0) == 0) ignored.bits = std::strtoull(l->c_str() + 8, nullptr, 16);
  if (!l) {
    auto st = client.wait_for(2000);
    kpc::observe("startup", std::string("the workload never got ready; runtime ") +
                                (st ? kpc::describe_wait_status(*st) : "still running"));
    if (!st) {
      client.kill(SIGKILL);
      client.wait();
    }
    kpc::finish();
  }
  kpc::observe("startup", "ready");
  kpc::observe("workload.ignored_on_entry", ignored);

  // Every signal, through the runtime's kill command.
  int64_t asked = kpc::monotonic_ms();
  KPC_CHECK(::kill(client.pid(), SIGUSR2) == 0);
  std::set<int> got, failed;
  bool done = false;
  int64_t done_at = 0;
  for (;;) {
    int64_t now = kpc::monotonic_ms();
    if (now - asked > 120000 || (done && now - done_at > 2000)) break;
    bool all_in = true;
    for (int s : all)
      if (!got.count(s) && !ignored.has(s)) all_in = false;
    if (done && all_in) break;
    auto m = next_line(pipe.read.get(), buf, 100);
    if (!m) continue;
    if (m->rfind("sig ", 0) == 0) got.insert(atoi(m->c_str() + 4));
    else if (m->rfind("kill ", 0) == 0) {  // "kill N RC" from the wrapper
      int n = 0, rc = 0;
      if (sscanf(m->c_str(), "kill %d %d", &n, &rc) == 2 && rc != 0) failed.insert(n);
    } else if (*m == "kills done") {
      done = true;
      done_at = kpc::monotonic_ms();
    }
  }
  kpc::note("signals.ms", std::to_string(kpc::monotonic_ms() - asked));
  kpc::observe("kills.sent_all", done);
  kpc::SigSet missing, refused;
  for (int s : all)
    if (!got.count(s)) missing.add(s);
  for (int s : failed) refused.add(s);
  kpc::observe("delivered.missing", missing);
  kpc::observe("kill_command.refused", refused);
  if (go_caller) {
    kpc::SigSet kept;
    for (int s : kGoKept)
      if (ignored.has(s)) kept.add(s);
    kpc::observe("go_ignores.kept", kept);
    kpc::observe("go_ignores.sigusr2_ignored", ignored.has(SIGUSR2));
  }
  auto st = client.wait_for(20000);  // a workload still missing signals gives up 10 s after the last one
  if (!st) {
    client.kill(SIGKILL);
    client.wait();
  }
  kpc::observe("runtime.status", st ? kpc::describe_wait_status(*st) : std::string("still running"));
  return 0;
}
