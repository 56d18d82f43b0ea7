// tracer_waits_before_real_parent: when a traced process exits, its tracer
// is told first. Until the tracer has waited for it (or detached), the
// real parent -- here not the tracer -- finds it not yet waitable; then it
// reaps it as usual. A tracee is waitable by its tracer whatever its exit
// signal: the tracer needs no __WALL for a child-of-someone-else created
// with exit signal 0 (bf959931ddb8, 4.7).
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kpc/probe.h"
#include "kpc/proc.h"

int probe_main(kpc::Probe&) {
  // 1. The tracee: exit signal 0 (raw clone with no signal), waits to be told.
  kpc::Pipe go = kpc::Pipe::make(O_CLOEXEC), attached = kpc::Pipe::make(O_CLOEXEC);
  long t = syscall(SYS_clone, 0, 0, 0, 0, 0);
  if (t == 0) {
    prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY);  // where Yama restricts ptrace
    go.write.reset();
    kpc::recv_byte(go.read.get(), 10000);
    _exit(5);
  }
  KPC_SYS(t);
  pid_t tracee = static_cast<pid_t>(t);
  // 2. The tracer: a sibling of the tracee (a child of the probe) that seizes it.
  kpc::Pipe report = kpc::Pipe::make(O_CLOEXEC), tracer_go = kpc::Pipe::make(O_CLOEXEC);
  kpc::Child tracer = kpc::fork_child([&] {
    if (ptrace(PTRACE_SEIZE, tracee, nullptr, nullptr) != 0) {
      kpc::send_int(attached.write.get(), errno);
      return;
    }
    kpc::send_int(attached.write.get(), 0);
    // 4. Told the tracee is a zombie: wait for it, plain (no __WALL).
    KPC_CHECK(kpc::recv_byte(tracer_go.read.get(), 10000).has_value());
    int st = 0;
    pid_t r = waitpid(tracee, &st, 0);
    kpc::observe("tracer.wait", r == tracee ? kpc::describe_wait_status(st) : kpc::errno_name(errno));
  });
  auto a = kpc::recv_int(attached.read.get(), 5000);
  KPC_CHECK(a.has_value());
  if (*a == EPERM) kpc::skip("ptrace(PTRACE_SEIZE) of a sibling refused (EPERM): no CAP_SYS_PTRACE here");
  KPC_CHECK_MSG(*a == 0, "PTRACE_SEIZE: " + kpc::errno_name(*a));
  // 3. The tracee exits; it is a zombie the real parent cannot reap yet.
  kpc::send_byte(go.write.get());
  KPC_CHECK(kpc::wait_for_state(tracee, 'Z', 5000) == 'Z');
  int st = 0;
  pid_t r = waitpid(tracee, &st, WNOHANG | __WALL);
  kpc::observe("real_parent.before_tracer", r < 0 ? kpc::errno_name(errno) : r == 0 ? "not yet" : "reaped");
  // 5. After the tracer's wait, the real parent reaps it.
  kpc::send_byte(tracer_go.write.get());
  kpc::observe("tracer.status", kpc::describe_wait_status(tracer.wait()));
  r = waitpid(tracee, &st, __WALL);
  kpc::observe("real_parent.after_tracer", r == tracee ? kpc::describe_wait_status(st) : kpc::errno_name(errno));
  return 0;
}
