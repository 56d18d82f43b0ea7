// close_range_flags: close_range(first, last, flags) (5.9) closes a range of
// descriptors at once; CLOSE_RANGE_CLOEXEC (5.11) only marks them
// close-on-exec, so they vanish at the next exec; CLOSE_RANGE_UNSHARE first
// gives the caller a private copy of a shared descriptor table, so another
// process sharing it (CLONE_FILES) keeps its descriptors.
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <climits>

#include "kpc/probe.h"

#ifndef SYS_close_range
#define SYS_close_range 436  // the same on every architecture; glibc < 2.34 does not name it
#endif

namespace {
constexpr unsigned kUnshare = 1u << 1, kCloexec = 1u << 2;  // linux/close_range.h
long close_range(unsigned first, unsigned last, unsigned flags) { return syscall(SYS_close_range, first, last, flags); }
std::string state(int fd) {
  int f = fcntl(fd, F_GETFD);
  if (f < 0) return "closed";
  return f & FD_CLOEXEC ? "cloexec" : "open";
}
void open_at(int at) {
  int fd = KPC_SYS(open("/dev/null", O_RDONLY));
  if (fd != at) {
    KPC_SYS(dup2(fd, at));
    close(fd);
  }
}

int g_result_fd;
int sharer(void* arg) {
  // With CLONE_FILES: close 40..49 in the shared table, or in a private copy.
  unsigned flags = *static_cast<unsigned*>(arg);
  long r = close_range(40, 49, flags);
  char c = r == 0 ? 'k' : 'e';
  (void)!write(g_result_fd, &c, 1);
  return 0;
}
}  // namespace

int probe_main(kpc::Probe& p) {
  // 1. Close a range.
  for (int fd = 20; fd <= 22; ++fd) open_at(fd);
  long r = close_range(20, 21, 0);
  if (r < 0 && errno == ENOSYS) kpc::skip("no close_range (Linux 5.9)");
  kpc::observe_result("plain", r, r < 0 ? errno : 0);
  kpc::observe("plain.fd20", state(20));
  kpc::observe("plain.fd22_outside_range", state(22));
  close(22);
  // 2. Bad arguments.
  kpc::observe("first_above_last", (close_range(30, 29, 0) < 0) ? kpc::errno_name(errno) : "ok");
  kpc::observe("unknown_flag", (close_range(30, 31, 1u << 7) < 0) ? kpc::errno_name(errno) : "ok");
  // 3. CLOSE_RANGE_CLOEXEC: marked, not closed; gone after exec.
  for (int fd = 30; fd <= 32; ++fd) open_at(fd);
  r = close_range(30, UINT_MAX, kCloexec);
  kpc::observe("cloexec", r == 0 ? std::string("ok") : kpc::errno_name(errno));
  if (r == 0) {
    kpc::observe("cloexec.fd31", state(31));
    kpc::Child e = kpc::fork_child([&] {
      kpc::exec_or_broken({p.helper("exec_report"), "--prefix", "exec_after_cloexec", "--record", "fds"});
    });
    e.wait();
  }
  for (int fd = 30; fd <= 32; ++fd) close(fd);
  // 4. A process sharing our descriptor table closes 40..49, with and
  //    without CLOSE_RANGE_UNSHARE: what is left in ours?
  kpc::Pipe res = kpc::Pipe::make(O_CLOEXEC);
  g_result_fd = res.write.get();
  static char stack[64 * 1024];
  for (unsigned flags : {0u, kUnshare}) {
    for (int fd = 40; fd <= 42; ++fd) open_at(fd);
    unsigned arg = flags;
    pid_t pid = clone(sharer, stack + sizeof stack, CLONE_FILES | SIGCHLD, &arg);
    KPC_SYS(pid);
    int st;
    KPC_SYS(waitpid(pid, &st, 0));
    char c = 0;
    KPC_CHECK(read(res.read.get(), &c, 1) == 1 && c == 'k');
    kpc::observe(flags ? "shared_table.unshare.our_fd41" : "shared_table.plain.our_fd41", state(41));
    for (int fd = 40; fd <= 42; ++fd) close(fd);
  }
  return 0;
}
