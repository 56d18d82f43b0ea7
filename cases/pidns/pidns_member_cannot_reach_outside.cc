// pidns_member_cannot_reach_outside: a process inside a PID namespace
// cannot name a process outside it. Given the outsider's PID (as the
// outside numbers it), kill(), getpgid() and pidfd_open() inside look that
// number up in their own namespace, where nobody has it: ESRCH.
#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kpc/pidfd.h"
#include "kpc/probe.h"

int probe_main(kpc::Probe&) {
  // 1. The outsider: a child of the probe that waits.
  kpc::Pipe go = kpc::Pipe::make(O_CLOEXEC);
  kpc::Child outsider = kpc::fork_child([&] { go.wait_for_go(); });
  pid_t target = outsider.pid();
  // The namespace below will hold PIDs 1 and 2 only: the number must not
  // be one of them (in the pidns flavor the probe's own PIDs are small).
  KPC_CHECK_MSG(target > 2, "the outsider's PID " + std::to_string(target) + " would also exist inside");
  kpc::Child init = kpc::fork_child_in_new_pidns([&] {
    kpc::Child member = kpc::fork_child([&] {
      // 2. Every way of naming the outsider fails.
      KPC_OBSERVE_CALL("member.kill", kill(target, 0));
      KPC_OBSERVE_CALL("member.getpgid", getpgid(target));
      KPC_OBSERVE_CALL("member.pidfd_open", syscall(kpc::pidfd::kSysOpen, target, 0));
    });
    member.wait();
    KPC_OBSERVE_CALL("init.kill", kill(target, 0));
  });
  kpc::observe("init.status", kpc::describe_wait_status(init.wait()));
  // 3. Outside, the same number works.
  KPC_OBSERVE_CALL("outside.kill", kill(target, 0));
  kpc::send_byte(go.write.get());
  return 0;
}
