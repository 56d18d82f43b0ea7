// wait_for_sibling_threads_children: children belong to the process, not to
// the thread that forked them: any thread may wait for a child another
// thread created -- unless it passes __WNOTHREAD, which limits the wait to
// the caller's own children. When the forking thread exits, its children
// are handed to a live thread of the same process (find_alive_thread() in
// kernel/exit.c), and then __WNOTHREAD finds them from there.
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kpc/probe.h"
#include "kpc/proc.h"

namespace {
struct Forker {
  pid_t child = -1;
  kpc::Pipe forked = kpc::Pipe::make(O_CLOEXEC), done = kpc::Pipe::make(O_CLOEXEC);
};
void* forker(void* arg) {
  auto* f = static_cast<Forker*>(arg);
  f->child = kpc::fork_or_broken();
  if (f->child == 0) _exit(3);
  kpc::send_byte(f->forked.write.get());
  kpc::recv_byte(f->done.read.get(), 10000);  // stay alive until told
  return nullptr;
}
// /proc/self/task/<main thread>/children lists that thread's children only.
bool listed_as_main_threads_child(pid_t child) {
  const std::string path = "/proc/self/task/" + std::to_string(getpid()) + "/children";
  for (int i = 0; i < 5000; ++i) {
    std::string text = " " + kpc::read_text(path).value_or("");
    if (text.find(" " + std::to_string(child) + " ") != std::string::npos) return true;
    usleep(1000);
  }
  return false;
}

std::string try_wait(pid_t pid, int options) {
  int st = 0;
  pid_t r = waitpid(pid, &st, options);
  if (r < 0) return kpc::errno_name(errno);
  return r == 0 ? "none" : kpc::describe_wait_status(st);
}
}  // namespace

int probe_main(kpc::Probe&) {
  // 1. A second thread forks a child and stays alive.
  Forker f;
  pthread_t t;
  KPC_ERRNUM(pthread_create(&t, nullptr, forker, &f));
  KPC_CHECK(kpc::recv_byte(f.forked.read.get(), 5000).has_value());
  KPC_CHECK(kpc::wait_for_state(f.child, 'Z', 5000) == 'Z');
  // 2. The main thread: with __WNOTHREAD nothing; without, the child.
  kpc::observe("forker_alive.main_wnothread", try_wait(f.child, WNOHANG | __WNOTHREAD));
  kpc::observe("forker_alive.main_plain", try_wait(f.child, 0));
  kpc::send_byte(f.done.write.get());
  KPC_ERRNUM(pthread_join(t, nullptr));
  // 3. A thread forks and exits: its child is handed to a live thread.
  Forker g;
  KPC_ERRNUM(pthread_create(&t, nullptr, forker, &g));
  KPC_CHECK(kpc::recv_byte(g.forked.read.get(), 5000).has_value());
  kpc::send_byte(g.done.write.get());
  KPC_ERRNUM(pthread_join(t, nullptr));
  // pthread_join returns when the thread's TID is cleared, before its exit
  // has reparented its children: wait until the main thread lists it.
  KPC_CHECK_MSG(listed_as_main_threads_child(g.child), "the exited thread's child never moved to the main thread");
  KPC_CHECK(kpc::wait_for_state(g.child, 'Z', 5000) == 'Z');
  kpc::observe("forker_exited.main_wnothread", try_wait(g.child, __WNOTHREAD));
  return 0;
}
