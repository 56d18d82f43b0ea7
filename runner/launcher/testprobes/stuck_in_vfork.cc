// stuck_in_vfork: a task the hang detector must flag. The parent vforks and
// the child never execs or exits, so the parent sleeps in D state
// (wait_for_vfork_done, TASK_KILLABLE) forever. SIGKILL frees it, so the
// launcher's recovery must succeed.
#include <unistd.h>

#include "kpc/probe.h"
#include "kpc/record.h"

int probe_main(kpc::Probe&) {
  kpc::mark("vfork");
  pid_t pid = vfork();
  if (pid == 0) {
    for (;;) pause();  // never returns: the parent stays in vfork
  }
  kpc::broken("vfork returned in the parent: the child was not supposed to let go");
}
