// standard_vs_realtime_queueing: while blocked, a standard signal sent three
// times is pending once; a real-time signal sent twice is queued twice, with
// its sigqueue() values in order. On unblocking, the lowest-numbered pending
// signal is delivered first (signal(7)), so standard before real-time.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <string>

#include "kpc/probe.h"

namespace {
// The handler appends to a fixed log: async-signal-safe.
struct Entry {
  int sig;
  int value;
};
Entry g_log[32];
std::atomic<int> g_count{0};

void on_signal(int sig, siginfo_t* info, void*) {
  int i = g_count.fetch_add(1);
  if (i < 32) g_log[i] = {sig, info->si_code == SI_QUEUE ? info->si_value.sival_int : 0};
}
}  // namespace

int probe_main(kpc::Probe&) {
  const int rt_low = 36, rt_high = 40;
  // 1. Handlers (SA_SIGINFO) for SIGUSR1, SIGUSR2 and two RT signals; block them.
  struct sigaction sa {};
  sa.sa_sigaction = on_signal;
  sa.sa_flags = SA_SIGINFO;
  sigfillset(&sa.sa_mask);  // no nesting: one delivery at a time
  for (int s : {SIGUSR1, SIGUSR2, rt_low, rt_high}) KPC_SYS(sigaction(s, &sa, nullptr));
  kpc::ScopedSigmask mask(SIG_BLOCK, kpc::SigSet::of({SIGUSR1, SIGUSR2, rt_low, rt_high}));

  // 2. Send, in this order: SIG40 (value 1), SIGUSR2 x3, SIG40 (value 2),
  //    SIG36 (value 3), SIGUSR1 x3 — all to this process.
  sigval v{};
  v.sival_int = 1;
  KPC_SYS(sigqueue(getpid(), rt_high, v));
  for (int i = 0; i < 3; ++i) KPC_SYS(kill(getpid(), SIGUSR2));
  v.sival_int = 2;
  KPC_SYS(sigqueue(getpid(), rt_high, v));
  v.sival_int = 3;
  KPC_SYS(sigqueue(getpid(), rt_low, v));
  for (int i = 0; i < 3; ++i) KPC_SYS(kill(getpid(), SIGUSR1));

  // 3. Unblock: everything pending is delivered before sigprocmask returns.
  sigset_t none;
  sigemptyset(&none);
  KPC_SYS(sigprocmask(SIG_SETMASK, &none, nullptr));

  std::string order;
  for (int i = 0; i < g_count.load() && i < 32; ++i) {
    order += (order.empty() ? "" : ",") + kpc::signal_name(g_log[i].sig);
    if (g_log[i].value) order += ":" + std::to_string(g_log[i].value);
  }
  kpc::observe("deliveries", g_count.load());
  kpc::observe("order", order);
  return 0;
}
