// fuse_request_timeout_mitigation: since 6.14 the kernel can abort a FUSE
// connection whose request went unanswered too long
// (/proc/sys/fs/fuse/default_request_timeout, seconds; at least 15, checked
// every 15 s). Does that turn the flush-on-exit deadlock of
// fuse_self_served_exit into an exit that completes?
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>

#include "kpc/probe.h"
#include "kpc/proc.h"
#include "kpc/testfs.h"

namespace {

const char* const kSysctl = "/proc/sys/fs/fuse/default_request_timeout";

// Sets the global sysctl and restores it: other FUSE mounts made while it is
// set get the timeout too, so it is set only around our own mount.
class ScopedSysctl {
 public:
  ScopedSysctl(const char* path, const std::string& value) : path_(path) {
    old_ = kpc::read_text(path).value_or("0");
    write_value(value);
  }
  ~ScopedSysctl() { write_value(old_); }
  ScopedSysctl(const ScopedSysctl&) = delete;
  ScopedSysctl& operator=(const ScopedSysctl&) = delete;

 private:
  void write_value(const std::string& v) {
    kpc::Fd fd(KPC_SYS(open(path_, O_WRONLY | O_CLOEXEC)));
    KPC_SYS(write(fd.get(), v.data(), v.size()));
  }
  const char* path_;
  std::string old_;
};

}  // namespace

int probe_main(kpc::Probe&) {
  if (access(kSysctl, F_OK) != 0) {
    kpc::observe("request_timeout.supported", false);  // no such mitigation on this kernel
    return 0;
  }
  kpc::observe("request_timeout.supported", true);
  kpc::testfs::enter_private_mount_namespace();
  kpc::TempDir dir("fuse");
  kpc::Pipe ready = kpc::Pipe::make(O_CLOEXEC), go = kpc::Pipe::make(O_CLOEXEC);
  kpc::Child server;
  {
    // 1. The shortest timeout the kernel accepts (it raises 1 to 15 s),
    //    in force while the child mounts and the connection initialises.
    ScopedSysctl timeout(kSysctl, "1");
    server = kpc::fork_child([&] {
      auto fs = kpc::testfs::Server::start(dir.path(), kpc::testfs::Serve::thread);
      // Its waiters will be released by the kernel: not a hang to report.
      kpc::announce_fuse_connection(fs->connection(), 15);
      struct stat st;
      KPC_SYS(stat(fs->file_path().c_str(), &st));  // INIT has been answered
      KPC_SYS(open(fs->file_path().c_str(), O_RDWR));
      fs->abandon();
      kpc::send_byte(ready.write.get());
      kpc::recv_byte(go.read.get(), 10000);
      // 2. Exit holding the file: the deadlock of fuse_self_served_exit.
      _exit(0);
    });
    ready.write.reset();
    kpc::expect_ready(server, ready.read.get(), 5000, "the serving process never got ready");
  }
  auto start = std::chrono::steady_clock::now();
  kpc::send_byte(go.write.get());
  // 3. Stuck for the timeout plus up to one check period, then aborted.
  auto st = server.wait_for(45000);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  kpc::observe("exit.completed_within_45s", st.has_value());
  kpc::note("exit_seconds", std::to_string(secs));
  if (st) {
    kpc::observe("exit.status", kpc::describe_wait_status(*st));
  } else {
    kpc::note("abort", kpc::testfs::abort_mount(dir.path()));
    server.wait();
  }
  return 0;
}
