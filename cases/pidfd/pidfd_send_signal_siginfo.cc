// pidfd_send_signal_siginfo: pidfd_send_signal(pidfd, sig, info, 0) with a
// siginfo behaves like rt_sigqueueinfo(): the receiver gets the caller's
// si_code and si_value. The kernel refuses a siginfo whose si_signo is not
// sig (EINVAL) and, to another process, any si_code a user could use to
// impersonate the kernel or kill(2) -- SI_USER, SI_KERNEL, i.e. si_code >= 0
// (EPERM). To the caller itself anything goes.
#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>

#include "kpc/pidfd.h"
#include "kpc/probe.h"
#include "kpc/siginfo.h"

namespace {
using namespace kpc::pidfd;

std::string send(int pidfd, int sig, int info_signo, int code, int value) {
  siginfo_t si;
  memset(&si, 0, sizeof si);
  si.si_signo = info_signo;
  si.si_code = code;
  si.si_pid = getpid();
  si.si_uid = getuid();
  si.si_value.sival_int = value;
  return result(syscall(kSysSendSignal, pidfd, sig, &si, 0));
}
}  // namespace

int probe_main(kpc::Probe&) {
  kpc::ScopedSigmask block(SIG_BLOCK, kpc::SigSet::of({SIGUSR1}));  // inherited by the child
  // 1. A child that takes one SIGUSR1 and reports its si_code and si_value.
  kpc::Pipe ready = kpc::Pipe::make(O_CLOEXEC), report = kpc::Pipe::make(O_CLOEXEC);
  kpc::Child child = kpc::fork_child([&] {
    kpc::send_byte(ready.write.get());
    auto si = kpc::take_signal(SIGUSR1, 5000);
    kpc::send_int(report.write.get(), si ? si->si_code : 12345);
    kpc::send_int(report.write.get(), si ? si->si_value.sival_int : -1);
  });
  KPC_CHECK(kpc::recv_byte(ready.read.get(), 5000).has_value());
  kpc::Fd pidfd = kpc::pidfd::open_or_skip(child.pid());
  // 2. Refused: a mismatched si_signo; kernel-like codes to another process.
  kpc::observe("other.signo_mismatch", send(pidfd.get(), SIGUSR1, SIGUSR2, SI_QUEUE, 1));
  kpc::observe("other.si_user", send(pidfd.get(), SIGUSR1, SIGUSR1, SI_USER, 1));
  kpc::observe("other.si_kernel", send(pidfd.get(), SIGUSR1, SIGUSR1, SI_KERNEL, 1));
  // 3. Accepted: SI_QUEUE with a value, as sigqueue(3) sends it.
  kpc::observe("other.si_queue", send(pidfd.get(), SIGUSR1, SIGUSR1, SI_QUEUE, 42));
  auto code = kpc::recv_int(report.read.get(), 5000);
  auto value = kpc::recv_int(report.read.get(), 1000);
  kpc::observe("received.si_code", code ? kpc::si_code_name(SIGUSR1, *code) : "none");
  kpc::observe("received.si_value", value ? *value : -1);
  kpc::observe("child.status", kpc::describe_wait_status(child.wait()));
  // 4. To ourselves even SI_USER is allowed.
  kpc::Fd self(KPC_SYS(static_cast<int>(syscall(kSysOpen, getpid(), 0))));
  kpc::observe("self.si_user", send(self.get(), SIGUSR1, SIGUSR1, SI_USER, 7));
  auto mine = kpc::take_signal(SIGUSR1, 1000);
  kpc::observe("self.received.si_code", mine ? kpc::si_code_name(SIGUSR1, mine->si_code) : "none");
  return 0;
}
