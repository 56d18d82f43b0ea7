// ns_get_parent_of_pid_namespace: ioctl(NS_GET_PARENT) on a PID namespace
// file gives its parent namespace -- unless the parent is outside the
// caller's own namespace (EPERM), as at the top of the hierarchy or when a
// member asks about its own namespace. NS_GET_NSTYPE says CLONE_NEWPID.
#include <fcntl.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "kpc/probe.h"

namespace {
ino_t inode_of(int fd) {
  struct stat st {};
  KPC_SYS(fstat(fd, &st));
  return st.st_ino;
}
// "EPERM", or "ours" when the parent is the namespace `expect` is in, or "other".
std::string parent_of(int nsfd, int expect_fd) {
  int p = ioctl(nsfd, NS_GET_PARENT);
  if (p < 0) return kpc::errno_name(errno);
  std::string r = inode_of(p) == inode_of(expect_fd) ? "ours" : "other";
  close(p);
  return r;
}
}  // namespace

int probe_main(kpc::Probe& p) {
  kpc::Fd mine(KPC_SYS(open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC)));
  kpc::observe("nstype_is_newpid", ioctl(mine.get(), NS_GET_NSTYPE) == CLONE_NEWPID);
  // 1. Our own namespace: in the host flavor it is the initial one.
  if (p.flavor() == "host") kpc::observe("own_namespace.parent", parent_of(mine.get(), mine.get()));
  // 2. A child namespace's parent is ours; asked from inside, it is out of reach.
  kpc::Pipe ready = kpc::Pipe::make(O_CLOEXEC), go = kpc::Pipe::make(O_CLOEXEC);
  kpc::Child init = kpc::fork_child_in_new_pidns([&] {
    kpc::Fd own(KPC_SYS(open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC)));
    kpc::observe("inside.own_namespace.parent", parent_of(own.get(), own.get()));
    kpc::send_byte(ready.write.get());
    kpc::recv_byte(go.read.get(), 5000);
  });
  KPC_CHECK(kpc::recv_byte(ready.read.get(), 5000).has_value());
  kpc::Fd child_ns(KPC_SYS(open(("/proc/" + std::to_string(init.pid()) + "/ns/pid").c_str(), O_RDONLY | O_CLOEXEC)));
  kpc::observe("child_namespace.parent", parent_of(child_ns.get(), mine.get()));
  kpc::send_byte(go.write.get());
  kpc::observe("init.status", kpc::describe_wait_status(init.wait()));
  return 0;
}
