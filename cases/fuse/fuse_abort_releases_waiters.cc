// fuse_abort_releases_waiters: writing to /sys/fs/fuse/connections/N/abort
// ends every request of the connection, so every task waiting for an answer
// returns: readers waiting for READ, a close() waiting for FLUSH. This is
// how kpc (and an administrator) recovers from a hung FUSE server.
#include <fcntl.h>
#include <unistd.h>

#include <vector>

#include "kpc/probe.h"
#include "kpc/testfs.h"

using kpc::testfs::Answer;

int probe_main(kpc::Probe&) {
  // 1. The server (a separate process) never answers READ or FLUSH.
  kpc::testfs::enter_private_mount_namespace();
  kpc::TempDir dir("fuse");
  auto fs = kpc::testfs::Server::start(dir.path(), kpc::testfs::Serve::process);
  fs->set_read(Answer::never);
  fs->set_flush(Answer::never);

  // 2. Three waiters: two readers and one closer, each reports its result.
  kpc::Pipe results = kpc::Pipe::make(O_CLOEXEC);
  std::vector<kpc::Child> waiters;
  for (int i = 0; i < 3; ++i) {
    waiters.push_back(kpc::fork_child([&, i] {
      int fd = KPC_SYS(open(fs->file_path().c_str(), O_RDWR));
      long rc;
      if (i < 2) {
        char buf[16];
        rc = read(fd, buf, sizeof buf);
      } else {
        rc = close(fd);
      }
      kpc::send_int(results.write.get(), i * 1000 + (rc < 0 ? errno : 0));
    }));
  }
  KPC_CHECK_MSG(fs->wait_unanswered(3, 2000), "the three requests never reached the server");

  // 3. Abort the connection; every waiter returns.
  std::string err = kpc::testfs::abort_connection(fs->connection());
  if (!err.empty()) kpc::skip("cannot abort a FUSE connection here: " + err);
  const char* names[] = {"reader_1", "reader_2", "closer"};
  int released = 0;
  std::string results_text[3] = {"still waiting", "still waiting", "still waiting"};
  for (int i = 0; i < 3; ++i) {
    auto r = kpc::recv_int(results.read.get(), 2000);
    if (!r) break;
    ++released;
    results_text[*r / 1000] = *r % 1000 ? kpc::errno_name(*r % 1000) : "ok";
  }
  kpc::observe("waiters_released", released);
  for (int i = 0; i < 3; ++i) kpc::observe(std::string(names[i]) + ".result", results_text[i]);

  // 4. The connection stays dead: a new open fails.
  KPC_OBSERVE_CALL("after.open", open(fs->file_path().c_str(), O_RDONLY | O_CLOEXEC));
  return 0;
}
