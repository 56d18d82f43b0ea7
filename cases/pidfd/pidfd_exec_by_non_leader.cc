// pidfd_exec_by_non_leader: when a non-leader thread calls execve, the old
// leader thread dies (de_thread) and the exec'ing thread takes over the
// process's PID. The process did not exit: its pidfd must not turn
// readable then, only when the new program exits. Thread pidfds
// (PIDFD_THREAD, 6.9): the one for the leader's TID now refers to the
// exec'ing thread, which runs on; the one for the exec'ing thread's old TID
// refers to a thread that is gone.
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "kpc/pidfd.h"
#include "kpc/probe.h"
#include "kpc/proc.h"

extern char** environ;

namespace {
using namespace kpc::pidfd;
int g_tid_w, g_go_r, g_stdin_r;

void* execer(void*) {
  kpc::send_int(g_tid_w, gettid());
  kpc::recv_byte(g_go_r, 10000);
  dup2(g_stdin_r, 0);
  char* argv[] = {const_cast<char*>("sh"), const_cast<char*>("-c"), const_cast<char*>("read x"), nullptr};
  execve("/bin/sh", argv, environ);
  _exit(127);
}

std::string readable(int fd) {
  if (fd < 0) return "no pidfd";
  pollfd p{fd, POLLIN, 0};
  return poll(&p, 1, 0) == 1 && (p.revents & POLLIN) ? "readable" : "not readable";
}
}  // namespace

int probe_main(kpc::Probe&) {
  kpc::Pipe tid = kpc::Pipe::make(O_CLOEXEC), go = kpc::Pipe::make(O_CLOEXEC);
  kpc::Pipe input = kpc::Pipe::make();  // the shell's stdin
  KPC_SYS(fcntl(input.write.get(), F_SETFD, FD_CLOEXEC));
  // 1. A process whose second thread will exec `sh -c 'read x'`.
  kpc::Child child = kpc::fork_child([&] {
    g_tid_w = tid.write.get();
    g_go_r = go.read.get();
    g_stdin_r = input.read.get();
    pthread_t t;
    KPC_ERRNUM(pthread_create(&t, nullptr, execer, nullptr));
    for (;;) pause();
  });
  input.read.reset();
  auto exec_tid = kpc::recv_int(tid.read.get(), 5000);
  KPC_CHECK(exec_tid.has_value());
  kpc::Fd pidfd = kpc::pidfd::open_or_skip(child.pid());
  long lt = syscall(kSysOpen, child.pid(), kThread), et = syscall(kSysOpen, *exec_tid, kThread);
  kpc::observe("thread_pidfds", lt >= 0 && et >= 0 ? std::string("ok") : kpc::errno_name(errno));
  kpc::Fd leader_thread(static_cast<int>(lt)), execer_thread(static_cast<int>(et));
  // 2. The second thread execs; wait until the new program runs.
  kpc::send_byte(go.write.get());
  bool execed = false;
  for (int i = 0; i < 5000 && !execed; ++i) {
    execed = kpc::read_text("/proc/" + std::to_string(child.pid()) + "/comm").value_or("") == "sh\n";
    if (!execed) usleep(1000);
  }
  KPC_CHECK_MSG(execed, "the thread's exec never showed in /proc");
  kpc::observe("after_exec.same_pid", kill(child.pid(), 0) == 0);
  kpc::observe("after_exec.process_pidfd", readable(pidfd.get()));
  if (lt >= 0 && et >= 0) {
    kpc::observe("after_exec.leader_tid_thread_pidfd", readable(leader_thread.get()));
    kpc::observe("after_exec.execer_old_tid_thread_pidfd", readable(execer_thread.get()));
  }
  // 3. The new program exits: now the process pidfd is readable.
  input.write.reset();  // `read x` gets EOF
  pollfd p{pidfd.get(), POLLIN, 0};
  kpc::observe("after_exit.process_pidfd", poll(&p, 1, 5000) == 1 ? "readable" : "not readable");
  kpc::observe("status", kpc::describe_wait_status(child.wait()));
  return 0;
}
