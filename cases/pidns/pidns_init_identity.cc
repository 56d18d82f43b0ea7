// pidns_init_identity: the first process in a new PID namespace is PID 1;
// its parent lives outside, so getppid() is 0; its children see it as their
// parent (1); NSpid in /proc/PID/status gains one level.
#include <unistd.h>

#include "kpc/probe.h"
#include "kpc/proc.h"
#include "kpc/state.h"

namespace {
size_t nspid_levels() {
  auto st = kpc::read_self_status();
  KPC_CHECK(st.has_value());
  return st->nspid.size();
}
}  // namespace

int probe_main(kpc::Probe&) {
  const size_t outer_levels = nspid_levels();
  // 1. clone(CLONE_NEWPID): the child is the namespace's init.
  kpc::Child init = kpc::fork_child_in_new_pidns([&] {
    kpc::observe("init.pid", static_cast<int64_t>(getpid()));
    kpc::observe("init.ppid", static_cast<int64_t>(getppid()));
    // /proc is still the outer one: it shows the init's outer PID and the
    // NSpid chain down to this namespace.
    kpc::observe("init.nspid_levels_added", static_cast<int64_t>(nspid_levels() - outer_levels));
    // 2. A child of the init sees PID 1 as its parent.
    kpc::Child member = kpc::fork_child([] {
      kpc::observe("member.pid", static_cast<int64_t>(getpid()));
      kpc::observe("member.ppid", static_cast<int64_t>(getppid()));
    });
    member.wait();
  });
  kpc::observe("init.status", kpc::describe_wait_status(init.wait()));
  return 0;
}
