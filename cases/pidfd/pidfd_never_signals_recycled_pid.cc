// pidfd_never_signals_recycled_pid: a pidfd refers to one process, not to a
// number. After that process is reaped and its PID handed to a new process,
// kill(pid) reaches the newcomer, pidfd_send_signal on the old pidfd does
// not (ESRCH), and waitid(P_PIDFD) on it does not find the newcomer.
//
// The PID is recycled on purpose, in a PID namespace of the probe's own
// (so nothing else allocates PIDs there): its init writes
// /proc/sys/kernel/ns_last_pid, as CRIU and LTP's pidfd_send_signal03 do.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "kpc/pidfd.h"
#include "kpc/probe.h"
#include "kpc/proc.h"

namespace {
using namespace kpc::pidfd;

// A child that waits until its pipe is written to or closed, then exits 0.
kpc::Child waiter(kpc::Pipe& go) {
  return kpc::fork_child([&] { go.wait_for_go(20000); });
}
}  // namespace

int probe_main(kpc::Probe&) {
  kpc::Child init = kpc::fork_child_in_new_pidns([] {
    // 1. A first process, and a pidfd for it.
    kpc::Pipe go_a = kpc::Pipe::make(O_CLOEXEC);
    kpc::Child a = waiter(go_a);
    kpc::Fd pidfd = kpc::pidfd::open_or_skip(a.pid());
    pid_t old_pid = a.pid();

    // 2. It ends and is reaped: the PID is free.
    go_a.write.reset();
    a.wait();

    // 3. The next process gets the same PID (ns_last_pid = PID - 1).
    kpc::set_ns_last_pid(old_pid - 1);
    kpc::Pipe go_b = kpc::Pipe::make(O_CLOEXEC);
    kpc::Child b = waiter(go_b);
    go_b.read.reset();
    kpc::observe("pid_recycled", b.pid() == old_pid);

    // 4. The old pidfd reaches nothing; the number reaches the newcomer.
    errno = 0;
    kpc::observe("old_pidfd.send_signal_0", result(syscall(kSysSendSignal, pidfd.get(), 0, nullptr, 0)));
    kpc::observe("old_pidfd.send_sigkill", result(syscall(kSysSendSignal, pidfd.get(), SIGKILL, nullptr, 0)));
    siginfo_t si{};
    kpc::observe("old_pidfd.waitid",
                 result(syscall(SYS_waitid, kPPidfd, pidfd.get(), &si, WEXITED | WNOHANG, nullptr)));
    pollfd pfd{pidfd.get(), POLLIN, 0};
    kpc::observe("old_pidfd.readable", poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLIN));
    kpc::observe("kill_by_number.reaches_newcomer", kill(old_pid, 0) == 0);

    // 5. The newcomer was not touched: it exits normally when told.
    kpc::send_byte(go_b.write.get());
    kpc::observe("newcomer.status", kpc::describe_wait_status(b.wait()));
  });
  kpc::observe("init.status", kpc::describe_wait_status(init.wait()));
  return 0;
}
