// pidns_teardown_after_init_exit: when the init of a PID namespace exits,
// the kernel SIGKILLs every other member (even one that ignores and blocks
// everything it can), and the namespace accepts no new process: setns()
// into it still works, but fork() there fails with ENOMEM.
#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <string>

#include "kpc/probe.h"
#include "kpc/proc.h"

int probe_main(kpc::Probe&) {
  kpc::Pipe report = kpc::Pipe::make(O_CLOEXEC), go = kpc::Pipe::make(O_CLOEXEC);

  kpc::Child init = kpc::fork_child_in_new_pidns([&] {
    // 1. Two members: a plain sleeper and one that ignores/blocks all it can.
    for (int hardened = 0; hardened < 2; ++hardened) {
      pid_t m = kpc::fork_or_broken();
      if (m == 0) {
        if (hardened) {
          for (int s = 1; s < 32; ++s) signal(s, SIG_IGN);
          sigset_t all;
          sigfillset(&all);
          sigprocmask(SIG_SETMASK, &all, nullptr);
        }
        pid_t me = kpc::pid_in_mounted_proc();
        if (write(report.write.get(), &me, sizeof me) != sizeof me) _exit(1);
        for (;;) pause();
      }
    }
    // 2. Wait for the word, then exit without touching the members.
    kpc::recv_byte(go.read.get(), 10000);
    _exit(0);
  });

  pid_t members[2];
  for (pid_t& m : members) KPC_CHECK(read(report.read.get(), &m, sizeof m) == sizeof m);
  // Hold the namespace open past its init's death.
  kpc::Fd nsfd(open(("/proc/" + std::to_string(init.pid()) + "/ns/pid").c_str(), O_RDONLY | O_CLOEXEC));
  KPC_CHECK(nsfd);

  // 3. init exits; its wait status, and the members are gone once it is reaped.
  kpc::send_byte(go.write.get());
  kpc::observe("init.status", kpc::describe_wait_status(init.wait()));
  kpc::observe("member.plain_gone", kpc::pid_gone(members[0]));
  kpc::observe("member.hardened_gone", kpc::pid_gone(members[1]));

  // 4. setns into the dead namespace, then fork there.
  kpc::observe_setns_then_fork("dead_ns", nsfd.get());
  return 0;
}
