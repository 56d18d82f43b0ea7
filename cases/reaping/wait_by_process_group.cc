// wait_by_process_group: wait can select children by process group:
// waitpid(-pgid) and waitid(P_PGID, pgid) a given group, waitpid(0) and
// waitid(P_PGID, 0) (5.4) the caller's own group. Children in other groups
// are not reported, and a group with no children left gives ECHILD.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <set>
#include <string>

#include "kpc/probe.h"
#include "kpc/proc.h"

namespace {
// A child that exits `code` at once; `pgid` > 0 puts it in that group
// (0: a new group of its own), -1 leaves it in ours.
pid_t child_in_group(pid_t pgid, int code) {
  pid_t pid = kpc::fork_or_broken();
  if (pid == 0) {
    if (pgid >= 0) setpgid(0, pgid);
    _exit(code);
  }
  if (pgid >= 0) setpgid(pid, pgid);  // both sides, so it holds whoever runs first
  return pid;
}
std::string who(pid_t got, pid_t a1, pid_t a2, pid_t b1, pid_t b2) {
  if (got < 0) return kpc::errno_name(errno);
  if (got == 0) return "none";
  if (got == a1 || got == a2) return "other_group";
  if (got == b1 || got == b2) return "own_group";
  return "unknown";
}
}  // namespace

int probe_main(kpc::Probe&) {
  // 1. Two children in a new group X, two in ours; all exit.
  pid_t a1 = child_in_group(0, 1);
  pid_t x = a1;
  pid_t a2 = child_in_group(x, 2);
  pid_t b1 = child_in_group(-1, 3), b2 = child_in_group(-1, 4);
  for (pid_t p : {a1, a2, b1, b2}) KPC_CHECK(kpc::wait_for_state(p, 'Z', 5000) == 'Z');
  kpc::observe("group_x.members", getpgid(a1) == x && getpgid(a2) == x);
  // 2. Our own group, twice: only b1 and b2.
  int st;
  kpc::observe("waitpid_0", who(waitpid(0, &st, WNOHANG), a1, a2, b1, b2));
  siginfo_t si{};
  int r = waitid(P_PGID, 0, &si, WEXITED | WNOHANG);
  kpc::observe("waitid_p_pgid_0", r < 0 ? kpc::errno_name(errno) : who(si.si_pid, a1, a2, b1, b2));
  kpc::observe("waitpid_0.after_own_group_reaped", who(waitpid(0, &st, WNOHANG), a1, a2, b1, b2));
  // 3. Group X, by -pgid and by P_PGID.
  kpc::observe("waitpid_minus_pgid", who(waitpid(-x, &st, WNOHANG), a1, a2, b1, b2));
  si = {};
  r = waitid(P_PGID, static_cast<id_t>(x), &si, WEXITED | WNOHANG);
  kpc::observe("waitid_p_pgid_x", r < 0 ? kpc::errno_name(errno) : who(si.si_pid, a1, a2, b1, b2));
  kpc::observe("waitpid_minus_pgid.after_group_reaped", who(waitpid(-x, &st, WNOHANG), a1, a2, b1, b2));
  return 0;
}
