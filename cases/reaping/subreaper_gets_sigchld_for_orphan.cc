// subreaper_gets_sigchld_for_orphan: prctl(2) promises a child subreaper two
// things about an orphan it adopts: "it is the subreaper process that will
// receive a SIGCHLD signal and will be able to wait(2) on the process to
// discover its termination status". The positive control for
// autoreap_orphan_under_subreaper (where a CLONE_AUTOREAP orphan sends none).
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kpc/probe.h"
#include "kpc/proc.h"
#include "kpc/siginfo.h"

int probe_main(kpc::Probe&) {
  // 1. Become a subreaper; block SIGCHLD so each one can be taken with its siginfo.
  KPC_SYS(prctl(PR_SET_CHILD_SUBREAPER, 1));
  kpc::ScopedSigmask block(SIG_BLOCK, kpc::SigSet::of({SIGCHLD}));
  kpc::Pipe go = kpc::Pipe::make(O_CLOEXEC);
  kpc::Pipe pid_pipe = kpc::Pipe::make(O_CLOEXEC);

  // 2. A middle process starts the orphan-to-be and exits at once.
  kpc::Child middle = kpc::fork_child([&] {
    pid_t orphan = kpc::fork_or_broken();
    if (orphan == 0) {
      go.write.reset();
      kpc::recv_byte(go.read.get(), 10000);  // exits only when told, after the adoption
      _exit(42);
    }
    kpc::send_int(pid_pipe.write.get(), orphan);
    _exit(0);
  });
  auto orphan_pid = kpc::recv_int(pid_pipe.read.get(), 5000);
  KPC_CHECK_MSG(orphan_pid.has_value(), "the middle process never said its child's pid");
  kpc::observe("middle.status", kpc::describe_wait_status(middle.wait()));
  kpc::Child orphan(*orphan_pid);
  // The middle's own SIGCHLD: taken, so the next one is the orphan's.
  auto mid = kpc::take_signal(SIGCHLD, 5000);
  kpc::observe("middle.sigchld", mid ? kpc::describe_child_siginfo(*mid) : "none");

  // 3. The orphan was reparented during the middle's exit, before the
  //    middle became a zombie: its parent is us now.
  auto st = kpc::read_stat(orphan.pid());
  KPC_CHECK(st.has_value());
  kpc::observe("orphan.parent_is_subreaper", st->ppid == getpid());

  // 4. The orphan exits: SIGCHLD comes to us, naming it, with its status.
  go.read.reset();
  kpc::send_byte(go.write.get());
  auto si = kpc::take_signal(SIGCHLD, 5000);
  kpc::observe("orphan_exit.sigchld", si ? kpc::describe_child_siginfo(*si) : "none");
  kpc::observe("orphan_exit.sigchld_names_orphan", si.has_value() && si->si_pid == orphan.pid());
  // 5. ... and wait() collects it.
  kpc::observe("orphan.wait_status", kpc::describe_wait_status(orphan.wait()));
  return 0;
}
