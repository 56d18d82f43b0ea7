// pidns_join_initless_via_pid_for_children: after unshare(CLONE_NEWPID) the
// new namespace has no process yet. Another process opens the unsharer's
// /proc/PID/ns/pid_for_children, setns()es into it and forks: its child is
// then PID 1 of the namespace, and the unsharer's own first child is not.
// (kselftest pid_namespace/pidns_init_via_setns.c.) Where the link has no
// target before the first process (namespaces(7)), the join fails at open().
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <string>

#include "kpc/probe.h"

int probe_main(kpc::Probe&) {
  // Everything happens below a child, so the probe keeps its namespaces.
  kpc::Child unsharer = kpc::fork_child([] {
    kpc::Pipe go = kpc::Pipe::make(O_CLOEXEC);       // unsharer -> joiner: the namespace exists
    kpc::Pipe report = kpc::Pipe::make(O_CLOEXEC);   // joiner's child -> unsharer: its PID (or -errno)
    kpc::Pipe release = kpc::Pipe::make(O_CLOEXEC);  // unsharer -> joiner's child: you may exit
    pid_t me = getpid();

    // 1. The joiner is forked first, so it stays in the original namespace.
    kpc::Child joiner = kpc::fork_child([&] {
      go.write.reset();
      release.write.reset();
      if (!kpc::recv_byte(go.read.get(), 5000)) _exit(0);  // the unsharer skipped (no privilege) or failed
      // 3. Join the init-less namespace through the unsharer's link.
      std::string link = "/proc/" + std::to_string(me) + "/ns/pid_for_children";
      int fd = open(link.c_str(), O_RDONLY | O_CLOEXEC);
      kpc::observe_result("join.open_pid_for_children", fd, fd < 0 ? errno : 0);
      if (fd < 0) {
        kpc::send_int(report.write.get(), -errno);
        return;
      }
      KPC_OBSERVE_CALL("join.setns", setns(fd, CLONE_NEWPID));
      close(fd);
      // 4. The joiner's next child is the namespace's first process.
      kpc::Child first = kpc::fork_child([&] {
        kpc::send_int(report.write.get(), getpid());
        kpc::recv_byte(release.read.get(), 10000);  // stay the init while the unsharer forks
      });
      first.wait();
    });
    go.read.reset();
    release.read.reset();

    // 2. Create the namespace (no process in it yet) and tell the joiner.
    if (unshare(CLONE_NEWPID) != 0) {
      if (errno == EPERM) kpc::skip("unshare(CLONE_NEWPID) needs CAP_SYS_ADMIN (EPERM)");
      kpc::broken("unshare(CLONE_NEWPID): " + kpc::errno_name(errno));
    }
    kpc::send_byte(go.write.get());
    auto got = kpc::recv_int(report.read.get(), 5000);
    KPC_CHECK_MSG(got.has_value(), "the joiner never reported");
    if (*got > 0) kpc::observe("joiner_child.pid", static_cast<int64_t>(*got));

    // 5. The unsharer's own first child: PID 1 only if nobody joined first.
    kpc::Child mine = kpc::fork_child([] { kpc::observe("unsharer_first_child.pid", static_cast<int64_t>(getpid())); });
    mine.wait();
    release.write.reset();
    kpc::observe("joiner.status", kpc::describe_wait_status(joiner.wait()));
  });
  kpc::observe("status", kpc::describe_wait_status(unsharer.wait()));
  return 0;
}
