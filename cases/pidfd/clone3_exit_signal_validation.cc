// clone3_exit_signal_validation: clone3 takes the exit signal in its own
// field and validates it: a number above _NSIG, or bits beyond the low byte,
// is EINVAL; so are exit-signal bits left in flags (CSIGNAL, clone()'s way);
// an argument struct larger than a page is E2BIG. A valid non-SIGCHLD exit
// signal or 0 works (and the child then needs __WALL).
#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <vector>

#include "kpc/pidfd.h"
#include "kpc/probe.h"
#include "kpc/state.h"

namespace {
std::string try_clone3(uint64_t flags, uint64_t exit_signal, size_t size = sizeof(clone_args)) {
  std::vector<unsigned char> buf(size < sizeof(clone_args) ? sizeof(clone_args) : size, 0);
  auto* a = reinterpret_cast<clone_args*>(buf.data());
  a->flags = flags;
  a->exit_signal = exit_signal;
  long pid = syscall(kpc::pidfd::kSysClone3, buf.data(), size);
  if (pid == 0) _exit(0);
  if (pid < 0) return kpc::errno_name(errno);
  int st;
  KPC_SYS(waitpid(static_cast<pid_t>(pid), &st, __WALL));
  return kpc::describe_wait_status(st);
}
}  // namespace

int probe_main(kpc::Probe&) {
  // The SIGUSR1 child's exit signal comes to us: keep it blocked and drop it.
  kpc::ScopedSigmask block(SIG_BLOCK, kpc::SigSet::of({SIGUSR1}));
  std::string base = try_clone3(0, SIGCHLD);
  if (base == "ENOSYS") kpc::skip("no clone3 (Linux 5.3)");
  kpc::observe("exit_signal.sigchld", base);
  kpc::observe("exit_signal.sigusr1", try_clone3(0, SIGUSR1));
  kpc::observe("exit_signal.none", try_clone3(0, 0));
  kpc::observe("exit_signal.above_nsig", try_clone3(0, 65));
  kpc::observe("exit_signal.beyond_low_byte", try_clone3(0, 0x100 | SIGCHLD));
  kpc::observe("flags_with_csignal_bits", try_clone3(SIGCHLD, SIGCHLD));
  kpc::observe("args_larger_than_a_page", try_clone3(0, SIGCHLD, static_cast<size_t>(sysconf(_SC_PAGESIZE)) + 8));
  kpc::consume_pending(kpc::SigSet::of({SIGUSR1}));
  return 0;
}
