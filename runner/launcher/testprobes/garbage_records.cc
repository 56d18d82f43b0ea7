// garbage_records: writes a line that is not a record onto the observation
// channel. The launcher must pass it on as a protocol error (the evaluator
// turns that into verdict error), never drop it.
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kpc/probe.h"

int probe_main(kpc::Probe&) {
  const char* fd = getenv("KPC_OBS_FD");
  if (fd != nullptr) {
    const char line[] = "this is not json\n";
    if (write(atoi(fd), line, strlen(line)) < 0) kpc::broken("write to the observation fd failed");
  }
  kpc::observe("after_garbage", true);
  return 0;
}
