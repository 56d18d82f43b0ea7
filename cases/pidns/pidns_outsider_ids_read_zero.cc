// pidns_outsider_ids_read_zero: inside a PID namespace, a process outside
// it has no PID. Wherever the kernel hands a member a PID of an outsider it
// translates it to 0: the sender of a signal (si_pid), the peer of a Unix
// socket (SO_PEERCRED), the owner of a conflicting lock (F_GETLK l_pid).
// A member's signal, for contrast, names the member.
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kpc/probe.h"
#include "kpc/siginfo.h"

int probe_main(kpc::Probe&) {
  // 1. The outsider (the probe): a socket pair it creates (both ends' peer
  //    credentials are its own) and a write lock on a file.
  int sv[2];
  KPC_SYS(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
  kpc::Fd mine(sv[0]), theirs(sv[1]);
  kpc::TempDir dir("outsider");
  std::string path = dir.path() + "/locked";
  kpc::Fd lockfd(KPC_SYS(open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600)));
  struct flock fl {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  KPC_SYS(fcntl(lockfd.get(), F_SETLK, &fl));
  kpc::Pipe ready = kpc::Pipe::make(O_CLOEXEC);

  kpc::Child init = kpc::fork_child_in_new_pidns([&] {
    kpc::ScopedSigmask block(SIG_BLOCK, kpc::SigSet::of({SIGUSR1, SIGUSR2}));
    // 2. Contrast: a member's signal names the member.
    kpc::Child member = kpc::fork_child([] { KPC_SYS(kill(1, SIGUSR2)); });
    auto own = kpc::take_signal(SIGUSR2, 5000);
    kpc::observe("member_signal.si_pid_is_member", own.has_value() && own->si_pid == member.pid());
    member.wait();
    // 3. The outsider's signal: si_pid 0, still SI_USER.
    kpc::send_byte(ready.write.get());
    auto si = kpc::take_signal(SIGUSR1, 5000);
    KPC_CHECK_MSG(si.has_value(), "the outsider's SIGUSR1 never came");
    kpc::observe("outsider_signal.si_pid", static_cast<int64_t>(si->si_pid));
    kpc::observe("outsider_signal.si_code", kpc::si_code_name(SIGUSR1, si->si_code));
    // 4. SO_PEERCRED of the outsider's socket pair.
    ucred cred{};
    socklen_t len = sizeof cred;
    KPC_SYS(getsockopt(theirs.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len));
    kpc::observe("outsider_peercred.pid", static_cast<int64_t>(cred.pid));
    // 5. F_GETLK on the outsider's lock (a new open file: POSIX locks are per process).
    kpc::Fd f(KPC_SYS(open(path.c_str(), O_RDWR | O_CLOEXEC)));
    struct flock q {};
    q.l_type = F_WRLCK;
    q.l_whence = SEEK_SET;
    KPC_SYS(fcntl(f.get(), F_GETLK, &q));
    kpc::observe("outsider_lock.conflict", q.l_type == F_WRLCK);
    kpc::observe("outsider_lock.l_pid", static_cast<int64_t>(q.l_pid));
  });
  KPC_CHECK(kpc::recv_byte(ready.read.get(), 5000).has_value());
  KPC_SYS(kill(init.pid(), SIGUSR1));
  kpc::observe("init.status", kpc::describe_wait_status(init.wait()));
  return 0;
}
