// fuse_self_served_exit: a process serves its own FUSE mount from a thread
// and exits while holding a file of that mount open. Exit kills the serving
// thread; the last thread to leave closes the file, and fuse_flush sends
// FLUSH to a server nobody runs any more. Does the exit complete?
//
// Two descriptor orders: the file below the /dev/fuse descriptor (the order
// the 2022 LKML discussion blamed: "the fuse server file descriptor was
// being closed after the file descriptor into the fuse filesystem") and
// above it. Observed on 6.18: both hang. The last fput() of /dev/fuse is
// deferred to task_work, which runs after exit_files(), while ->flush runs
// synchronously in filp_close(): the order does not matter.
#include <fcntl.h>
#include <unistd.h>

#include "kpc/probe.h"
#include "kpc/proc.h"
#include "kpc/testfs.h"

namespace {

// The exiting process: serve, open the file, exit holding it.
[[noreturn]] void serve_open_and_exit(const std::string& mountpoint, bool file_below, int ready_fd) {
  // 1. Keep the lowest free descriptor for the file when it must be below.
  int placeholder = KPC_SYS(open("/dev/null", O_RDONLY | O_CLOEXEC));
  auto fs = kpc::testfs::Server::start(mountpoint, kpc::testfs::Serve::thread);
  KPC_SYS(close(placeholder));
  int file = KPC_SYS(open(fs->file_path().c_str(), O_RDWR));
  if (!file_below) {
    int high = KPC_SYS(fcntl(file, F_DUPFD, fs->devfuse_fd() + 1));
    KPC_SYS(close(file));
    file = high;
  }
  KPC_CHECK_MSG((file < fs->devfuse_fd()) == file_below,
                "file fd " + std::to_string(file) + ", /dev/fuse fd " + std::to_string(fs->devfuse_fd()));
  kpc::note("file_fd", file);
  kpc::note("devfuse_fd", fs->devfuse_fd());
  // 2. Exit (exit_group: the serving thread dies first) with the file open.
  fs->exit_holding_files(ready_fd);
}

}  // namespace

int probe_main(kpc::Probe& p) {
  bool file_below = p.variant_is("file_fd_below_devfuse", "file_fd_above_devfuse");
  // With the file above /dev/fuse, the question is whether the process's
  // /dev/fuse is released before the file's FLUSH: a /dev/fuse descriptor
  // held by the supervisor (its only recovery without privilege) would
  // keep it alive and answer the question itself. Below, the file is
  // closed first either way.
  if (!file_below)
    kpc::testfs::skip_unless_abort_recovery(
        "this variant asks whether the kernel releases the exiting process's "
        "/dev/fuse before the file's FLUSH");
  kpc::testfs::enter_private_mount_namespace();
  kpc::TempDir dir("fuse");
  kpc::Pipe ready = kpc::Pipe::make(O_CLOEXEC);
  kpc::Child server(kpc::fork_or_broken());
  if (server.pid() == 0) serve_open_and_exit(dir.path(), file_below, ready.write.get());
  ready.write.reset();
  kpc::expect_ready(server, ready.read.get(), 5000, "the serving process never got ready");

  // 3. Does its exit complete? Under kpc-launch a stuck exit is reported as
  //    a hang (with the kernel stack) long before this wait gives up.
  if (auto st = server.wait_for(10000)) {
    kpc::observe("exit.completed", true);
    kpc::observe("exit.status", kpc::describe_wait_status(*st));
    return 0;
  }
  // Run by hand: say where it is stuck, then free it (abort the connection).
  kpc::observe("exit.completed", false);
  for (pid_t tid : kpc::list_tasks(server.pid()))  // the leader is a zombie; the stuck one is another thread
    if (auto stack =
            kpc::read_text("/proc/" + std::to_string(server.pid()) + "/task/" + std::to_string(tid) + "/stack"))
      if (!stack->empty()) kpc::note("stuck_stack." + std::to_string(tid), *stack);
  kpc::note("abort", kpc::testfs::abort_mount(dir.path()));
  server.wait();
  return 0;
}
