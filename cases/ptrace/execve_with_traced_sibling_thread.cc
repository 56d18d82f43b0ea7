// execve_with_traced_sibling_thread: a thread of C made its parent T its
// tracer (PTRACE_TRACEME) and exited: it is a zombie only T can release.
// C's main thread then calls execve: de_thread() must wait until that
// thread is gone, i.e. until T waits for it -- holding the lock that
// ptrace attach and /proc/C/mem take. kselftest ptrace/vmaccess.c: opening
// /proc/C/mem meanwhile must work (it deadlocked before 5.7), and a
// PTRACE_ATTACH meanwhile should fail with EAGAIN rather than wait for a
// lock held by an exec that waits for the attacher's side (the attach of
// Bernd Edlinger's "Fix dead-lock in de_thread with ptrace_attach").
// Here the attach comes from a third process A, so that T can still
// release the thread. An attach that neither returns nor stops sleeping
// in ptrace(2) waits for the exec's lock; A is then killed.
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <optional>
#include <string>

#include "kpc/probe.h"
#include "kpc/proc.h"

namespace {
int g_tid_fd = -1;

// A sleeps inside ptrace(2): /proc/A/syscall names it (101 on x86_64) and
// its state is S (a task running or runnable shows "running" instead).
bool asleep_in_ptrace(pid_t a) {
  auto sc = kpc::read_text("/proc/" + std::to_string(a) + "/syscall").value_or("");
  return sc.rfind(std::to_string(SYS_ptrace) + " ", 0) == 0 && kpc::wait_for_state(a, 'S', 0) == 'S';
}
void* traceme(void*) {
  kpc::send_int(g_tid_fd, gettid());
  ptrace(PTRACE_TRACEME, 0, 0, 0);
  return nullptr;  // the thread exits: a zombie its tracer must release
}
}  // namespace

int probe_main(kpc::Probe&) {
  kpc::Child tracer = kpc::fork_child([] {
    kpc::Pipe tid = kpc::Pipe::make(O_CLOEXEC);
    // 1. C: a thread makes us its tracer and exits; then C execs.
    kpc::Child c = kpc::fork_child([&] {
      g_tid_fd = tid.write.get();
      pthread_t t;
      KPC_ERRNUM(pthread_create(&t, nullptr, traceme, nullptr));
      pthread_join(t, nullptr);
      kpc::exec_or_broken({"/bin/sh", "-c", "exit 7"});
    });
    auto thread_tid = kpc::recv_int(tid.read.get(), 5000);
    KPC_CHECK(thread_tid.has_value());
    // 2. Wait until C's main thread waits in de_thread (uninterruptibly).
    KPC_CHECK_MSG(kpc::wait_for_state(c.pid(), 'D', 5000) == 'D', "C never blocked in its exec");
    kpc::observe("exec.pending_while_thread_unreleased",
                 kpc::read_text("/proc/" + std::to_string(c.pid()) + "/comm").value_or("") != "sh\n");
    // 3. /proc/C/mem meanwhile.
    int mem = open(("/proc/" + std::to_string(c.pid()) + "/mem").c_str(), O_RDONLY | O_CLOEXEC);
    kpc::observe_result("proc_mem.open", mem, mem < 0 ? errno : 0);
    if (mem >= 0) close(mem);
    // 4. A third process attaches meanwhile.
    kpc::Pipe res = kpc::Pipe::make(O_CLOEXEC);
    pid_t target = c.pid();
    kpc::Child a = kpc::fork_child([&] {
      long r = ptrace(PTRACE_ATTACH, target, 0, 0);
      kpc::send_int(res.write.get(), r == 0 ? 0 : errno);
      if (r == 0) ptrace(PTRACE_DETACH, target, 0, 0);
    });
    // Either A reports, or it is found asleep inside ptrace(2) (an attach
    // that fails with EAGAIN never sleeps): then it waits for the lock.
    std::optional<int> attach;
    bool waiting = false;
    for (int i = 0; i < 5000 && !attach && !waiting; ++i) {
      attach = kpc::recv_int(res.read.get(), 1);
      if (!attach) waiting = asleep_in_ptrace(a.pid());
    }
    kpc::observe("attach_meanwhile", attach    ? (*attach ? kpc::errno_name(*attach) : std::string("ok"))
                                     : waiting ? std::string("waits")
                                               : std::string("no answer in 5 s"));
    if (!attach) a.kill(SIGKILL);
    a.wait();
    // 5. We release the thread; the exec goes on.
    int st = 0;
    pid_t r = waitpid(*thread_tid, &st, __WALL);
    kpc::observe("traced_thread.wait", r == *thread_tid ? kpc::describe_wait_status(st) : kpc::errno_name(errno));
    kpc::observe("c.status", kpc::describe_wait_status(c.wait(__WALL)));
  });
  kpc::observe("tracer.status", kpc::describe_wait_status(tracer.wait()));
  return 0;
}
