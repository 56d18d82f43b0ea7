// pids_allocated_cyclically: PIDs are handed out in increasing order and
// wrap at pid_max; a PID just freed is not handed out again next (LTP
// fork13's concern: the next fork after a reap gets a new number). After
// the wrap the lowest free number from 300 on is used. In a PID namespace of
// the probe's own, moved to the end with ns_last_pid.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "kpc/probe.h"
#include "kpc/proc.h"

namespace {
pid_t fork_and_reap() {
  pid_t pid = kpc::fork_or_broken();
  if (pid == 0) _exit(0);
  int st;
  KPC_SYS(waitpid(pid, &st, 0));
  return pid;
}
}  // namespace

int probe_main(kpc::Probe&) {
  kpc::Child init = kpc::fork_child_in_new_pidns([] {
    // 1. A child, reaped; the next child gets the next number, not its.
    pid_t first = fork_and_reap();
    pid_t second = fork_and_reap();
    kpc::observe("first", static_cast<int64_t>(first));
    kpc::observe("second_is_next_number", second == first + 1);
    // 2. At the top: the last PID below pid_max, then the wrap.
    long pid_max = std::stol(kpc::read_text("/proc/sys/kernel/pid_max").value_or("0"));
    KPC_CHECK(pid_max > 300);
    kpc::set_ns_last_pid(pid_max - 2);
    pid_t top = fork_and_reap();
    kpc::observe("top_is_pid_max_minus_1", top == pid_max - 1);
    // A child that stays alive keeps 300 taken across the wrap (the wrap
    // goes to RESERVED_PIDS, 300, not to 1).
    kpc::Pipe go = kpc::Pipe::make(O_CLOEXEC);
    kpc::set_ns_last_pid(299);
    kpc::Child holder = kpc::fork_child([&] { go.wait_for_go(5000); });
    kpc::observe("holder", static_cast<int64_t>(holder.pid()));
    kpc::set_ns_last_pid(pid_max - 1);
    pid_t wrapped = fork_and_reap();
    kpc::observe("after_wrap", static_cast<int64_t>(wrapped));
    kpc::send_byte(go.write.get());
    holder.wait();
  });
  kpc::observe("init.status", kpc::describe_wait_status(init.wait()));
  return 0;
}
