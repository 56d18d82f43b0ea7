// pdeathsig_follows_parent_thread: PR_SET_PDEATHSIG fires when the *thread*
// that created the child exits, even though the parent process lives on
// (prctl(2): "the 'parent' in this case is considered to be the thread that
// created this process"). A child created by the main thread, which stays,
// gets nothing when another thread exits (the control variant).
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "kpc/probe.h"

namespace {
struct Shared {
  pid_t child = -1;
  pid_t thread = 0;  // the TID of the thread that exits
  kpc::Pipe ready;   // child -> creator: PDEATHSIG is set
  kpc::Pipe look;    // probe -> child: the thread is gone, look now
};

// The child: arm PDEATHSIG=SIGUSR1 (blocked, so it stays pending), say so,
// and once told the thread is gone, look whether it is pending.
[[noreturn]] void child_body(Shared& s, pid_t expected_parent) {
  sigset_t usr1 = kpc::SigSet::of({SIGUSR1}).to_sigset();
  sigprocmask(SIG_BLOCK, &usr1, nullptr);
  prctl(PR_SET_PDEATHSIG, SIGUSR1);
  if (getppid() != expected_parent) _exit(3);  // the creator was already gone
  kpc::send_byte(s.ready.write.get());
  KPC_CHECK_MSG(kpc::recv_byte(s.look.read.get(), 10000).has_value(), "never told to look");
  timespec now{0, 0};
  siginfo_t info{};
  int sig = sigtimedwait(&usr1, &info, &now);
  kpc::observe("child.got_pdeathsig", sig == SIGUSR1);
  kpc::observe("child.ppid_is_probe", getppid() == expected_parent);
  _exit(0);
}

void* thread_creates_child(void* arg) {
  auto& s = *static_cast<Shared*>(arg);
  s.thread = gettid();
  pid_t probe = getpid();
  s.child = kpc::fork_or_broken();
  if (s.child == 0) child_body(s, probe);
  kpc::recv_byte(s.ready.read.get(), 5000);
  return nullptr;  // 2. this thread exits; the process does not
}

void* thread_just_exits(void* arg) {
  static_cast<Shared*>(arg)->thread = gettid();
  return nullptr;
}

// The exited thread's /proc/self/task entry goes away in release_task(),
// after exit_notify() has sent its children their parent-death signals:
// once it is gone, a PDEATHSIG that was going to come has come.
void wait_until_released(pid_t tid) {
  const std::string path = "/proc/self/task/" + std::to_string(tid);
  const int64_t deadline = kpc::monotonic_ms() + 5000;
  while (access(path.c_str(), F_OK) == 0) {
    KPC_CHECK_MSG(kpc::monotonic_ms() < deadline, "thread " + std::to_string(tid) + " not released within 5 s");
    usleep(1000);
  }
}
}  // namespace

int probe_main(kpc::Probe& p) {
  Shared s;
  s.ready = kpc::Pipe::make(O_CLOEXEC);
  s.look = kpc::Pipe::make(O_CLOEXEC);
  pthread_t t;
  if (p.variant_is("creator_thread_exits", "other_thread_exits")) {
    // 1. A second thread creates the child, waits until PDEATHSIG is armed, exits.
    KPC_ERRNUM(pthread_create(&t, nullptr, thread_creates_child, &s));
    KPC_ERRNUM(pthread_join(t, nullptr));
  } else {
    // 1. The main thread creates the child; an unrelated thread exits.
    pid_t probe = getpid();
    s.child = kpc::fork_or_broken();
    if (s.child == 0) child_body(s, probe);
    kpc::recv_byte(s.ready.read.get(), 5000);
    KPC_ERRNUM(pthread_create(&t, nullptr, thread_just_exits, &s));
    KPC_ERRNUM(pthread_join(t, nullptr));
  }
  // 3. The thread is gone for good: the child looks for its signal, reports
  //    and exits; the probe process was alive throughout.
  wait_until_released(s.thread);
  kpc::send_byte(s.look.write.get());
  kpc::Child child(s.child);
  kpc::observe("child.status", kpc::describe_wait_status(child.wait()));
  return 0;
}
