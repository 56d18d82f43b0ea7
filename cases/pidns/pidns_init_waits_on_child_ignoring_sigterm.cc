// pidns_init_waits_on_child_ignoring_sigterm (story 004): the container's
// PID 1 catches SIGTERM, forwards it to its worker and then waits for the
// worker (as Python's multiprocessing atexit join does). The worker ignores
// SIGTERM, so PID 1 waits forever and the namespace never stops, until
// SIGKILL from outside tears it down.
//   variant waits_forever:  PID 1 blocks in waitpid after forwarding
//   variant kills_after_grace: PID 1 waits 200 ms, then SIGKILLs the worker
#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kpc/probe.h"
#include "kpc/proc.h"

namespace {
void on_term(int) {}
}  // namespace

int probe_main(kpc::Probe& p) {
  const bool grace = p.variant_is("kills_after_grace", "waits_forever");
  kpc::Pipe ready = kpc::Pipe::make(O_CLOEXEC);

  kpc::Child init = kpc::fork_child_in_new_pidns([&] {
    // 1. PID 1 catches SIGTERM (a handler: an init without one would not
    //    even get it from outside), and holds it blocked until it waits for
    //    it, so one that comes early is not lost.
    struct sigaction sa {};
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, nullptr);
    sigset_t term;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    sigprocmask(SIG_BLOCK, &term, nullptr);
    // 2. The worker ignores SIGTERM (as in the story).
    pid_t worker = kpc::fork_or_broken();
    if (worker == 0) {
      signal(SIGTERM, SIG_IGN);
      sigprocmask(SIG_UNBLOCK, &term, nullptr);
      for (;;) pause();
    }
    kpc::send_byte(ready.write.get());
    // 3. Wait for SIGTERM, forward it, then wait for the worker.
    while (sigwaitinfo(&term, nullptr) != SIGTERM) {}
    kill(worker, SIGTERM);
    if (grace) {
      for (int i = 0; i < 20; ++i) {
        if (waitpid(worker, nullptr, WNOHANG) == worker) _exit(0);
        usleep(10000);
      }
      kill(worker, SIGKILL);
    }
    int st;
    waitpid(worker, &st, 0);
    _exit(0);
  });

  KPC_CHECK(kpc::recv_byte(ready.read.get(), 5000).has_value());
  // 4. `docker stop`: SIGTERM to the namespace's init.
  KPC_SYS(kill(init.pid(), SIGTERM));
  // How long to give it: the fixed init gets 10 s, so a slow machine (an
  // emulated guest under load: seen on 7.2 under TCG with a 1 s bound)
  // cannot turn its normal exit into "stuck". The stuck one is watched
  // until it is where it will stay -- blocked in wait4 (/proc/PID/syscall;
  // wchan is 0 on Debian's 5.10) for a worker that ignores the SIGTERM it
  // forwarded -- and 200 ms more.
  if (!grace) {
    const std::string syscall = "/proc/" + std::to_string(init.pid()) + "/syscall";
    const std::string in_wait4 = std::to_string(SYS_wait4) + " ";
    const int64_t deadline = kpc::monotonic_ms() + 5000;
    while (!kpc::read_text(syscall).value_or("").starts_with(in_wait4) && kpc::monotonic_ms() < deadline) usleep(1000);
  }
  auto st = init.wait_for(grace ? 10000 : 200);
  kpc::observe("init.stopped_without_outside_sigkill", st.has_value());
  if (!st) {
    // 5. The runtime's last resort: SIGKILL from outside.
    KPC_SYS(kill(init.pid(), SIGKILL));
    st = init.wait();
  }
  kpc::observe("init.status", kpc::describe_wait_status(*st));
  return 0;
}
