// sigkill_zombie_keeps_status: a zombie has finished dying: SIGKILL sent to
// it is accepted (kill returns 0, the PID still exists) and changes
// nothing -- the parent still reaps the status it exited with.
//   variant exit:                   the child called _exit(7)
//   variant exit_group_from_thread: a second thread called exit_group(7)
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kpc/probe.h"
#include "kpc/proc.h"

namespace {
void* group_exit(void*) {
  syscall(SYS_exit_group, 7);
  return nullptr;
}
}  // namespace

int probe_main(kpc::Probe& p) {
  bool from_thread = p.variant_is("exit_group_from_thread", "exit");
  kpc::Child child = kpc::fork_child([&] {
    if (!from_thread) _exit(7);
    pthread_t t;
    KPC_ERRNUM(pthread_create(&t, nullptr, group_exit, nullptr));
    for (;;) pause();
  });
  KPC_CHECK(kpc::wait_for_state(child.pid(), 'Z', 5000) == 'Z');
  KPC_OBSERVE_CALL("zombie.kill_sigkill", kill(child.pid(), SIGKILL));
  KPC_OBSERVE_CALL("zombie.kill_sigterm", kill(child.pid(), SIGTERM));
  kpc::observe("status", kpc::describe_wait_status(child.wait()));
  return 0;
}
