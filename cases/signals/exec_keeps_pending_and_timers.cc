// exec_keeps_pending_and_timers: what execve() itself keeps and drops, in a
// process that set everything up itself (no fork in between to clear it).
// execve(2): pending signals, the mask, interval timers, PDEATHSIG (for a
// non-set-user-ID program) and the subreaper flag are kept; the alternate
// stack and POSIX timers are not.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "kpc/probe.h"
#include "kpc/state.h"

int probe_main(kpc::Probe& p) {
  kpc::Child child = kpc::fork_child([&] {
    // 1. In a fresh child: block SIGUSR1 and SIG36 and make them pending
    //    (thread / process), arm ITIMER_REAL and a POSIX timer, set an
    //    altstack, PDEATHSIG and the subreaper flag.
    sigset_t set = kpc::SigSet::of({SIGUSR1, 36}).to_sigset();
    sigprocmask(SIG_BLOCK, &set, nullptr);
    syscall(SYS_tgkill, getpid(), gettid(), SIGUSR1);
    kill(getpid(), 36);
    itimerval it{};
    it.it_value.tv_sec = 3600;
    setitimer(ITIMER_REAL, &it, nullptr);
    sigevent sev{};
    sev.sigev_notify = SIGEV_NONE;
    timer_t timer;
    timer_create(CLOCK_MONOTONIC, &sev, &timer);
    static char stack[64 * 1024];
    stack_t ss{};
    ss.ss_sp = stack;
    ss.ss_size = sizeof stack;
    sigaltstack(&ss, nullptr);
    prctl(PR_SET_PDEATHSIG, SIGHUP);
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    const char* props = "pending,shared_pending,blocked,itimer_real,posix_timers,altstack,pdeathsig,subreaper";
    kpc::record_state("before", props);
    // 2. execve: the helper records what is left.
    kpc::exec_or_broken({p.helper("exec_report"), "--prefix", "exec", "--record", props});
  });
  // 3. The helper exits with its signals still blocked and pending.
  kpc::observe("exec.status", kpc::describe_wait_status(child.wait()));
  return 0;
}
