// runtime_closes_leaked_fds: does a runtime pass descriptors its caller
// leaked to it on to the workload? The probe plays a careless engine: it
// starts `RUNTIME exec_report` holding, without close-on-exec, a
// descriptor of a directory (the class of runc's CVE-2024-21626, where a
// leaked handle to the host filesystem let the container escape through
// /proc/self/fd) at 7 and a pipe's write end at 8. The workload lists the
// descriptors it got (besides stdio and kpc's observation fd 3).
// Runs only under --runtime ($KPC_RUNTIME_PREFIX).
#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "kpc/probe.h"
#include "kpc/runtime.h"

int probe_main(kpc::Probe& p) {
  std::vector<std::string> argv =
      kpc::runtime::prefix_or_skip("runs only under --runtime (it plays the engine that starts the runtime)");
  // 1. The leaks: a directory handle and a pipe end, no close-on-exec.
  int dir = KPC_SYS(open(".", O_PATH | O_DIRECTORY));
  if (dir != 7) {
    KPC_SYS(dup2(dir, 7));
    close(dir);
  }
  kpc::Pipe pipe = kpc::Pipe::make(O_CLOEXEC);
  KPC_SYS(dup2(pipe.write.get(), 8));  // dup2: no close-on-exec on 8
  // 2. The runtime and its workload.
  for (const std::string& a : {p.helper("exec_report"), std::string("--prefix"), std::string("workload"),
                               std::string("--record"), std::string("fds")})
    argv.push_back(a);
  kpc::Child runtime = kpc::fork_child([&] { kpc::exec_or_broken(argv); });
  close(7);
  close(8);
  kpc::observe("runtime.status", kpc::describe_wait_status(runtime.wait()));
  return 0;
}
