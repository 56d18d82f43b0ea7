// rusage_children_counts_waited_only: getrusage(RUSAGE_CHILDREN) adds a
// child's resource use when the child is waited for -- not when it exits,
// and never for a child nobody waits for (SIGCHLD ignored: reaped by the
// kernel). Measured with minor page faults, which a child can make in a
// known number: it touches every page of 16 MiB.
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kpc/probe.h"
#include "kpc/proc.h"

namespace {
constexpr long kPages = 4096;  // 16 MiB

void fault_pages() {
  long page = sysconf(_SC_PAGESIZE);
  char* mem =
      static_cast<char*>(mmap(nullptr, kPages * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  if (mem == MAP_FAILED) _exit(1);
  // No transparent huge pages: one fault per 4 KiB page, not per 2 MiB
  // (Debian's kernels under QEMU mapped the 16 MiB with a handful of faults).
  madvise(mem, kPages * page, MADV_NOHUGEPAGE);
  for (long i = 0; i < kPages; ++i) mem[i * page] = 1;
  _exit(0);
}

long children_minflt() {
  rusage ru{};
  KPC_SYS(getrusage(RUSAGE_CHILDREN, &ru));
  return ru.ru_minflt;
}
}  // namespace

int probe_main(kpc::Probe&) {
  // 1. A child faults its pages and exits; it is a zombie, not waited for.
  long base = children_minflt();
  kpc::Child c = kpc::fork_child([] { fault_pages(); });
  KPC_CHECK(kpc::wait_for_state(c.pid(), 'Z', 10000) == 'Z');
  kpc::note("minflt_before_wait", children_minflt() - base);
  kpc::observe("zombie.counted", children_minflt() - base >= kPages);
  // 2. Waited for: counted.
  c.wait();
  kpc::note("minflt_after_wait", children_minflt() - base);
  kpc::observe("waited.counted", children_minflt() - base >= kPages);
  // 3. SIGCHLD ignored: the kernel reaps it; nothing is added.
  long before = children_minflt();
  {
    kpc::ScopedSigaction ign(SIGCHLD, SIG_IGN);
    pid_t pid = kpc::fork_or_broken();
    if (pid == 0) fault_pages();
    int st;
    KPC_CHECK(waitpid(pid, &st, 0) < 0 && errno == ECHILD);  // returns once it is gone
  }
  kpc::observe("autoreaped.counted", children_minflt() - before >= kPages);
  return 0;
}
