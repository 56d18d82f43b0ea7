// pidfd_fdinfo_shows_pids: /proc/PID/fdinfo/FD of a pidfd has "Pid:" and
// "NSpid:" lines: the process's PID in the namespace of the proc mount
// read through, and at every level below it. A reader whose proc belongs to
// a sibling namespace (the process is not visible there) sees 0; once the
// process is reaped, -1.
#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <sstream>
#include <string>

#include "kpc/pidfd.h"
#include "kpc/probe.h"
#include "kpc/proc.h"

namespace {
// The value of `field` ("Pid:", "NSpid:") in the fdinfo, tabs as spaces; "missing".
std::string fdinfo_field(int fd, const std::string& field) {
  auto text = kpc::read_text("/proc/self/fdinfo/" + std::to_string(fd));
  KPC_CHECK(text.has_value());
  std::istringstream in(*text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field, 0) != 0) continue;
    std::istringstream v(line.substr(field.size()));
    std::string word, out;
    while (v >> word) out += (out.empty() ? "" : " ") + word;
    return out;
  }
  return "missing";
}
}  // namespace

int probe_main(kpc::Probe&) {
  kpc::skip_unless_root_is_mount_point();  // the namespace's init mounts its own /proc
  // 1. A process that is PID 1 of a namespace of its own, and a pidfd for it.
  kpc::Pipe go = kpc::Pipe::make(O_CLOEXEC);
  kpc::Child a = kpc::fork_child_in_new_pidns([&] { go.wait_for_go(); });
  go.read.reset();
  kpc::Fd pidfd = kpc::pidfd::open_or_skip(a.pid());
  // 2. Read through our proc: its PID here, then 1 in its own namespace.
  kpc::observe("live.pid_is_child", fdinfo_field(pidfd.get(), "Pid:") == std::to_string(a.pid()));
  kpc::observe("live.nspid_is_here_and_1", fdinfo_field(pidfd.get(), "NSpid:") == std::to_string(a.pid()) + " 1");
  // 3. Read through the proc of a sibling namespace.
  kpc::Child b = kpc::fork_child_in_new_pidns(
      [&] {
        KPC_SYS(mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr));
        KPC_SYS(mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr));
        kpc::observe("sibling.pid", fdinfo_field(pidfd.get(), "Pid:"));
        kpc::observe("sibling.nspid", fdinfo_field(pidfd.get(), "NSpid:"));
      },
      CLONE_NEWNS);
  b.wait();
  // 4. Exited, not yet reaped; then reaped.
  go.write.reset();
  KPC_CHECK(kpc::wait_for_state(a.pid(), 'Z') == 'Z');
  kpc::observe("zombie.pid_is_child", fdinfo_field(pidfd.get(), "Pid:") == std::to_string(a.pid()));
  a.wait();
  kpc::observe("reaped.pid", fdinfo_field(pidfd.get(), "Pid:"));
  kpc::observe("reaped.nspid", fdinfo_field(pidfd.get(), "NSpid:"));
  return 0;
}
