// noop: records one observation and where it ran, and ends. The launcher's
// per-run overhead (bench/) and its happy path (runner/tests/test_launcher.py).
#include <unistd.h>

#include <climits>

#include "kpc/probe.h"

int probe_main(kpc::Probe&) {
  kpc::observe("noop", true);
  char cwd[PATH_MAX];
  if (getcwd(cwd, sizeof cwd)) kpc::observe("cwd", cwd);
  return 0;
}
