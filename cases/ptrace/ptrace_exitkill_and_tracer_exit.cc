// ptrace_exitkill_and_tracer_exit: what a tracer's exit does to its tracee.
//   variant exitkill:  PTRACE_O_EXITKILL -- the tracee is SIGKILLed
//   variant detach:    no option -- the tracee is detached and runs on
//   variant sigkill_no_stop: the tracer sends the tracee SIGKILL: no
//                      signal-delivery-stop is reported, the tracee just dies
// The tracer T is a child of the probe; the tracee C is T's child (C waits
// on a pipe from the probe, so the probe can let it finish).
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kpc/probe.h"
#include "kpc/proc.h"

int probe_main(kpc::Probe& p) {
  // What the tracer does: seize with PTRACE_O_EXITKILL or without, and exit
  // with its tracee traced, or first SIGKILL it.
  bool exitkill = false, sigkill_first = false;
  auto tracer_does = [&](bool with_exitkill, bool sigkill) {
    exitkill = with_exitkill;
    sigkill_first = sigkill;
    return 0;
  };
  p.dispatch({
      {"exitkill", [&] { return tracer_does(true, false); }},
      {"detach", [&] { return tracer_does(false, false); }},
      {"sigkill_no_stop", [&] { return tracer_does(false, true); }},
  });
  KPC_SYS(prctl(PR_SET_CHILD_SUBREAPER, 1));  // C comes to us when T exits
  kpc::Pipe go = kpc::Pipe::make(O_CLOEXEC), cpid = kpc::Pipe::make(O_CLOEXEC), seized = kpc::Pipe::make(O_CLOEXEC);
  kpc::Child tracer = kpc::fork_child([&] {
    kpc::Child c = kpc::fork_child([&] {
      go.write.reset();
      kpc::recv_byte(go.read.get(), 10000);
      return 5;
    });
    long opts = exitkill ? PTRACE_O_EXITKILL : 0;
    KPC_SYS(ptrace(PTRACE_SEIZE, c.pid(), 0, opts));
    kpc::send_int(cpid.write.get(), c.pid());
    if (sigkill_first) {
      KPC_SYS(kill(c.pid(), SIGKILL));
      int st = 0;
      KPC_SYS(waitpid(c.pid(), &st, __WALL));
      kpc::observe("tracer.first_report", kpc::describe_wait_status(st));
      return;
    }
    kpc::send_byte(seized.write.get());
    c.release();  // T exits with C still traced
  });
  auto c = kpc::recv_int(cpid.read.get(), 5000);
  KPC_CHECK(c.has_value());
  if (!sigkill_first) KPC_CHECK(kpc::recv_byte(seized.read.get(), 5000).has_value());
  kpc::observe("tracer.status", kpc::describe_wait_status(tracer.wait()));
  if (sigkill_first) return 0;
  // T is gone: C is ours now (subreaper). Dead already, or waiting for us?
  go.read.reset();
  {
    // A tracee killed with its tracer has closed its end: no SIGPIPE for us.
    kpc::ScopedSigaction ign(SIGPIPE, SIG_IGN);
    (void)!write(go.write.get(), "x", 1);
  }
  int st = 0;
  pid_t r = waitpid(*c, &st, __WALL);
  kpc::observe("tracee.status", r == *c ? kpc::describe_wait_status(st) : kpc::errno_name(errno));
  return 0;
}
