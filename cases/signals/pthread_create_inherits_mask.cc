// pthread_create_inherits_mask: a new thread starts with its creator's
// signal mask, an empty thread-directed pending set (the creator's pending
// signals stay the creator's), the process-wide pending set it shares, and
// no alternate signal stack.
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kpc/probe.h"
#include "kpc/state.h"

namespace {
void* thread_body(void*) {
  kpc::record_state("thread", "blocked,pending,shared_pending,altstack");
  return nullptr;
}
}  // namespace

int probe_main(kpc::Probe&) {
  // 1. The creator blocks SIGUSR1 and SIGUSR2, has SIGUSR1 pending for
  //    itself (tgkill) and SIGUSR2 pending for the process (kill), and an
  //    alternate signal stack.
  kpc::ScopedSigmask block(SIG_BLOCK, kpc::SigSet::of({SIGUSR1, SIGUSR2}));
  KPC_SYS(syscall(SYS_tgkill, getpid(), gettid(), SIGUSR1));
  KPC_SYS(kill(getpid(), SIGUSR2));
  static char stack[64 * 1024];
  stack_t ss{};
  ss.ss_sp = stack;
  ss.ss_size = sizeof stack;
  KPC_SYS(sigaltstack(&ss, nullptr));
  kpc::record_state("creator", "blocked,pending,shared_pending,altstack");
  // 2. The new thread records its own state.
  pthread_t t;
  KPC_ERRNUM(pthread_create(&t, nullptr, thread_body, nullptr));
  KPC_ERRNUM(pthread_join(t, nullptr));
  // Clean up: take both signals, drop the stack.
  kpc::consume_pending(kpc::SigSet::of({SIGUSR1, SIGUSR2}));
  ss.ss_flags = SS_DISABLE;
  KPC_SYS(sigaltstack(&ss, nullptr));
  return 0;
}
