// zombie_until_waited: an exited child stays a zombie (state Z) until its
// parent waits for it; the wait gives its status and then the PID is gone.
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kpc/probe.h"
#include "kpc/proc.h"

int probe_main(kpc::Probe&) {
  kpc::Child child = kpc::fork_child([] { return 7; });
  kpc::observe("before_wait.state", std::string(1, kpc::wait_for_state(child.pid(), 'Z')));
  kpc::observe("before_wait.kill0", kill(child.pid(), 0) == 0 ? "ok" : kpc::errno_name(errno));
  pid_t pid = child.pid();
  kpc::observe("status", kpc::describe_wait_status(child.wait()));
  kpc::observe("after_wait.kill0", kill(pid, 0) == 0 ? "ok" : kpc::errno_name(errno));
  return 0;
}
