// rlimit_cpu_inherited_by_fork: RLIMIT_CPU set by a parent applies to a
// fork child's own CPU time: at the soft limit (1 s) it gets SIGXCPU, which
// it may handle; at the hard limit (2 s) SIGKILL.
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kpc/probe.h"

namespace {
int g_fd = -1;
void on_xcpu(int) {
  char c = 'x';
  (void)!write(g_fd, &c, 1);
}
}  // namespace

int probe_main(kpc::Probe&) {
  kpc::Pipe xcpu = kpc::Pipe::make(O_CLOEXEC);
  kpc::Child parent = kpc::fork_child([&] {
    rlimit rl{1, 2};
    KPC_SYS(setrlimit(RLIMIT_CPU, &rl));
    kpc::Child burner = kpc::fork_child([&] {
      g_fd = xcpu.write.get();
      struct sigaction sa {};
      sa.sa_handler = on_xcpu;
      sa.sa_flags = SA_RESTART;
      KPC_SYS(sigaction(SIGXCPU, &sa, nullptr));
      for (volatile unsigned long i = 0;; ++i) {}
    });
    kpc::observe("burner.status", kpc::describe_wait_status(burner.wait()));
  });
  kpc::observe("parent.status", kpc::describe_wait_status(parent.wait()));
  xcpu.write.reset();
  int n = 0;
  while (kpc::recv_byte(xcpu.read.get(), 100)) ++n;
  kpc::observe("burner.sigxcpu_handled", n);
  return 0;
}
