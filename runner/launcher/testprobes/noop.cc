// noop: records one observation and ends. The launcher's per-run overhead
// (bench/) and its happy path (runner/tests/test_launcher.py).
#include "kpc/probe.h"

int probe_main(kpc::Probe&) {
  kpc::observe("noop", true);
  return 0;
}
