// orphan_daemon: leaves a double-forked, setsid()'d grandchild behind and
// exits. Nothing of a run may outlive it: the test checks the grandchild
// (its PID is a note) is gone when the launcher reports.
#include <sys/wait.h>
#include <unistd.h>

#include "kpc/probe.h"
#include "kpc/raii.h"
#include "kpc/record.h"

int probe_main(kpc::Probe&) {
  pid_t child = fork();
  if (child == 0) {
    setsid();
    pid_t grandchild = fork();
    if (grandchild == 0) {
      for (;;) pause();
    }
    kpc::note("grandchild", static_cast<int64_t>(grandchild));
    _exit(0);
  }
  int status = 0;
  waitpid(child, &status, 0);
  kpc::observe("child.status", kpc::describe_wait_status(status));
  return 0;
}
