// pidns_proc_shows_ns_pids: /proc numbers processes as the PID namespace of
// the proc mount sees them, not as the reader's namespace does. In a new
// PID namespace, the inherited /proc still shows the outer numbers
// (/proc/self is not the caller's getpid()); a proc mounted inside shows the
// namespace's: /proc/self is 1 for its init, and only its members are listed.
#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "kpc/probe.h"
#include "kpc/proc.h"

namespace {
std::string self_link() {
  char buf[32] = {};
  ssize_t n = readlink("/proc/self", buf, sizeof buf - 1);
  return n < 0 ? kpc::errno_name(errno) : std::string(buf, static_cast<size_t>(n));
}
int numeric_entries() {
  DIR* d = opendir("/proc");
  KPC_CHECK(d != nullptr);
  int n = 0;
  while (dirent* e = readdir(d))
    if (e->d_name[0] >= '1' && e->d_name[0] <= '9') ++n;
  closedir(d);
  return n;
}
}  // namespace

int probe_main(kpc::Probe&) {
  kpc::skip_unless_root_is_mount_point();  // the namespace's init mounts its own /proc
  kpc::Child init = kpc::fork_child_in_new_pidns(
      [] {
        // 1. The inherited /proc: the outer namespace's numbers.
        kpc::observe("old_proc.self_is_getpid", self_link() == std::to_string(getpid()));
        // 2. A proc of this namespace, in this mount namespace only.
        KPC_SYS(mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr));
        KPC_SYS(mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr));
        kpc::observe("new_proc.self", self_link());
        kpc::Pipe go = kpc::Pipe::make(O_CLOEXEC), ready = kpc::Pipe::make(O_CLOEXEC);
        kpc::Child member = kpc::fork_child([&] {
          kpc::observe("member.new_proc.self", self_link());
          kpc::send_byte(ready.write.get());
          kpc::recv_byte(go.read.get(), 5000);
        });
        KPC_CHECK(kpc::recv_byte(ready.read.get(), 5000).has_value());
        kpc::observe("new_proc.processes_listed", numeric_entries());
        kpc::send_byte(go.write.get());
        member.wait();
      },
      CLONE_NEWNS);
  kpc::observe("init.status", kpc::describe_wait_status(init.wait()));
  return 0;
}
