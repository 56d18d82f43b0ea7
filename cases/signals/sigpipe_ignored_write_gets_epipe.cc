// sigpipe_ignored_write_gets_epipe: write(2) to a pipe whose read end is
// closed everywhere raises SIGPIPE in the writer; a writer that ignores
// SIGPIPE gets EPIPE from write() instead and lives on (pipe(7)). A shell
// pipeline's `producer | head` relies on the first; a server that set
// SIGPIPE to SIG_IGN (and every child it starts, see sig_ign_survives_execve)
// relies on the second.
//   variant default:  SIGPIPE at its default disposition: the writer dies
//   variant ignored:  SIGPIPE ignored: write() fails with EPIPE
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include "kpc/probe.h"
#include "kpc/state.h"

int probe_main(kpc::Probe& p) {
  bool ignored = p.variant_is("ignored", "default");
  // 1. A pipe whose read end nobody holds any more.
  kpc::Pipe pipe = kpc::Pipe::make(O_CLOEXEC);
  pipe.read.reset();
  // 2. A child with SIGPIPE at the variant's disposition writes one byte.
  kpc::Child writer = kpc::fork_child([&] {
    if (ignored) signal(SIGPIPE, SIG_IGN);
    else signal(SIGPIPE, SIG_DFL);
    kpc::record_state("writer", "disp:SIGPIPE");
    KPC_OBSERVE_CALL("writer.write", write(pipe.write.get(), "x", 1));
  });
  // 3. How the writer ended: killed by SIGPIPE, or exited after its EPIPE.
  kpc::observe("writer.status", kpc::describe_wait_status(writer.wait()));
  return 0;
}
