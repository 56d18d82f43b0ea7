// pidns_nested_teardown: the init of an outer PID namespace exits while a
// nested namespace lives inside it. Every member of both dies of SIGKILL --
// also members whose parent is outside (entered by setns, like
// `docker exec`), and those we can wait for. The outer init cannot be reaped
// before those outside-parented members are: its exit waits in
// zap_pid_ns_processes until every PID of its namespace is freed.
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <map>
#include <string>

#include "kpc/probe.h"
#include "kpc/proc.h"

namespace {
enum Tag { kOuterMember = 1, kInnerInit = 2, kInnerMember = 3 };

// One atomic write per report: the tag in the high bits (pid_max < 2^23).
void report(int fd, Tag tag) { kpc::send_int(fd, (tag << 23) | kpc::pid_in_mounted_proc()); }

[[noreturn]] void report_and_pause(int fd, Tag tag) {
  report(fd, tag);
  for (;;) pause();
}

kpc::Fd open_pidns(pid_t pid) {
  kpc::Fd fd(open(("/proc/" + std::to_string(pid) + "/ns/pid").c_str(), O_RDONLY | O_CLOEXEC));
  KPC_CHECK(fd);
  return fd;
}

// How `docker exec` enters: setns to the namespace, fork, and come back. The
// child's parent is this probe, outside the namespace.
kpc::Child fork_member_via_setns(int nsfd, int own_nsfd) {
  KPC_SYS(setns(nsfd, CLONE_NEWPID));
  kpc::Child c = kpc::fork_child([] {
    for (;;) pause();
  });
  KPC_SYS(setns(own_nsfd, CLONE_NEWPID));
  return c;
}
}  // namespace

int probe_main(kpc::Probe&) {
  kpc::Pipe reports = kpc::Pipe::make(O_CLOEXEC), go = kpc::Pipe::make(O_CLOEXEC);
  const int w = reports.write.get();

  // 1. Outer init A: a member, and an inner init B (a nested namespace) with
  //    a member of its own. Each reports its PID; A waits for the word.
  kpc::Child outer = kpc::fork_child_in_new_pidns([&] {
    if (kpc::fork_or_broken() == 0) report_and_pause(w, kOuterMember);
    if (kpc::fork_into_new_pidns_or_skip() == 0) {
      if (kpc::fork_or_broken() == 0) report_and_pause(w, kInnerMember);
      report_and_pause(w, kInnerInit);
    }
    kpc::recv_byte(go.read.get(), 10000);
    _exit(0);
  });
  reports.write.reset();
  std::map<int, pid_t> pid;
  for (int i = 0; i < 3; ++i) {
    auto v = kpc::recv_int(reports.read.get(), 5000);
    KPC_CHECK_MSG(v.has_value(), "a member of the namespaces never reported");
    pid[*v >> 23] = *v & ((1 << 23) - 1);
  }
  KPC_CHECK(pid.size() == 3);

  // 2. Hold both namespaces open, and put one child of ours into each.
  kpc::Fd outer_ns = open_pidns(outer.pid()), inner_ns = open_pidns(pid[kInnerInit]);
  kpc::Fd own_ns(open("/proc/thread-self/ns/pid", O_RDONLY | O_CLOEXEC));
  KPC_CHECK(own_ns);
  kpc::Child ours_outer = fork_member_via_setns(outer_ns.get(), own_ns.get());
  kpc::Child ours_inner = fork_member_via_setns(inner_ns.get(), own_ns.get());

  // 3. A exits. Our two members die of SIGKILL and wait for us as zombies;
  //    A must not become reapable while they are unreaped.
  kpc::send_byte(go.write.get());
  kpc::observe("ours_in_outer.state", std::string(1, kpc::wait_for_state(ours_outer.pid(), 'Z', 5000)));
  kpc::observe("ours_in_inner.state", std::string(1, kpc::wait_for_state(ours_inner.pid(), 'Z', 5000)));
  kpc::observe("outer_init.zombie_while_ours_unreaped", kpc::wait_for_state(outer.pid(), 'Z', 200) == 'Z');
  auto s_inner = ours_inner.wait_for(5000);
  kpc::observe("ours_in_inner.status", s_inner ? kpc::describe_wait_status(*s_inner) : "not reaped");
  auto s_outer = ours_outer.wait_for(5000);
  kpc::observe("ours_in_outer.status", s_outer ? kpc::describe_wait_status(*s_outer) : "not reaped");

  // 4. Now A can finish; after it, nobody of either namespace is left.
  auto s_init = outer.wait_for(5000);
  kpc::observe("outer_init.status", s_init ? kpc::describe_wait_status(*s_init) : "not reaped");
  kpc::observe("outer_member.gone", kpc::pid_gone(pid[kOuterMember]));
  kpc::observe("inner_init.gone", kpc::pid_gone(pid[kInnerInit]));
  kpc::observe("inner_member.gone", kpc::pid_gone(pid[kInnerMember]));

  // 5. Both namespaces are dead: entering works, creating a process does not.
  kpc::observe_setns_then_fork("outer_ns", outer_ns.get());
  kpc::observe_setns_then_fork("inner_ns", inner_ns.get());
  return 0;
}
