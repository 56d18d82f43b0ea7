// clone3_set_tid_chooses_pid: clone3's set_tid (Linux 5.5, for
// checkpoint/restore) picks the new process's PID, in the caller's PID
// namespace and, with CLONE_NEWPID, in each namespace it creates: a taken
// PID is EEXIST, more levels than exist EINVAL, and without
// CAP_CHECKPOINT_RESTORE (5.9) or CAP_SYS_ADMIN over the namespace EPERM.
// Everything happens in a PID namespace of the probe's own, so the PIDs
// chosen are nobody else's.
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "kpc/caps.h"
#include "kpc/pidfd.h"
#include "kpc/probe.h"

namespace {
// clone3 with set_tid; the child runs `child` and _exit()s. Returns the
// PID or the errno name.
template <typename F>
std::string clone3_with_tids(uint64_t flags, std::initializer_list<pid_t> tids, F child, pid_t* pid_out = nullptr) {
  pid_t set[40] = {};
  size_t n = 0;
  for (pid_t t : tids) set[n++] = t;
  clone_args a{};
  a.flags = flags;
  a.exit_signal = SIGCHLD;
  a.set_tid = reinterpret_cast<uint64_t>(set);
  a.set_tid_size = n;
  long pid = syscall(kpc::pidfd::kSysClone3, &a, sizeof a);
  if (pid == 0) _exit(child());
  if (pid < 0) return kpc::errno_name(errno);
  if (pid_out) *pid_out = static_cast<pid_t>(pid);
  int st;
  KPC_SYS(waitpid(static_cast<pid_t>(pid), &st, 0));
  return std::to_string(pid);
}
int nothing() { return 0; }
}  // namespace

int probe_main(kpc::Probe&) {
  kpc::Child init = kpc::fork_child_in_new_pidns([] {
    // 1. Choose PID 7 in this namespace.
    std::string r = clone3_with_tids(0, {7}, nothing);
    if (r == "ENOSYS") kpc::skip("no clone3 (Linux 5.3)");
    if (r == "E2BIG") kpc::skip("clone3 without set_tid (Linux 5.5)");
    kpc::observe("set_tid.free_pid", r);
    // 2. A PID in use (1: this init): EEXIST.
    kpc::observe("set_tid.taken_pid", clone3_with_tids(0, {1}, nothing));
    // 3. More levels than exist below the caller's namespace: the probe's
    //    namespace is at most level 2 (host: 1), so 4 is too many.
    kpc::observe("set_tid.too_many_levels", clone3_with_tids(0, {9, 10, 11, 12}, nothing));
    // 4. Two levels with CLONE_NEWPID: 1 in the new namespace, 9 here.
    kpc::Pipe report = kpc::Pipe::make(O_CLOEXEC);
    kpc::observe("set_tid.new_namespace", clone3_with_tids(CLONE_NEWPID, {1, 9}, [&] {
                   kpc::send_int(report.write.get(), getpid());
                   return 0;
                 }));
    auto inner = kpc::recv_int(report.read.get(), 2000);
    kpc::observe("set_tid.new_namespace.inner_pid", inner ? std::to_string(*inner) : std::string("none"));
    // 5. Without the capabilities: EPERM.
    kpc::Child unpriv = kpc::fork_child([] {
      kpc::drop_capabilities({CAP_SYS_ADMIN, 40 /* CAP_CHECKPOINT_RESTORE */});
      kpc::observe("set_tid.without_capabilities", clone3_with_tids(0, {11}, nothing));
    });
    unpriv.wait();
  });
  kpc::observe("init.status", kpc::describe_wait_status(init.wait()));
  return 0;
}
