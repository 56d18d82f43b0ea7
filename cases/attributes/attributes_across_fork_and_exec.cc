// attributes_across_fork_and_exec: the process attributes besides signals
// and credentials that a new process gets -- RLIMIT_NOFILE, umask, nice,
// personality (ADDR_NO_RANDOMIZE), scheduling policy (SCHED_BATCH) and CPU
// affinity. fork(2) and execve(2) both keep all of them: whatever a
// launcher changed leaks into everything it starts (Go raising NOFILE's
// soft limit, golang/go#46279). A process changes them, forks; the fork
// child records some directly, then execs attrs_report, which records all
// of them and execs itself once more.
#include <sched.h>
#include <sys/personality.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "kpc/probe.h"

int probe_main(kpc::Probe& p) {
  kpc::Child c = kpc::fork_child([&] {
    // 1. The launcher's changes.
    rlimit rl{};
    KPC_SYS(getrlimit(RLIMIT_NOFILE, &rl));
    rl.rlim_cur = 100;
    KPC_SYS(setrlimit(RLIMIT_NOFILE, &rl));
    umask(027);
    KPC_SYS(setpriority(PRIO_PROCESS, 0, 5));
    KPC_SYS(personality(PER_LINUX | ADDR_NO_RANDOMIZE));
    sched_param sp{};
    KPC_SYS(sched_setscheduler(0, SCHED_BATCH, &sp));
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(0, &one);
    KPC_SYS(sched_setaffinity(0, sizeof one, &one));
    // 2. A fork child, then its exec and a second exec.
    kpc::Child forked = kpc::fork_child([&] {
      rlimit got{};
      getrlimit(RLIMIT_NOFILE, &got);
      kpc::observe("fork.nofile_soft", static_cast<int64_t>(got.rlim_cur));
      mode_t m = umask(0);
      kpc::observe("fork.umask_is_027", m == 027);
      errno = 0;
      kpc::observe("fork.nice", static_cast<int64_t>(getpriority(PRIO_PROCESS, 0)));
      kpc::observe("fork.sched_batch", sched_getscheduler(0) == SCHED_BATCH);
      umask(m);
      std::string h = p.helper("attrs_report");
      kpc::exec_or_broken({h, "--prefix", "exec", "--then-exec", h, "--prefix", "exec2"});
    });
    kpc::observe("forked.status", kpc::describe_wait_status(forked.wait()));
  });
  kpc::observe("status", kpc::describe_wait_status(c.wait()));
  return 0;
}
