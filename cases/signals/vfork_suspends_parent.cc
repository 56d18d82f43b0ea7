// vfork_suspends_parent: after vfork() the parent does not run until the
// child execs or exits; the child runs in the parent's memory meanwhile. A
// SIGCHLD that arrives while the parent is suspended is delivered when it
// resumes.
//   1. Before vfork, the parent starts a first child X that exits when told.
//   2. The vfork child sees its parent asleep (state D: the vfork wait is
//      killable, not interruptible), writes to the parent's memory, makes X
//      exit (SIGCHLD for the parent, which is still suspended) and waits
//      until X is a zombie; then it execs `sh -c 'read x'`, which waits.
//   3. The parent resumes at the exec, while the child still runs: its
//      SIGCHLD handler ran, it sees the write, and it can release the child.
// The vfork child uses raw system calls only (it runs on the parent's stack).
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>

#include "kpc/probe.h"

extern char** environ;

namespace {
volatile sig_atomic_t g_sigchld = 0;
void on_sigchld(int) { g_sigchld = 1; }

// The state letter of /proc/PID/stat, read with raw calls.
char state_of(pid_t pid) {
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return '-';
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return '-';
  buf[n] = 0;
  const char* rp = strrchr(buf, ')');
  return rp && rp[1] == ' ' ? rp[2] : '?';
}

char wait_state(pid_t pid, char want) {
  char s = '?';
  for (int i = 0; i < 20000 && (s = state_of(pid)) != want; ++i) usleep(100);
  return s;
}
}  // namespace

int probe_main(kpc::Probe&) {
  kpc::ScopedSigaction act(SIGCHLD, on_sigchld, SA_RESTART);
  // 1. X: exits when its pipe is closed.
  kpc::Pipe x_go = kpc::Pipe::make(O_CLOEXEC);
  kpc::Child x = kpc::fork_child([&] {
    x_go.write.reset();
    kpc::recv_byte(x_go.read.get(), 20000);
  });
  x_go.read.reset();
  kpc::Pipe to_child = kpc::Pipe::make();  // the exec'd shell's stdin: not CLOEXEC on the read end
  KPC_SYS(fcntl(to_child.write.get(), F_SETFD, FD_CLOEXEC));
  pid_t parent = getpid();
  pid_t x_pid = x.pid();
  int x_go_w = x_go.write.get(), stdin_r = to_child.read.get();
  static std::atomic<int> written{0};
  static char parent_state_seen = '?', x_state_seen = '?';

  // 2. vfork.
  pid_t child = vfork();
  if (child < 0) kpc::broken("vfork failed");
  if (child == 0) {
    parent_state_seen = wait_state(parent, 'D');
    written = 42;
    (void)!write(x_go_w, "x", 1);  // X exits: SIGCHLD for the suspended parent
    x_state_seen = wait_state(x_pid, 'Z');
    dup2(stdin_r, 0);
    char* argv[] = {const_cast<char*>("sh"), const_cast<char*>("-c"), const_cast<char*>("read x"), nullptr};
    execve("/bin/sh", argv, environ);
    _exit(127);
  }
  // 3. Resumed: the child has exec'd and is still running.
  bool child_alive = kill(child, 0) == 0 && wait_state(child, 'S') == 'S';
  kpc::observe("vfork_child.saw_parent_state", std::string(1, parent_state_seen));
  kpc::observe("parent.sees_childs_write", written.load() == 42);
  kpc::observe("parent.resumed_while_child_runs", child_alive);
  kpc::observe("x.was_zombie_before_exec", x_state_seen == 'Z');
  kpc::observe("parent.sigchld_handled_on_resume", g_sigchld == 1);
  kpc::observe("x.status", kpc::describe_wait_status(x.wait()));
  to_child.write.reset();  // EOF: `read x` fails, sh exits 1
  kpc::Child c(child);
  kpc::observe("vfork_child.status", kpc::describe_wait_status(c.wait()));
  return 0;
}
