// cgroup_kill_tree: writing "1" to cgroup.kill (5.14) SIGKILLs every process
// in the cgroup and in all cgroups below it -- including one that blocks
// and ignores every signal it can -- and the cgroup reports itself empty
// (cgroup.events populated 0). No PID is looked up, so no race with forks.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <vector>

#include "kpc/cgroup2.h"
#include "kpc/probe.h"

int probe_main(kpc::Probe&) {
  auto cg = kpc::cgroup2::Scratch::create("kill");
  cg->make("sub");
  cg->make("sub/deeper");
  // 1. Three members, one per level; the deepest blocks and ignores all it can.
  kpc::Pipe go = kpc::Pipe::make(O_CLOEXEC);
  std::vector<kpc::Child> members;
  for (int i = 0; i < 3; ++i) {
    members.push_back(kpc::fork_child([&, i] {
      go.write.reset();
      if (i == 2) {
        sigset_t all;
        sigfillset(&all);
        sigprocmask(SIG_BLOCK, &all, nullptr);
        for (int s = 1; s < 32; ++s) signal(s, SIG_IGN);
      }
      kpc::recv_byte(go.read.get(), 20000);
    }));
  }
  const char* where[] = {"", "sub", "sub/deeper"};
  for (int i = 0; i < 3; ++i) cg->move(members[i].pid(), where[i]);
  kpc::observe("populated_before", cg->key("cgroup.events", "populated").value_or(-1));
  // 2. Kill the tree.
  std::string r = cg->write("cgroup.kill", "1");
  kpc::observe("cgroup_kill", r.empty() ? std::string("ok") : r);
  if (!r.empty()) return 0;  // (the scratch cgroup is emptied on the way out)
  const char* names[] = {"member_top", "member_sub", "member_deeper_ignoring_all"};
  for (int i = 0; i < 3; ++i)
    kpc::observe(std::string(names[i]) + ".status", kpc::describe_wait_status(members[i].wait()));
  kpc::observe("populated_after", cg->wait_key("cgroup.events", "populated", 0, 2000).value_or(-1));
  return 0;
}
