// sched_reset_on_fork: a process running a real-time policy, or with a
// negative nice value, can mark its scheduling SCHED_RESET_ON_FORK: its
// children then start with SCHED_OTHER and nice 0 instead of inheriting the
// privilege, and do not inherit the flag itself. Without the flag the
// child inherits SCHED_FIFO.
//   variant fifo_plain:      SCHED_FIFO 1 -> the child has SCHED_FIFO
//   variant fifo_reset:      SCHED_FIFO 1 | RESET_ON_FORK -> SCHED_OTHER
//   variant negative_nice_reset: SCHED_OTHER, nice -5 | RESET_ON_FORK -> nice 0
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "kpc/probe.h"

int probe_main(kpc::Probe& p) {
  kpc::Child c = kpc::fork_child([&] {
    sched_param sp{};
    int policy = SCHED_OTHER;
    auto fifo = [&](int reset) {
      sp.sched_priority = 1;
      policy = SCHED_FIFO | reset;
      return 0;
    };
    p.dispatch({
        {"fifo_plain", [&] { return fifo(0); }},
        {"fifo_reset", [&] { return fifo(SCHED_RESET_ON_FORK); }},
        {"negative_nice_reset",
         [&] {
           if (setpriority(PRIO_PROCESS, 0, -5) != 0) {
             if (errno == EACCES || errno == EPERM) kpc::skip("a negative nice value needs CAP_SYS_NICE");
             kpc::broken("setpriority: " + kpc::errno_name(errno));
           }
           policy = SCHED_OTHER | SCHED_RESET_ON_FORK;
           return 0;
         }},
    });
    if (sched_setscheduler(0, policy, &sp) != 0) {
      if (errno == EPERM) kpc::skip("setting a real-time policy needs CAP_SYS_NICE (EPERM)");
      kpc::broken("sched_setscheduler: " + kpc::errno_name(errno));
    }
    // The child is forked now: that is where RESET_ON_FORK acts.
    kpc::Child child = kpc::fork_child([&] {
      kpc::exec_or_broken({p.helper("attrs_report"), "--prefix", "child", "--record", "sched_policy,nice"});
    });
    child.wait();
    kpc::exec_or_broken({p.helper("attrs_report"), "--prefix", "self_after_exec", "--record", "sched_policy,nice"});
  });
  kpc::observe("status", kpc::describe_wait_status(c.wait()));
  return 0;
}
