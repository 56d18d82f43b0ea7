// pidfd_send_signal_zombie_and_unprivileged: pidfd_send_signal to a zombie
// succeeds (the process still exists; nothing happens), and a caller
// without permission over the target -- another uid, no CAP_KILL -- gets
// EPERM, as kill(2) would.
#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kpc/pidfd.h"
#include "kpc/probe.h"
#include "kpc/proc.h"

namespace {
using namespace kpc::pidfd;
constexpr uid_t kOther = 65534;
}  // namespace

int probe_main(kpc::Probe& p) {
  // 1. A zombie.
  kpc::Child dead = kpc::fork_child([] { return 4; });
  kpc::Fd dead_fd = kpc::pidfd::open_or_skip(dead.pid());
  KPC_CHECK(kpc::wait_for_state(dead.pid(), 'Z', 5000) == 'Z');
  kpc::observe("zombie.send_sigkill", result(syscall(kSysSendSignal, dead_fd.get(), SIGKILL, nullptr, 0)));
  kpc::observe("zombie.status", kpc::describe_wait_status(dead.wait()));
  // 2. A live target of ours, and a sender that is somebody else.
  kpc::Pipe go = kpc::Pipe::make(O_CLOEXEC);
  kpc::Child target = kpc::fork_child([&] { go.wait_for_go(); });
  kpc::Fd target_fd(KPC_SYS(static_cast<int>(syscall(kSysOpen, target.pid(), 0))));
  // Another uid to become: only root has one (and not in the userns
  // flavor, whose user namespace maps a single uid).
  if (geteuid() == 0 && p.flavor() != "userns") {
    kpc::Child sender = kpc::fork_child([&] {
      KPC_SYS(setresgid(kOther, kOther, kOther));
      KPC_SYS(setresuid(kOther, kOther, kOther));  // drops every capability
      kpc::observe("unprivileged.send_signal_0", result(syscall(kSysSendSignal, target_fd.get(), 0, nullptr, 0)));
      kpc::observe("unprivileged.send_sigterm", result(syscall(kSysSendSignal, target_fd.get(), SIGTERM, nullptr, 0)));
    });
    sender.wait();
  }
  kpc::send_byte(go.write.get());
  kpc::observe("target.status", kpc::describe_wait_status(target.wait()));
  return 0;
}
