// signalfd_init_leaks_mask (story 000): a minimal init blocks every signal
// so it can read them from a signalfd, then forks and execs a worker.
//   variant forgets_reset: the child execs without restoring the mask (the
//     cinit bug): the worker starts with nearly everything blocked, and a
//     SIGTERM sent to it stays pending instead of killing it.
//   variant resets: the child restores an empty mask before exec: the worker
//     starts clean and SIGTERM kills it.
#include <signal.h>
#include <sys/signalfd.h>

#include "kpc/probe.h"
#include "kpc/state.h"

int probe_main(kpc::Probe& p) {
  const bool resets = p.variant_is("resets", "forgets_reset");

  // 1. Block everything (glibc's sigfillset: all but its internal 32/33;
  //    the kernel drops SIGKILL and SIGSTOP) and read signals via signalfd.
  sigset_t all;
  sigfillset(&all);
  sigset_t old;
  KPC_SYS(sigprocmask(SIG_SETMASK, &all, &old));
  kpc::Fd sfd(signalfd(-1, &all, SFD_CLOEXEC));
  KPC_CHECK(sfd);
  kpc::record_state("init", "blocked");

  // 2. fork + exec the worker (exec_report), which records its state and
  //    then sends itself SIGTERM, as `docker stop` would.
  kpc::Child worker = kpc::fork_child([&] {
    if (resets) {
      sigset_t none;
      sigemptyset(&none);
      KPC_SYS(sigprocmask(SIG_SETMASK, &none, nullptr));
    }
    kpc::exec_or_broken(
        {p.helper("exec_report"), "--prefix", "worker", "--record", "blocked,pending,fds", "--signal-self", "SIGTERM"});
  });

  // 3. How the worker ended: killed by SIGTERM, or alive to exit 0.
  kpc::observe("worker.status", kpc::describe_wait_status(worker.wait()));

  // 4. Drain what the init's signalfd collected (SIGCHLD) and restore.
  kpc::consume_pending(kpc::SigSet::from(all));
  KPC_SYS(sigprocmask(SIG_SETMASK, &old, nullptr));
  return 0;
}
