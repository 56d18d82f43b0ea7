// autoreap_orphan_daemon: like orphan_daemon, but the grandchild is created
// with CLONE_AUTOREAP (Linux 7.1): once its creator exits it belongs to the
// shim (a subreaper on the host flavor), which must kill it -- and its death
// sends the shim no SIGCHLD (autoreap_orphan_under_subreaper). A shim that
// waits for SIGCHLD before reaping again never ends the run. Skips where
// clone3 does not know the flag.
#include <linux/sched.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

#include "kpc/pidfd.h"
#include "kpc/probe.h"
#include "kpc/raii.h"
#include "kpc/record.h"

int probe_main(kpc::Probe&) {
  kpc::Pipe up = kpc::Pipe::make();
  pid_t child = fork();
  if (child == 0) {
    clone_args args{};  // exit_signal 0, as CLONE_AUTOREAP requires
    args.flags = kpc::pidfd::kCloneAutoreap;
    long gc = syscall(kpc::pidfd::kSysClone3, &args, sizeof args);
    if (gc == 0) {
      for (;;) pause();
    }
    kpc::send_int(up.write.get(), gc > 0 ? static_cast<int>(gc) : -errno);
    _exit(0);
  }
  auto gc = kpc::recv_int(up.read.get(), 5000);
  int status = 0;
  waitpid(child, &status, 0);
  if (gc && *gc == -EINVAL) kpc::skip("clone3 does not know CLONE_AUTOREAP: Linux 7.1 or later");
  KPC_CHECK_MSG(gc && *gc > 0, "clone3(CLONE_AUTOREAP) failed");
  kpc::note("grandchild", static_cast<int64_t>(*gc));
  kpc::observe("child.status", kpc::describe_wait_status(status));
  return 0;
}
