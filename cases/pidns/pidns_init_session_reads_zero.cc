// pidns_init_session_reads_zero: a new PID namespace's init still belongs
// to its creator's session and process group, which are outside the
// namespace: getsid(0) and getpgid(0) read 0 there. After setsid() the init
// leads a session and group of its own: both read 1.
#include <signal.h>
#include <unistd.h>

#include "kpc/probe.h"

int probe_main(kpc::Probe&) {
  kpc::Child init = kpc::fork_child_in_new_pidns([] {
    kpc::observe("init.getsid", static_cast<int64_t>(getsid(0)));
    kpc::observe("init.getpgid", static_cast<int64_t>(getpgid(0)));
    // A member forked now inherits the outside group and session too.
    kpc::Child m = kpc::fork_child([] {
      kpc::observe("member.getpgid", static_cast<int64_t>(getpgid(0)));
      kpc::observe("member.getsid", static_cast<int64_t>(getsid(0)));
    });
    m.wait();
    KPC_OBSERVE_CALL("init.setsid", setsid());
    kpc::observe("init.after_setsid.getsid", static_cast<int64_t>(getsid(0)));
    kpc::observe("init.after_setsid.getpgid", static_cast<int64_t>(getpgid(0)));
  });
  kpc::observe("init.status", kpc::describe_wait_status(init.wait()));
  return 0;
}
