// pidns_init_signal_rules: the init of a PID namespace only receives signals
// it has a handler for -- from its own members (SIGKILL included) and from
// ancestor namespaces alike -- except that SIGKILL and SIGSTOP from an
// ancestor namespace are forced (pid_namespaces(7)).
// SIGSTOP from a member is dropped as well; from the ancestor it stops init.
//   variant no_handler:   init has no handlers
//   variant sigterm_handler: init catches SIGTERM
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>

#include "kpc/probe.h"
#include "kpc/proc.h"

namespace {
std::atomic<int> g_handled{0};
void on_term(int) { g_handled.fetch_add(1); }
}  // namespace

int probe_main(kpc::Probe& p) {
  const bool handler = p.variant_is("sigterm_handler", "no_handler");
  kpc::Pipe to_init = kpc::Pipe::make(O_CLOEXEC), from_init = kpc::Pipe::make(O_CLOEXEC);

  kpc::Child init = kpc::fork_child_in_new_pidns([&] {
    if (handler) {
      struct sigaction sa {};
      sa.sa_handler = on_term;
      sigaction(SIGTERM, &sa, nullptr);
    }
    // 1. A member of the namespace sends SIGTERM, then SIGKILL, to PID 1.
    kpc::Child member = kpc::fork_child([] {
      KPC_OBSERVE_CALL("member.kill_sigterm", kill(1, SIGTERM));
      KPC_OBSERVE_CALL("member.kill_sigkill", kill(1, SIGKILL));
    });
    member.wait();
    const int from_member = g_handled.load();
    kpc::observe("init.handled_from_member", from_member);
    kpc::send_byte(from_init.write.get());  // alive after the members' SIGTERM and SIGKILL
    // 2. Another member sends SIGSTOP. Had it been delivered, init would stop
    //    on its way back to user mode after the wait and never answer.
    kpc::Child stopper = kpc::fork_child([] { KPC_OBSERVE_CALL("member.kill_sigstop", kill(1, SIGSTOP)); });
    stopper.wait();
    // 3. Alive after the member's SIGSTOP: tell the outside, which then sends
    //    SIGTERM from the ancestor namespace and says "done".
    kpc::send_byte(from_init.write.get());
    kpc::recv_byte(to_init.read.get(), 5000);
    kpc::observe("init.handled_from_ancestor", g_handled.load() - from_member);
    kpc::send_byte(from_init.write.get());
    // 4. Wait for SIGSTOP/SIGCONT, then SIGKILL, from the ancestor namespace.
    for (;;) pause();
  });

  from_init.write.reset();  // so that init's death reads as EOF at once
  to_init.read.reset();
  // EOF instead of the byte means init died of its members' signals.
  kpc::observe("ancestor.init_answered_after_member_signals", kpc::recv_byte(from_init.read.get(), 5000).has_value());
  kpc::observe("ancestor.init_answered_after_member_sigstop", kpc::recv_byte(from_init.read.get(), 5000).has_value());
  KPC_SYS(kill(init.pid(), SIGTERM));
  // A default-action SIGTERM would kill init before it reads the byte below
  // (the signal is pending before the write); a handled one runs first.
  kpc::send_byte(to_init.write.get());
  auto ok = kpc::recv_byte(from_init.read.get(), 5000);
  kpc::observe("ancestor.init_answered_after_sigterm", ok.has_value());
  // SIGSTOP from the ancestor is forced: init stops (T) although it has no
  // handler; SIGCONT resumes it (its effect happens when it is sent).
  KPC_SYS(kill(init.pid(), SIGSTOP));
  kpc::observe("ancestor.sigstop.init_state", std::string(1, kpc::wait_for_state(init.pid(), 'T', 2000)));
  KPC_SYS(kill(init.pid(), SIGCONT));
  kpc::observe("ancestor.sigcont.init_state", std::string(1, kpc::wait_for_state(init.pid(), 'S', 2000)));
  KPC_SYS(kill(init.pid(), SIGKILL));
  kpc::observe("init.status", kpc::describe_wait_status(init.wait()));
  return 0;
}
