// pidfd_get_info_before_and_after_reap: ioctl(PIDFD_GET_INFO) (6.13) on a
// pidfd gives the process's PIDs and credentials while it exists; its exit
// status (PIDFD_INFO_EXIT, 6.15) appears when it exits and stays after the
// reap, when only the exit information is left. (Observed on 6.18: a
// zombie has none yet; it is stored when the task is reaped.)
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "kpc/pidfd.h"
#include "kpc/probe.h"
#include "kpc/proc.h"

namespace {
using namespace kpc::pidfd;
constexpr uint64_t kInfoPid = 1u << 0, kInfoCreds = 1u << 1;

struct Got {
  std::string result;
  Info info{};
};
Got get_info(int pidfd) {
  Got g;
  g.info.mask = kInfoPid | kInfoCreds | kInfoExit;
  g.result = ioctl(pidfd, kGetInfo, &g.info) == 0 ? "ok" : kpc::errno_name(errno);
  return g;
}
// The exit information can come a moment after the process is a zombie
// (pidfd_features saw it missing for a moment): retry for up to 2 s.
Got get_info_with_exit(int pidfd) {
  Got g;
  for (int ms = 0; ms <= 2000; ms += 5) {
    g = get_info(pidfd);
    if (g.result != "ok" || (g.info.mask & kInfoExit)) break;
    usleep(5000);
  }
  return g;
}
}  // namespace

int probe_main(kpc::Probe&) {
  kpc::Pipe go = kpc::Pipe::make(O_CLOEXEC);
  kpc::Child child = kpc::fork_child([&] {
    go.write.reset();
    kpc::recv_byte(go.read.get(), 10000);
    return 3;
  });
  kpc::Fd pidfd = kpc::pidfd::open_or_skip(child.pid());
  // 1. Alive: PIDs and credentials, no exit information.
  Got live = get_info(pidfd.get());
  kpc::observe("alive.get_info", live.result);
  if (live.result == "ok") {
    kpc::observe("alive.has_exit", (live.info.mask & kInfoExit) != 0);
    kpc::observe("alive.pid_is_child", static_cast<pid_t>(live.info.pid) == child.pid());
    kpc::observe("alive.ppid_is_us", static_cast<pid_t>(live.info.ppid) == getpid());
    kpc::observe("alive.ruid_is_ours", live.info.ruid == getuid());
  }
  // 2. Exited, not reaped.
  go.write.reset();
  KPC_CHECK(kpc::wait_for_state(child.pid(), 'Z', 5000) == 'Z');
  if (live.result == "ok") {
    Got z = get_info(pidfd.get());
    kpc::observe("zombie.get_info", z.result);
    if (z.result == "ok") kpc::observe("zombie.has_exit", (z.info.mask & kInfoExit) != 0);
  }
  // 3. Reaped: only the exit information.
  child.wait();
  Got r = get_info_with_exit(pidfd.get());
  kpc::observe("reaped.get_info", r.result);
  if (r.result == "ok") {
    kpc::observe("reaped.exit", (r.info.mask & kInfoExit) ? kpc::describe_wait_status(r.info.exit_code) : "none");
    kpc::observe("reaped.has_creds", (r.info.mask & kInfoCreds) != 0);
  }
  return 0;
}
