// oom_group_kill: when a cgroup with memory.max runs out of memory, the OOM
// killer kills one task -- or, with memory.oom.group = 1, every task of the
// cgroup except those with oom_score_adj -1000. memory.events counts it.
//   variant single: memory.oom.group 0 -- only the allocating task dies
//   variant group:  memory.oom.group 1 -- the whole cgroup but the protected one
// Members: an allocator (touches pages until the 32 MiB limit), a sleeper,
// and a protected sleeper (oom_score_adj -1000). Needs the memory controller
// on cgroup v2 (in kpc's guests; a cgroup v1 hybrid host skips).
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "kpc/cgroup2.h"
#include "kpc/probe.h"

namespace {
bool set_oom_score_adj(int v) {
  kpc::Fd f(KPC_SYS(open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC)));
  std::string t = std::to_string(v);
  return write(f.get(), t.data(), t.size()) == static_cast<ssize_t>(t.size());
}
}  // namespace

int probe_main(kpc::Probe& p) {
  bool group = p.variant_is("group", "single");
  // Lowering oom_score_adj needs CAP_SYS_RESOURCE (in the initial namespace).
  kpc::Child test = kpc::fork_child([] { return set_oom_score_adj(-1000) ? 0 : 1; });
  if (test.wait() != 0) kpc::skip("setting oom_score_adj to -1000 needs CAP_SYS_RESOURCE (EACCES here)");
  auto cg = kpc::cgroup2::Scratch::create("oom");
  std::string why = cg->enable("memory");
  if (!why.empty()) kpc::skip("no cgroup v2 memory controller: " + why);
  cg->make("box");
  KPC_CHECK(cg->write("box/memory.max", "32M").empty());
  cg->write("box/memory.swap.max", "0");  // no swap to escape into (absent without swap accounting)
  if (group) KPC_CHECK(cg->write("box/memory.oom.group", "1").empty());
  // 1. The sleepers, then the allocator, all in the box.
  kpc::Pipe go = kpc::Pipe::make(O_CLOEXEC), ready = kpc::Pipe::make(O_CLOEXEC), start = kpc::Pipe::make(O_CLOEXEC);
  auto sleeper = [&](int adj) {
    return kpc::fork_child([&, adj] {
      go.write.reset();
      if (adj) KPC_CHECK(set_oom_score_adj(adj));
      kpc::send_byte(ready.write.get());
      kpc::recv_byte(go.read.get(), 30000);
    });
  };
  kpc::Child plain = sleeper(0), protected_ = sleeper(-1000);
  KPC_CHECK(kpc::recv_byte(ready.read.get(), 5000) && kpc::recv_byte(ready.read.get(), 5000));
  cg->move(plain.pid(), "box");
  cg->move(protected_.pid(), "box");
  kpc::Child allocator = kpc::fork_child([&] {
    start.write.reset();
    kpc::recv_byte(start.read.get(), 5000);  // moved into the box first
    const long page = sysconf(_SC_PAGESIZE);
    for (;;) {
      char* m = static_cast<char*>(mmap(nullptr, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
      if (m == MAP_FAILED) _exit(3);
      for (long i = 0; i < (1 << 20); i += page) m[i] = 1;
    }
  });
  cg->move(allocator.pid(), "box");
  kpc::send_byte(start.write.get());
  kpc::observe("allocator.status", kpc::describe_wait_status(allocator.wait()));
  // 2. Who else died, and what memory.events counted.
  // A group kill's SIGKILLs were sent during the OOM; give them a second to land.
  auto fate = [](kpc::Child& c) {
    auto st = c.wait_for(1000);
    return st ? kpc::describe_wait_status(*st) : std::string("alive");
  };
  kpc::observe("sleeper.fate", fate(plain));
  kpc::observe("protected_sleeper.fate", fate(protected_));
  kpc::observe("memory_events.oom_kill_at_least_1", cg->key("box/memory.events", "oom_kill").value_or(0) >= 1);
  auto gk = cg->key("box/memory.events", "oom_group_kill");
  kpc::observe("memory_events.oom_group_kill", gk ? std::to_string(*gk) : std::string("missing"));
  go.write.reset();  // releases the survivors
  return 0;
}
