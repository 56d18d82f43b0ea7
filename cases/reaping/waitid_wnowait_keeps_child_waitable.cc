// waitid_wnowait_keeps_child_waitable: waitid(WEXITED | WNOWAIT) reports an
// exited child without reaping it: it stays a zombie and the next wait
// reports it again. For a process whose leader thread exited with one
// status and whose group then exited with another, the peek reports the
// group's status, as the consuming wait does (gVisor:
// NonConsumingWaitPrefersGroupExitStatus, "skips before 5.16").
//   variant exit:        a single-threaded child exits 7
//   variant group_exit:  the leader thread exits 1 (exit, not exit_group),
//                        then the other thread calls exit_group(2)
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kpc/probe.h"
#include "kpc/proc.h"
#include "kpc/siginfo.h"

namespace {
pid_t g_leader;
void* finisher(void*) {
  // Wait until the leader thread is a zombie, then end the whole group.
  KPC_CHECK(kpc::wait_for_state(g_leader, 'Z', 5000) == 'Z');
  syscall(SYS_exit_group, 2);
  return nullptr;
}

std::string peek_or_reap(pid_t pid, int options) {
  siginfo_t si{};
  if (waitid(P_PID, pid, &si, options) != 0) return kpc::errno_name(errno);
  return kpc::describe_child_siginfo(si);
}
}  // namespace

int probe_main(kpc::Probe& p) {
  bool group = p.variant_is("group_exit", "exit");
  kpc::Child child = kpc::fork_child([&] {
    if (!group) _exit(7);
    g_leader = getpid();
    pthread_t t;
    KPC_ERRNUM(pthread_create(&t, nullptr, finisher, nullptr));
    syscall(SYS_exit, 1);  // this thread only
  });
  KPC_CHECK(kpc::wait_for_state(child.pid(), 'Z', 5000) == 'Z');
  // 1. Peek twice: the same report, the child still a zombie.
  kpc::observe("peek_1", peek_or_reap(child.pid(), WEXITED | WNOWAIT));
  kpc::observe("peek_2", peek_or_reap(child.pid(), WEXITED | WNOWAIT));
  kpc::observe("after_peeks.state", std::string(1, kpc::wait_for_state(child.pid(), 'Z', 0)));
  // 2. Reap; then nothing is left.
  kpc::observe("reap", peek_or_reap(child.pid(), WEXITED));
  kpc::observe("after_reap", peek_or_reap(child.pid(), WEXITED | WNOHANG));
  child.release();
  return 0;
}
