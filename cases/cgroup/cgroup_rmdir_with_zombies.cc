// cgroup_rmdir_with_zombies: a cgroup whose only processes have exited but
// are not yet reaped (zombies): does it count as populated, does it still
// list them in cgroup.procs, can it be removed? A runtime that removes a
// container's cgroup before reaping its processes depends on the answer.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <string>

#include "kpc/cgroup2.h"
#include "kpc/probe.h"
#include "kpc/proc.h"

int probe_main(kpc::Probe&) {
  auto cg = kpc::cgroup2::Scratch::create("zombies");
  cg->make("z");
  kpc::Pipe go = kpc::Pipe::make(O_CLOEXEC);
  kpc::Child member = kpc::fork_child([&] { go.wait_for_go(); });
  cg->move(member.pid(), "z");
  kpc::observe("alive.populated", cg->key("z/cgroup.events", "populated").value_or(-1));
  // 1. The member exits; we do not reap it.
  kpc::send_byte(go.write.get());
  KPC_CHECK(kpc::wait_for_state(member.pid(), 'Z', 5000) == 'Z');
  kpc::observe("zombie.populated", cg->wait_key("z/cgroup.events", "populated", 0, 2000).value_or(-1));
  kpc::observe("zombie.listed_in_procs", !cg->read("z/cgroup.procs").value_or("").empty());
  // 2. Remove the cgroup with the zombie still unreaped.
  KPC_OBSERVE_CALL("zombie.rmdir", rmdir(cg->path_of("z").c_str()));
  kpc::observe("member.status", kpc::describe_wait_status(member.wait()));
  return 0;
}
