// orphaned_pgrp_gets_sighup_sigcont: when a process group becomes orphaned
// (no member has a parent in another group of the same session) and one of
// its members is stopped, the kernel sends SIGHUP and then SIGCONT to every
// member -- so a stopped job nobody can resume any more is woken, and dies
// unless it handles SIGHUP. Without a stopped member, nothing is sent.
//   variant with_stopped_member / no_stopped_member
// No terminal is involved. Layout: the probe (a subreaper, in its own
// session) -> S, a new session's leader -> C1 (stopped or not) and C2,
// both in group C1. S exits: C1 and C2 are reparented to the probe, in
// another session, and group C1 is orphaned. The members keep SIGHUP,
// SIGCONT and SIGUSR1 blocked (SIGCONT still resumes a stopped process) and
// collect them with sigwaitinfo until the probe's SIGUSR1 marker; then they
// report the set they got.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "kpc/probe.h"
#include "kpc/siginfo.h"

namespace {
[[noreturn]] void member(int report_fd, int ready_fd, bool stop_first, pid_t group) {
  setpgid(0, group);
  kpc::send_byte(ready_fd);
  if (stop_first) raise(SIGSTOP);
  kpc::SigSet got;
  for (;;) {
    auto si = kpc::take_signal(SIGUSR1, 0);
    if (si) break;
    for (int s : {SIGHUP, SIGCONT})
      if (kpc::take_signal(s, 0)) got.add(s);
    sigset_t all;
    sigemptyset(&all);
    for (int s : {SIGHUP, SIGCONT, SIGUSR1}) sigaddset(&all, s);
    siginfo_t info;
    if (sigwaitinfo(&all, &info) == SIGUSR1) break;
    got.add(info.si_signo);
  }
  for (int s : {SIGHUP, SIGCONT})  // anything that came with the marker
    if (kpc::take_signal(s, 0)) got.add(s);
  kpc::send_int(report_fd, static_cast<int>(got.bits));
  _exit(0);
}
}  // namespace

int probe_main(kpc::Probe& p) {
  bool stopped = p.variant_is("with_stopped_member", "no_stopped_member");
  KPC_SYS(prctl(PR_SET_CHILD_SUBREAPER, 1));
  kpc::ScopedSigmask block(SIG_BLOCK, kpc::SigSet::of({SIGHUP, SIGCONT, SIGUSR1}));  // inherited by the members
  kpc::Pipe r1 = kpc::Pipe::make(O_CLOEXEC), r2 = kpc::Pipe::make(O_CLOEXEC), pids = kpc::Pipe::make(O_CLOEXEC);
  kpc::Child s = kpc::fork_child([&] {
    KPC_SYS(setsid());
    kpc::Pipe ready = kpc::Pipe::make(O_CLOEXEC);
    pid_t c1 = kpc::fork_or_broken();
    if (c1 == 0) member(r1.write.get(), ready.write.get(), stopped, 0);
    setpgid(c1, c1);
    pid_t c2 = kpc::fork_or_broken();
    if (c2 == 0) member(r2.write.get(), ready.write.get(), false, c1);
    setpgid(c2, c1);
    KPC_CHECK(kpc::recv_byte(ready.read.get(), 5000) && kpc::recv_byte(ready.read.get(), 5000));
    if (stopped) {
      int st;
      KPC_SYS(waitpid(c1, &st, WUNTRACED));
      KPC_CHECK(WIFSTOPPED(st));
    }
    kpc::send_int(pids.write.get(), c1);
    kpc::send_int(pids.write.get(), c2);
    // S exits here: group c1 is orphaned.
  });
  auto c1 = kpc::recv_int(pids.read.get(), 5000), c2 = kpc::recv_int(pids.read.get(), 1000);
  KPC_CHECK(c1 && c2);
  kpc::observe("leader.status", kpc::describe_wait_status(s.wait()));
  // The orphaning signals were sent during S's exit, before its reap: now
  // the marker. A member still stopped cannot report: after 5 s, "none came".
  KPC_SYS(kill(*c1, SIGUSR1));
  KPC_SYS(kill(*c2, SIGUSR1));
  auto m1 = kpc::recv_int(r1.read.get(), 5000), m2 = kpc::recv_int(r2.read.get(), 5000);
  kpc::observe("member_1.signals", m1 ? kpc::format_sigset(kpc::SigSet{static_cast<uint32_t>(*m1)})
                                      : std::string("still stopped: no report"));
  kpc::observe("member_2.signals",
               m2 ? kpc::format_sigset(kpc::SigSet{static_cast<uint32_t>(*m2)}) : std::string("no report"));
  kill(*c1, SIGKILL);
  kill(*c2, SIGKILL);
  int st;
  while (wait(&st) > 0) {}
  return 0;
}
