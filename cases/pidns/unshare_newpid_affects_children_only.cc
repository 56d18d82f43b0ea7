// unshare_newpid_affects_children_only: unshare(CLONE_NEWPID) does not move
// the caller; only its next child is PID 1 of the new namespace. A second
// unshare(CLONE_NEWPID) before that is refused, and CLONE_NEWPID cannot be
// combined with CLONE_THREAD.
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kpc/probe.h"

namespace {
// The link text, or the errno name when readlink fails.
std::string ns_link(const char* which) {
  char buf[64] = {};
  ssize_t n = readlink((std::string("/proc/self/ns/") + which).c_str(), buf, sizeof buf - 1);
  if (n < 0) return kpc::errno_name(errno);
  return std::string(buf, static_cast<size_t>(n));
}
}  // namespace

int probe_main(kpc::Probe&) {
  // Everything happens in a child, so the probe itself keeps its namespace.
  kpc::Child child = kpc::fork_child([] {
    pid_t before = getpid();
    // 1. unshare: the caller stays where it is.
    if (unshare(CLONE_NEWPID) != 0) {
      if (errno == EPERM) kpc::skip("unshare(CLONE_NEWPID) needs CAP_SYS_ADMIN (EPERM)");
      kpc::broken("unshare(CLONE_NEWPID): " + kpc::errno_name(errno));
    }
    kpc::observe("caller.pid_unchanged", getpid() == before);
    // namespaces(7): pid_for_children has no target until the namespace's
    // first process exists.
    std::string before_child = ns_link("pid_for_children");
    kpc::observe("caller.pid_for_children_before_first_child",
                 before_child.starts_with("pid:") ? std::string("a namespace") : before_child);
    // 2. A second unshare(CLONE_NEWPID) before any child: refused.
    long rc = unshare(CLONE_NEWPID);
    kpc::observe_result("second_unshare", rc, errno);
    // 3. The next child is PID 1 there.
    kpc::Child first = kpc::fork_child([] { kpc::observe("first_child.pid", static_cast<int64_t>(getpid())); });
    first.wait();
    kpc::observe("caller.pid_for_children_differs", ns_link("pid") != ns_link("pid_for_children"));
    // 4. CLONE_NEWPID with CLONE_THREAD: refused.
    long t =
        syscall(SYS_clone, CLONE_NEWPID | CLONE_THREAD | CLONE_SIGHAND | CLONE_VM, nullptr, nullptr, nullptr, nullptr);
    if (t == 0) _exit(0);  // never expected
    kpc::observe_result("clone_newpid_thread", t, errno);
  });
  kpc::observe("status", kpc::describe_wait_status(child.wait()));
  return 0;
}
