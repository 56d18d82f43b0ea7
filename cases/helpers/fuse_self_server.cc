// fuse_self_server: story 002's container workload, for engine_fuse_kill.
// Serves its own FUSE mount from a thread (kpc's test filesystem, in a
// private mount namespace under $KPC_TMPDIR), holds a file of that mount
// open, reports "ready PID conn N" on fd 3 (or the fd $KPC_OBS_FD names:
// docker cannot pass one, there it is stdout), then waits to be killed.
// Killed, its exit waits in fuse_flush for an answer from its own server
// thread, which the same kill has ended: the deadlock of
// fuse_self_served_exit, now as a container's process (PID 1, or the
// engine's init's child).
//
//   fuse_self_server TOKEN     (TOKEN: a word the probe finds it by)
//
// A mount it cannot make (no /dev/fuse, no CAP_SYS_ADMIN) is a skip record
// on the same fd, in kpc's own words.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "kpc/record.h"
#include "kpc/supervisor.h"
#include "kpc/testfs.h"

int main(int argc, char** argv) {
  if (argc < 2) return 64;
  int out = 3;
  if (const char* fd = getenv("KPC_OBS_FD"); fd && *fd >= '0' && *fd <= '9') out = atoi(fd);
  // Only a supervisor that aborts connections through fusectl can free
  // this from outside the container (a deposited /dev/fuse descriptor
  // cannot cross into it).
  if (kpc::supervisor::fuse_recovery() != kpc::supervisor::kFusectl)
    kpc::skip(
        "a container serving its own FUSE mount deadlocks when killed; only kpc-launch with fusectl (root) "
        "can undo that from outside the container");
  kpc::testfs::enter_private_mount_namespace();
  const char* base = getenv("KPC_TMPDIR");
  std::string dir = std::string(base && *base ? base : "/tmp") + "/kpc-fuse-" + std::to_string(getpid());
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) kpc::skip("mkdir " + dir + ": " + kpc::errno_name(errno));
  auto fs = kpc::testfs::Server::start(dir, kpc::testfs::Serve::thread);
  int fd = open(fs->file_path().c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) kpc::broken("open " + fs->file_path() + ": " + kpc::errno_name(errno));
  fs->abandon();  // the kill ends it, with the file still open
  std::string line =
      "ready " + std::to_string(getpid()) + " conn " + std::to_string(fs->connection()) + " " + argv[1] + "\n";
  if (write(out, line.data(), line.size()) < 0) return 1;
  for (;;) pause();
}
