// clone_into_cgroup_places_child: clone3(CLONE_INTO_CGROUP) (5.7) creates
// the child directly in the cgroup its `cgroup` descriptor names -- no
// window in which it runs in the parent's cgroup -- and leaves the parent
// where it was.
#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "kpc/cgroup2.h"
#include "kpc/pidfd.h"
#include "kpc/probe.h"
#include "kpc/proc.h"

namespace {
std::string own_cgroup() {
  auto t = kpc::read_text("/proc/self/cgroup").value_or("");
  auto at = t.find("0::");
  return at == std::string::npos ? "" : t.substr(at + 3, t.find('\n', at) - at - 3);
}
}  // namespace

int probe_main(kpc::Probe&) {
  auto cg = kpc::cgroup2::Scratch::create("into");
  cg->make("target");
  kpc::Fd dir(KPC_SYS(open(cg->path_of("target").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)));
  std::string before = own_cgroup();
  kpc::Pipe report = kpc::Pipe::make(O_CLOEXEC);
  clone_args a{};
  a.flags = 1ULL << 33;  // CLONE_INTO_CGROUP
  a.exit_signal = SIGCHLD;
  a.cgroup = static_cast<uint64_t>(dir.get());
  long pid = syscall(kpc::pidfd::kSysClone3, &a, sizeof a);
  if (pid == 0) {
    std::string mine = own_cgroup();
    std::string target = cg->path_of("target");
    kpc::observe("child.cgroup_is_target", mine.ends_with(target.substr(target.rfind("/kpc-into."))));
    _exit(0);
  }
  if (pid < 0 && errno == ENOSYS) kpc::skip("no clone3 (Linux 5.3)");
  kpc::observe("clone3_into_cgroup", pid < 0 ? kpc::errno_name(errno) : "ok");
  if (pid > 0) {
    int st;
    KPC_SYS(waitpid(static_cast<pid_t>(pid), &st, 0));
    kpc::observe("child.status", kpc::describe_wait_status(st));
  }
  kpc::observe("parent.stayed", own_cgroup() == before);
  return 0;
}
