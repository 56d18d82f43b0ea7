// fd_inheritance_across_exec: which descriptors a new program inherits. A
// process puts descriptors of every kind at known numbers, with and without
// close-on-exec, and execs exec_report, which lists the fds it has:
//   10 a file, no flag            11 a file, O_CLOEXEC
//   12 eventfd(EFD_CLOEXEC)       13 signalfd(SFD_CLOEXEC)
//   14 a pidfd (always cloexec)   15 socket(SOCK_CLOEXEC)
//   16 dup2() of a cloexec fd (dup2 clears the flag)
//   17 fcntl(F_DUPFD_CLOEXEC)     18 a file, flag set later with F_SETFD
// Before the exec, a fork child shares the parent's file offsets, does not
// hold its POSIX (fcntl) lock but does share its OFD lock.
#include <fcntl.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <string>

#include "kpc/pidfd.h"
#include "kpc/probe.h"

namespace {
void place(int fd, int at, bool cloexec) {
  if (fd == at) return;
  KPC_SYS(dup3(fd, at, cloexec ? O_CLOEXEC : 0));
  close(fd);
}
std::string lock_seen_by_child(int fd, int getlk) {
  struct flock q {};
  q.l_type = F_WRLCK;
  q.l_whence = SEEK_SET;
  KPC_SYS(fcntl(fd, getlk, &q));
  return q.l_type == F_UNLCK ? "no conflict" : "conflict";
}
}  // namespace

int probe_main(kpc::Probe& p) {
  kpc::TempDir dir("fds");
  std::string path = dir.path() + "/f", path2 = dir.path() + "/g";
  int f = KPC_SYS(open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  KPC_CHECK(write(f, "0123456789", 10) == 10);
  // 1. Fork: the same open files (shared offset), POSIX vs OFD locks.
  struct flock posix {};
  posix.l_type = F_WRLCK;
  posix.l_whence = SEEK_SET;
  KPC_SYS(fcntl(f, F_SETLK, &posix));
  int g = KPC_SYS(open(path2.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  struct flock ofd {};
  ofd.l_type = F_WRLCK;
  ofd.l_whence = SEEK_SET;
  KPC_SYS(fcntl(g, F_OFD_SETLK, &ofd));
  KPC_SYS(lseek(f, 3, SEEK_SET));
  kpc::Child c = kpc::fork_child([&] {
    kpc::observe("fork_child.offset", static_cast<int64_t>(lseek(f, 0, SEEK_CUR)));
    KPC_SYS(lseek(f, 7, SEEK_SET));  // moves the parent's offset too
    kpc::observe("fork_child.posix_lock", lock_seen_by_child(KPC_SYS(open(path.c_str(), O_RDWR | O_CLOEXEC)), F_GETLK));
    kpc::observe("fork_child.ofd_lock_through_inherited_fd", lock_seen_by_child(g, F_OFD_GETLK));
  });
  c.wait();
  kpc::observe("parent.offset_after_child_seek", static_cast<int64_t>(lseek(f, 0, SEEK_CUR)));
  // 2. Every kind of descriptor at its number, then exec.
  place(KPC_SYS(open(path.c_str(), O_RDONLY)), 10, false);
  place(KPC_SYS(open(path.c_str(), O_RDONLY | O_CLOEXEC)), 11, true);
  place(KPC_SYS(eventfd(0, EFD_CLOEXEC)), 12, true);
  sigset_t m;
  sigemptyset(&m);
  sigaddset(&m, SIGUSR1);
  place(KPC_SYS(signalfd(-1, &m, SFD_CLOEXEC)), 13, true);
  long pfd = syscall(kpc::pidfd::kSysOpen, getpid(), 0);
  if (pfd >= 0) place(static_cast<int>(pfd), 14, true);
  place(KPC_SYS(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)), 15, true);
  KPC_SYS(dup2(11, 16));  // dup2 of a close-on-exec fd: the copy has no flag
  int d = KPC_SYS(fcntl(10, F_DUPFD_CLOEXEC, 17));
  place(d, 17, true);
  place(KPC_SYS(open(path.c_str(), O_RDONLY)), 18, false);
  KPC_SYS(fcntl(18, F_SETFD, FD_CLOEXEC));
  kpc::observe("pidfd_open", pfd >= 0 ? "ok" : kpc::errno_name(errno));
  kpc::Child e = kpc::fork_child([&] {
    kpc::exec_or_broken({p.helper("exec_report"), "--prefix", "exec", "--record", "fds"});
  });
  kpc::observe("exec.status", kpc::describe_wait_status(e.wait()));
  for (int fd = 10; fd <= 18; ++fd) close(fd);
  close(f);
  close(g);
  return 0;
}
