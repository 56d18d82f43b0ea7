// zombie_leader_with_live_thread (story 002's "<defunct> with a live
// thread"): the main thread of a process exits with the exit system call
// (not exit_group) while another thread runs. The leader shows as a zombie
// in /proc/PID/status, the process is not reapable (waitpid WNOHANG gives
// 0), and it ends only when the last thread exits.
#include <fcntl.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kpc/probe.h"
#include "kpc/proc.h"

namespace {
int g_release_fd = -1;
void* worker(void*) {
  kpc::recv_byte(g_release_fd, 10000);
  syscall(SYS_exit_group, 5);
  return nullptr;
}

}  // namespace

int probe_main(kpc::Probe&) {
  kpc::Pipe release = kpc::Pipe::make(O_CLOEXEC);
  kpc::Child child = kpc::fork_child([&] {
    g_release_fd = release.read.get();
    pthread_t t;
    if (pthread_create(&t, nullptr, worker, nullptr) != 0) _exit(90);
    syscall(SYS_exit, 0);  // only the main thread ends
  });
  // 1. The leader becomes a zombie while the worker thread lives.
  kpc::observe("leader.state", std::string(1, kpc::wait_for_state(child.pid(), 'Z')));
  auto st = kpc::read_status(child.pid());
  kpc::observe("process.threads", st ? st->threads : -1);
  int status;
  kpc::observe("waitpid_wnohang", static_cast<int64_t>(waitpid(child.pid(), &status, WNOHANG)));
  // 2. Release the worker: the process exits with its exit_group status.
  kpc::send_byte(release.write.get());
  kpc::observe("status", kpc::describe_wait_status(child.wait()));
  return 0;
}
