// sleep_forever: an ordinary interruptible sleep (state S) that never ends:
// not a hang, but the deadline must fire and the tree must be killed.
#include <unistd.h>

#include "kpc/probe.h"

int probe_main(kpc::Probe&) {
  for (;;) pause();
}
