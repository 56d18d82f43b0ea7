// sigkill_sigstop_cannot_be_changed: SIGKILL and SIGSTOP "cannot be caught,
// blocked, or ignored" (signal(7)). What does each API do when asked?
// sigaction refuses (EINVAL); sigprocmask and signalfd silently drop them.
#include <fcntl.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kpc/probe.h"
#include "kpc/state.h"

namespace {
void on_sig(int) {}

// rt_sigaction directly: the kernel's answer, not libc's.
long raw_sigaction(int sig, void (*handler)(int)) {
  struct kernel_sigaction {
    void (*handler)(int);
    unsigned long flags;
    void (*restorer)();
    uint64_t mask;
  } act{handler, 0, nullptr, 0};
  return syscall(SYS_rt_sigaction, sig, &act, nullptr, sizeof(uint64_t));
}
}  // namespace

int probe_main(kpc::Probe&) {
  // 1. sigaction on SIGKILL/SIGSTOP: a handler, SIG_IGN, even SIG_DFL.
  for (auto [sig, name] : {std::pair{SIGKILL, "sigkill"}, std::pair{SIGSTOP, "sigstop"}}) {
    std::string n = name;
    long rc = raw_sigaction(sig, on_sig);
    kpc::observe_result(n + ".sigaction_handler", rc, errno);
    rc = raw_sigaction(sig, SIG_IGN);
    kpc::observe_result(n + ".sigaction_ignore", rc, errno);
    rc = raw_sigaction(sig, SIG_DFL);
    kpc::observe_result(n + ".sigaction_default", rc, errno);
    struct sigaction old {};
    rc = sigaction(sig, nullptr, &old);  // querying is allowed
    kpc::observe_result(n + ".sigaction_query", rc, errno);
  }

  // 2. Blocking them: sigprocmask accepts the call and drops them.
  {
    kpc::SigSet want = kpc::SigSet::of({SIGKILL, SIGSTOP, SIGUSR1});
    uint64_t bits = want.bits, old = 0;
    long rc = syscall(SYS_rt_sigprocmask, SIG_BLOCK, &bits, &old, sizeof bits);
    kpc::observe_result("sigprocmask_block", rc, errno);
    kpc::record_state("after_block", "blocked");
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, &old, nullptr, sizeof old);
  }

  // 3. signalfd with them in the mask: accepted; they are not read through it.
  {
    sigset_t set = kpc::SigSet::of({SIGKILL, SIGSTOP}).to_sigset();
    int fd = signalfd(-1, &set, SFD_CLOEXEC);
    kpc::observe_result("signalfd_kill_stop", fd, errno);
    if (fd >= 0) close(fd);
  }

  // 4. Signal numbers out of range are refused.
  KPC_OBSERVE_CALL("sigaction_signal_0", raw_sigaction(0, SIG_IGN));
  KPC_OBSERVE_CALL("sigaction_signal_65", raw_sigaction(65, SIG_IGN));

  // 5. A stopped child: SIGSTOP stops it though it "blocked" and "ignored"
  //    everything it could; SIGKILL then kills it while stopped.
  //    (It says it is ready once it has, so SIGSTOP cannot come first.)
  kpc::Pipe ready = kpc::Pipe::make(O_CLOEXEC);
  kpc::Child child = kpc::fork_child([&] {
    sigset_t all;
    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, nullptr);
    for (int s = 1; s < 32; ++s) signal(s, SIG_IGN);
    kpc::send_byte(ready.write.get());
    for (;;) pause();
  });
  ready.write.reset();
  kpc::expect_ready(child, ready.read.get(), 5000, "the child never blocked and ignored its signals");
  KPC_SYS(kill(child.pid(), SIGSTOP));
  int status = child.wait(WUNTRACED);
  kpc::observe("child.after_sigstop", kpc::describe_wait_status(status));
  KPC_SYS(kill(child.pid(), SIGKILL));
  kpc::observe("child.after_sigkill", kpc::describe_wait_status(child.wait()));
  return 0;
}
