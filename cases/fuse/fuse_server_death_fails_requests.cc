// fuse_server_death_fails_requests: when the FUSE server dies (its
// /dev/fuse descriptor was the connection's last), the kernel ends the
// connection: a request the server had received fails at once, and every
// later request on the mount fails too. Which errno each gets is observed.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kpc/probe.h"
#include "kpc/testfs.h"

using kpc::testfs::Answer;
using kpc::testfs::Op;

int probe_main(kpc::Probe&) {
  // 1. A private mount namespace; the server is a separate process.
  kpc::testfs::enter_private_mount_namespace();
  kpc::TempDir dir("fuse");
  auto fs = kpc::testfs::Server::start(dir.path(), kpc::testfs::Serve::process);
  const std::string file = fs->file_path();
  kpc::Fd open_before(KPC_SYS(open(file.c_str(), O_RDWR | O_CLOEXEC)));

  // 2. The server keeps the next READ unanswered; a child waits in read().
  fs->set_read(Answer::never);
  kpc::Pipe result = kpc::Pipe::make(O_CLOEXEC);
  kpc::Child reader = kpc::fork_child([&] {
    char buf[16];
    ssize_t n = read(open_before.get(), buf, sizeof buf);
    kpc::send_int(result.write.get(), n < 0 ? errno : 0);
  });
  KPC_CHECK_MSG(fs->wait_unanswered(1, 2000), "the server never received the reader's READ");

  // 3. Kill the server: the pending READ ends, with an error.
  fs->kill_server();
  auto pending_err = kpc::recv_int(result.read.get(), 2000);
  kpc::observe("pending_read", !pending_err        ? std::string("still waiting after 2 s")
                               : *pending_err == 0 ? std::string("ok")
                                                   : kpc::errno_name(*pending_err));
  kpc::observe("reader.status", kpc::describe_wait_status(reader.wait()));

  // 4. New requests on the dead connection.
  char buf[16];
  KPC_OBSERVE_CALL("after.read_on_open_fd", read(open_before.get(), buf, sizeof buf));
  KPC_OBSERVE_CALL("after.open", open(file.c_str(), O_RDONLY | O_CLOEXEC));
  struct stat st;
  KPC_OBSERVE_CALL("after.stat_mountpoint", stat(dir.path().c_str(), &st));
  KPC_OBSERVE_CALL("after.close_open_fd", close(open_before.release()));
  return 0;
}
