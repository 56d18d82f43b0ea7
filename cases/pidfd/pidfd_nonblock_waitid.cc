// pidfd_nonblock_waitid: waitid(P_PIDFD) on a non-blocking pidfd
// (PIDFD_NONBLOCK at pidfd_open, 5.10, or O_NONBLOCK set with fcntl) does
// not wait: EAGAIN while the process lives -- where a blocking pidfd with
// WNOHANG reports "nothing yet" (si_pid 0). Once it has exited, the wait
// reaps it.
#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kpc/pidfd.h"
#include "kpc/probe.h"
#include "kpc/proc.h"
#include "kpc/siginfo.h"

namespace {
using namespace kpc::pidfd;
std::string wait_on(int pidfd, int options) {
  siginfo_t si{};
  if (syscall(SYS_waitid, kPPidfd, pidfd, &si, options, nullptr) < 0) return kpc::errno_name(errno);
  return kpc::describe_child_siginfo(si);
}
}  // namespace

int probe_main(kpc::Probe&) {
  kpc::Pipe go = kpc::Pipe::make(O_CLOEXEC);
  kpc::Child child = kpc::fork_child([&] { go.wait_for_go(); });
  long nb = syscall(kSysOpen, child.pid(), kNonblock);
  if (nb < 0 && errno == ENOSYS) kpc::skip("no pidfd_open (Linux 5.3)");
  if (nb < 0 && errno == EINVAL) kpc::skip("PIDFD_NONBLOCK is refused (EINVAL): it arrived in Linux 5.10");
  kpc::Fd nonblocking(static_cast<int>(KPC_SYS(nb)));
  kpc::Fd blocking(KPC_SYS(static_cast<int>(syscall(kSysOpen, child.pid(), 0))));
  // 1. Alive.
  kpc::observe("alive.pidfd_nonblock", wait_on(nonblocking.get(), WEXITED));
  kpc::observe("alive.blocking_wnohang", wait_on(blocking.get(), WEXITED | WNOHANG));
  kpc::Fd viafcntl(KPC_SYS(static_cast<int>(syscall(kSysOpen, child.pid(), 0))));
  KPC_SYS(fcntl(viafcntl.get(), F_SETFL, O_NONBLOCK));
  kpc::observe("alive.o_nonblock_by_fcntl", wait_on(viafcntl.get(), WEXITED));
  // 2. Exited: the non-blocking wait reaps it.
  kpc::send_byte(go.write.get());
  KPC_CHECK(kpc::wait_for_state(child.pid(), 'Z', 5000) == 'Z');
  kpc::observe("exited.pidfd_nonblock", wait_on(nonblocking.get(), WEXITED));
  child.release();
  return 0;
}
