// sa_nocldstop_suppresses_sigchld: SA_NOCLDSTOP on the SIGCHLD action stops
// the SIGCHLD a parent gets when its child stops or continues; the one for
// the child's exit still comes.
//   variant without: a handler without SA_NOCLDSTOP (SIGCHLD for all three)
//   variant with:    the same handler with SA_NOCLDSTOP
// SIGCHLD stays blocked, so each one is taken with its siginfo (sigtimedwait)
// instead of running the handler; SA_NOCLDSTOP is read from the action
// either way.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kpc/probe.h"
#include "kpc/siginfo.h"

namespace {
void on_sigchld(int) {}
int g_continued_fd = -1;
void on_sigcont(int) {
  char c = 'c';
  (void)!write(g_continued_fd, &c, 1);
}
std::string taken(int timeout_ms) {
  auto si = kpc::take_signal(SIGCHLD, timeout_ms);
  return si ? kpc::describe_child_siginfo(*si) : "none";
}
}  // namespace

int probe_main(kpc::Probe& p) {
  bool nocldstop = p.variant_is("with", "without");
  kpc::ScopedSigmask block(SIG_BLOCK, kpc::SigSet::of({SIGCHLD}));
  kpc::ScopedSigaction act(SIGCHLD, on_sigchld, SA_RESTART | (nocldstop ? SA_NOCLDSTOP : 0));

  // 1. A child that says when it has been continued (its SIGCONT handler
  //    runs after the kernel has notified the parent of the continuation:
  //    get_signal() does that first) and otherwise waits to be told to exit.
  kpc::Pipe go = kpc::Pipe::make(O_CLOEXEC);
  kpc::Pipe continued = kpc::Pipe::make(O_CLOEXEC);
  kpc::Child child = kpc::fork_child([&] {
    go.write.reset();
    g_continued_fd = continued.write.get();
    struct sigaction sa {};
    sa.sa_handler = on_sigcont;
    sa.sa_flags = SA_RESTART;
    KPC_SYS(sigaction(SIGCONT, &sa, nullptr));
    kpc::send_byte(continued.write.get(), 'r');  // ready: the handler is in place
    kpc::recv_byte(go.read.get(), 20000);
  });
  go.read.reset();
  continued.write.reset();
  KPC_CHECK_MSG(kpc::recv_byte(continued.read.get(), 5000) == 'r', "the child never got ready");

  // 2. Stop it, and wait until it has stopped (waitpid WUNTRACED), so that
  //    the SIGCONT below cannot cancel a stop still pending.
  KPC_SYS(kill(child.pid(), SIGSTOP));
  int st = 0;
  KPC_SYS(waitpid(child.pid(), &st, WUNTRACED));
  KPC_CHECK(WIFSTOPPED(st));
  //    Without SA_NOCLDSTOP the stop's SIGCHLD is taken here (it may follow
  //    the wait by a moment). With it, nothing should come; what did come
  //    would still be pending at step 3.
  if (!nocldstop) kpc::observe("stop.sigchld", taken(5000));

  // 3. Continue it. Once its SIGCONT handler has written, the kernel has
  //    done every notification it was going to do.
  KPC_SYS(kill(child.pid(), SIGCONT));
  KPC_CHECK_MSG(kpc::recv_byte(continued.read.get(), 5000).has_value(), "the child's SIGCONT handler never ran");
  kpc::observe(nocldstop ? "stop_and_continue.sigchld" : "continue.sigchld", taken(0));

  // 4. Its exit sends SIGCHLD either way.
  kpc::send_byte(go.write.get());
  kpc::observe("exit.sigchld", taken(5000));
  kpc::observe("exit.status", kpc::describe_wait_status(child.wait()));
  return 0;
}
