// pidns_pid_max_per_namespace: since 6.14 each PID namespace has its own
// kernel.pid_max (/proc/sys/kernel/pid_max as seen through a proc mounted
// in it). Setting it in a child namespace leaves the parent's alone; PIDs
// there wrap below it; and a nested namespace cannot get past an ancestor's
// limit: once the outer namespace has no PID left below its pid_max, a fork
// in the inner one fails (EAGAIN) even though the inner limit is higher.
// (kselftest pid_namespace/pid_max.c.) Before 6.14 pid_max is global, and
// writing it would change the whole machine's: the probe skips there.
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "kpc/probe.h"
#include "kpc/proc.h"

namespace {
bool per_namespace_pid_max() {
  utsname u{};
  uname(&u);
  int major = 0, minor = 0;
  sscanf(u.release, "%d.%d", &major, &minor);
  return major > 6 || (major == 6 && minor >= 14);
}
long read_long(const char* path) { return std::stol(kpc::read_text(path).value_or("-1")); }
std::string write_long(const char* path, long v) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return kpc::errno_name(errno);
  std::string t = std::to_string(v);
  ssize_t n = write(fd, t.data(), t.size());
  int err = errno;
  close(fd);
  return n == static_cast<ssize_t>(t.size()) ? "ok" : kpc::errno_name(err);
}
// The kernel's minimum pid_max: max(RESERVED_PIDS + 1, 8 * possible CPUs).
long minimum_pid_max() {
  std::string possible = kpc::read_text("/sys/devices/system/cpu/possible").value_or("0");
  long cpus = 0;
  for (size_t at = 0; at < possible.size();) {
    long lo = std::stol(possible.substr(at)), hi = lo;
    size_t dash = possible.find('-', at), comma = possible.find(',', at);
    if (dash != std::string::npos && (comma == std::string::npos || dash < comma))
      hi = std::stol(possible.substr(dash + 1));
    cpus += hi - lo + 1;
    if (comma == std::string::npos) break;
    at = comma + 1;
  }
  return std::max(301L, 8 * cpus);
}
void mount_own_proc() {
  KPC_SYS(mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr));
  KPC_SYS(mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr));
}
}  // namespace

int probe_main(kpc::Probe&) {
  kpc::skip_unless_root_is_mount_point();  // the namespace's init mounts its own /proc
  if (!per_namespace_pid_max())
    kpc::skip("before 6.14 kernel.pid_max is global: writing it would change the whole machine's limit");
  const long outer_before = read_long("/proc/sys/kernel/pid_max");
  const long limit = minimum_pid_max() + 50;
  kpc::Child init = kpc::fork_child_in_new_pidns(
      [&] {
        mount_own_proc();
        // 1. Our own pid_max.
        kpc::observe("set_pid_max", write_long("/proc/sys/kernel/pid_max", limit));
        kpc::observe("reads_back", read_long("/proc/sys/kernel/pid_max") == limit);
        // 2. PIDs wrap below it.
        KPC_CHECK(write_long("/proc/sys/kernel/ns_last_pid", limit - 2) == "ok");
        std::vector<pid_t> got;
        for (int i = 0; i < 2; ++i) got.push_back(kpc::fork_child([] {}).release());
        for (pid_t p : got) waitpid(p, nullptr, 0);
        kpc::observe("last_below_limit", got[0] == limit - 1);
        kpc::observe("next_wrapped_below_limit", got[1] < limit);
        // 3. Fill every PID we may hand out, then a nested namespace with a
        //    higher limit tries to fork.
        kpc::Pipe hold = kpc::Pipe::make(O_CLOEXEC);
        std::vector<kpc::Child> fillers;
        kpc::Pipe inner_ready = kpc::Pipe::make(O_CLOEXEC), inner_go = kpc::Pipe::make(O_CLOEXEC);
        kpc::Child inner = kpc::fork_child_in_new_pidns(
            [&] {
              mount_own_proc();
              kpc::observe("inner.set_higher_pid_max", write_long("/proc/sys/kernel/pid_max", limit + 100));
              kpc::send_byte(inner_ready.write.get());
              kpc::recv_byte(inner_go.read.get(), 20000);
              pid_t c = fork();
              if (c == 0) _exit(0);
              kpc::observe("inner.fork_when_outer_full", c < 0 ? kpc::errno_name(errno) : "ok");
              if (c > 0) waitpid(c, nullptr, 0);
            },
            CLONE_NEWNS);
        KPC_CHECK(kpc::recv_byte(inner_ready.read.get(), 5000).has_value());
        for (;;) {
          pid_t c = fork();
          if (c < 0) break;  // EAGAIN: no PID left below our limit
          if (c == 0) {
            hold.write.reset();
            kpc::recv_byte(hold.read.get(), 30000);
            _exit(0);
          }
          fillers.emplace_back(c);
          KPC_CHECK(fillers.size() < static_cast<size_t>(limit));
        }
        kpc::observe("outer.fork_when_full", kpc::errno_name(errno));
        kpc::send_byte(inner_go.write.get());
        inner.wait();
        hold.write.reset();
        for (auto& f : fillers) f.wait();
      },
      CLONE_NEWNS);
  kpc::observe("init.status", kpc::describe_wait_status(init.wait()));
  kpc::observe("outer_pid_max_unchanged", read_long("/proc/sys/kernel/pid_max") == outer_before);
  return 0;
}
