// execve_from_non_main_thread: a thread other than the main one calls
// execve(). The kernel kills the other threads, the calling thread takes
// over the thread-group leader's PID, and the new program runs with the
// *calling thread's* signal mask (execve(2), "All threads other than the
// calling thread are destroyed"; the mask is per-thread).
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include "kpc/probe.h"
#include "kpc/state.h"

namespace {
struct Args {
  std::string helper;
};

void* exec_from_thread(void* arg) {
  auto* a = static_cast<Args*>(arg);
  // 2. This thread's own mask: SIGUSR2 only (the main thread has SIGUSR1).
  sigset_t usr2 = kpc::SigSet::of({SIGUSR2}).to_sigset();
  pthread_sigmask(SIG_SETMASK, &usr2, nullptr);
  kpc::record_state("thread", "blocked,tid_is_pid,threads");
  kpc::exec_or_broken({a->helper, "--prefix", "exec", "--record", "blocked,tid_is_pid,threads"});
}
}  // namespace

int probe_main(kpc::Probe& p) {
  Args args{p.helper("exec_report")};
  // 1. A child process (so the probe itself survives): the main thread
  //    blocks SIGUSR1 and parks; a second thread execs.
  kpc::Child child = kpc::fork_child([&] {
    sigset_t usr1 = kpc::SigSet::of({SIGUSR1}).to_sigset();
    pthread_sigmask(SIG_SETMASK, &usr1, nullptr);
    pthread_t t;
    if (pthread_create(&t, nullptr, exec_from_thread, &args) != 0) kpc::broken("pthread_create");
    for (;;) pause();  // killed by the exec in the other thread
  });
  // 3. The exec'd program is still our child: same PID, so waitpid finds it.
  kpc::observe("exec.status", kpc::describe_wait_status(child.wait()));
  return 0;
}
