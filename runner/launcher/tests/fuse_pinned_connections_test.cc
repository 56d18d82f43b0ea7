// fuse::run_connections pins what it finds (issue 15, item 4): a run's FUSE
// connection that ends between being found and being aborted frees its
// number, and the next FUSE mount on the machine -- anyone's -- gets it.
// While the PinnedConnections lives, no connection it names can end.
//
// 1. A child enters a mount namespace of its own and mounts FUSE on a
//    /dev/fuse descriptor (no server: the mount alone makes the connection).
// 2. run_connections finds the connection; the child is killed and reaped
//    -- as the run's tasks are while L recovers.
// 3. The connection (fusectl's N/) is still there while the pins are held,
//    and goes once they are dropped.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "fuse_recovery.h"
#include "kpc/raii.h"

namespace kpcl {
namespace {

bool exists_under(int dirfd, unsigned long n) {
  struct stat st;
  return fstatat(dirfd, std::to_string(n).c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
}

TEST(FusePinnedConnections, AFoundConnectionOutlivesTheRunUntilReleased) {
  if (geteuid() != 0) GTEST_SKIP() << "mounts FUSE in a mount namespace: root";
  std::string why;
  kpc::Fd fusectl(fuse::open_fusectl(&why));
  if (!fusectl) GTEST_SKIP() << "no fusectl: " << why;
  char tmpl[] = "/tmp/kpc-pin-test.XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr) << strerror(errno);
  const std::string dir = tmpl;

  // 1.
  int ready[2];
  ASSERT_EQ(pipe2(ready, O_CLOEXEC), 0);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    int dev = open("/dev/fuse", O_RDWR | O_CLOEXEC);
    if (dev < 0 || unshare(CLONE_NEWNS) != 0 || mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
      _exit(1);
    std::string opts = "fd=" + std::to_string(dev) + ",rootmode=40000,user_id=0,group_id=0";
    if (mount("kpc-pin-test", dir.c_str(), "fuse.kpc-pin-test", MS_NOSUID | MS_NODEV, opts.c_str()) != 0) _exit(2);
    char c = 'r';
    if (write(ready[1], &c, 1) != 1) _exit(3);
    pause();
    _exit(0);
  }
  close(ready[1]);
  char c = 0;
  ASSERT_EQ(read(ready[0], &c, 1), 1) << "the child could not mount FUSE";
  close(ready[0]);

  // 2.
  fuse::PinnedConnections found = fuse::run_connections({child});
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  ASSERT_EQ(found.ids.size(), 1u);
  const unsigned long n = *found.ids.begin();

  // 3.
  EXPECT_TRUE(exists_under(fusectl.get(), n)) << "connection " << n << " ended while pinned: its number is free";
  found.namespaces.clear();
  bool gone = false;
  for (int i = 0; i < 200 && !gone; ++i) {
    gone = !exists_under(fusectl.get(), n);
    if (!gone) usleep(10'000);
  }
  EXPECT_TRUE(gone) << "connection " << n << " outlived its pins";
  rmdir(dir.c_str());
}

}  // namespace
}  // namespace kpcl
