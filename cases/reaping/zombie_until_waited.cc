// zombie_until_waited: an exited child stays a zombie (state Z) until its
// parent waits for it; the wait gives its status and then the PID is gone.
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "kpc/probe.h"
#include "kpc/proc.h"

namespace {

// `--exit N` (a lab's per-student parameter, kpc lab --seed): the child's
// exit status instead of 7; the observations' keys stay the same.
int exit_code(const kpc::Probe& p) {
  if (p.args.empty()) return 7;
  if (p.args.size() != 2 || p.args[0] != "--exit") kpc::broken("usage: [--exit N]");
  int n = std::atoi(p.args[1].c_str());
  if (n < 0 || n > 255 || std::to_string(n) != p.args[1]) kpc::broken("--exit: not 0..255: " + p.args[1]);
  return n;
}

}  // namespace

int probe_main(kpc::Probe& p) {
  const int code = exit_code(p);
  kpc::Child child = kpc::fork_child([code] { return code; });
  kpc::observe("before_wait.state", std::string(1, kpc::wait_for_state(child.pid(), 'Z')));
  kpc::observe("before_wait.kill0", kill(child.pid(), 0) == 0 ? "ok" : kpc::errno_name(errno));
  pid_t pid = child.pid();
  kpc::observe("status", kpc::describe_wait_status(child.wait()));
  kpc::observe("after_wait.kill0", kill(pid, 0) == 0 ? "ok" : kpc::errno_name(errno));
  return 0;
}
