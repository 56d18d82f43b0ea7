// fuse_noflush_skips_flush: a FUSE server that answers OPEN with
// FOPEN_NOFLUSH (FUSE 7.35, Linux 5.16) tells the kernel not to send FLUSH
// when the file is closed. close() then does not wait for the server, and
// a process that serves its own mount can exit holding such a file: the
// server-side mitigation of story 002's flush-on-exit deadlock.
//   variant close:            close() while the server would never answer a
//                             FLUSH: does FLUSH come, does close() wait?
//   variant self_served_exit: fuse_self_served_exit with the flag: does the
//                             exit complete?
#include <fcntl.h>
#include <sys/mount.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "kpc/probe.h"
#include "kpc/testfs.h"

using kpc::testfs::Answer;
using kpc::testfs::Op;

namespace {

void close_variant(const std::string& mountpoint) {
  // 1. The server (a separate process) never answers FLUSH, and marks its
  //    opens FOPEN_NOFLUSH.
  auto fs = kpc::testfs::Server::start(mountpoint, kpc::testfs::Serve::process);
  fs->set_flush(Answer::never);
  fs->set_noflush(true);
  int fd = KPC_SYS(open(fs->file_path().c_str(), O_RDWR));
  // 2. close() in a thread, which says when it returned.
  kpc::Pipe done = kpc::Pipe::make(O_CLOEXEC);
  std::atomic<int> close_errno{-1};
  std::thread closer([&] {
    int rc = close(fd);
    close_errno = rc == 0 ? 0 : errno;
    kpc::send_byte(done.write.get());
  });
  // 3. Whichever comes first: close() returns, or a FLUSH reaches the
  //    server (then close() waits for an answer that will never come).
  bool returned = false;
  const int64_t deadline = kpc::monotonic_ms() + 5000;
  while (!returned && fs->count(Op::FLUSH) == 0 && kpc::monotonic_ms() < deadline)
    returned = kpc::recv_byte(done.read.get(), 1).has_value();
  kpc::observe("close.flush_requests", fs->count(Op::FLUSH));
  kpc::observe("close.waited_for_flush", !returned);
  if (returned) {
    // RELEASE is sent after the close, in the background.
    kpc::observe("close.release_sent", fs->wait_count(Op::RELEASE, 1, 2000));
  } else {
    // 4. Free the waiting close(): the server's death ends the connection.
    fs->kill_server();
    KPC_CHECK_MSG(kpc::recv_byte(done.read.get(), 5000).has_value(), "close() still waits after the server died");
  }
  closer.join();
  kpc::observe("close.result", close_errno == 0 ? std::string("ok") : kpc::errno_name(close_errno));
}

// As fuse_self_served_exit (file below /dev/fuse), with FOPEN_NOFLUSH.
[[noreturn]] void serve_open_and_exit(const std::string& mountpoint, int ready_fd) {
  int placeholder = KPC_SYS(open("/dev/null", O_RDONLY | O_CLOEXEC));
  auto fs = kpc::testfs::Server::start(mountpoint, kpc::testfs::Serve::thread);
  fs->set_noflush(true);
  KPC_SYS(close(placeholder));
  int file = KPC_SYS(open(fs->file_path().c_str(), O_RDWR));
  KPC_CHECK_MSG(file < fs->devfuse_fd(), "file fd " + std::to_string(file) + " not below /dev/fuse");
  fs->exit_holding_files(ready_fd);
}

}  // namespace

int probe_main(kpc::Probe& p) {
  bool exit_variant = p.variant_is("self_served_exit", "close");
  if (!kpc::testfs::Server::can_noflush())
    kpc::skip("libfuse " + kpc::testfs::Server::libfuse_version() +
              " cannot send FOPEN_NOFLUSH (its fuse_file_info has no noflush)");
  kpc::testfs::enter_private_mount_namespace();
  kpc::TempDir dir("fuse");
  if (!exit_variant) {
    close_variant(dir.path());
    return 0;
  }
  kpc::Pipe ready = kpc::Pipe::make(O_CLOEXEC);
  kpc::Child server(kpc::fork_or_broken());
  if (server.pid() == 0) serve_open_and_exit(dir.path(), ready.write.get());
  ready.write.reset();
  kpc::expect_ready(server, ready.read.get(), 5000, "the serving process never got ready");
  // Under kpc-launch a stuck exit is a hang (with stacks), recovered by the
  // launcher, long before this gives up.
  if (auto st = server.wait_for(10000)) {
    kpc::observe("exit.completed", true);
    kpc::observe("exit.status", kpc::describe_wait_status(*st));
    // Nobody serves the mount any more. Where kpc's supervisor holds a
    // /dev/fuse descriptor of it (recovery without root), the connection
    // is still alive and a request would wait: detach the mount (no
    // request) before the directory is removed.
    umount2(dir.path().c_str(), MNT_DETACH);
    return 0;
  }
  kpc::observe("exit.completed", false);
  kpc::note("abort", kpc::testfs::abort_mount(dir.path()));
  server.wait();
  return 0;
}
