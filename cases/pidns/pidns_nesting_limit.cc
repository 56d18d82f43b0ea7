// pidns_nesting_limit: PID namespaces nest at most 32 levels below the
// initial one (MAX_PID_NS_LEVEL). Each process here creates a child in a
// new PID namespace, until the kernel refuses; the deepest reports how many
// levels it got and the errno of the refusal.
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kpc/probe.h"

namespace {
[[noreturn]] void descend(int created, int report_fd) {
  long pid = syscall(SYS_clone, CLONE_NEWPID | SIGCHLD, 0, 0, 0, 0);
  if (pid == 0) descend(created + 1, report_fd);
  if (pid < 0) {
    int err = errno;
    kpc::send_int(report_fd, created);
    kpc::send_int(report_fd, err);
    _exit(0);
  }
  int st = 0;
  while (waitpid(static_cast<pid_t>(pid), &st, 0) < 0 && errno == EINTR) {}
  _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 1);
}
}  // namespace

int probe_main(kpc::Probe&) {
  kpc::Pipe report = kpc::Pipe::make(O_CLOEXEC);
  kpc::Child top = kpc::fork_child([&] { descend(0, report.write.get()); });
  report.write.reset();
  auto created = kpc::recv_int(report.read.get(), 20000);
  auto err = kpc::recv_int(report.read.get(), 1000);
  KPC_CHECK_MSG(created && err, "the deepest process never reported");
  if (*created == 0 && *err == EPERM) kpc::skip("clone(CLONE_NEWPID) needs CAP_SYS_ADMIN (EPERM)");
  kpc::observe("levels_created", *created);
  kpc::observe("refusal", kpc::errno_name(*err));
  kpc::observe("status", kpc::describe_wait_status(top.wait()));
  return 0;
}
