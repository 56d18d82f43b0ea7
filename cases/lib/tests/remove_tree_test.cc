// kpc::remove_tree: removes what is inside, never what a link points to,
// never across a mount -- even while someone swaps directories for
// symlinks under it (security audit finding 3: root deleted files under
// /root that way).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "kpc/raii.h"

namespace kpc {
namespace {

bool exists(const std::string& p) {
  struct stat st {};
  return lstat(p.c_str(), &st) == 0;
}

void touch(const std::string& p) {
  int fd = open(p.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0) << p;
  close(fd);
}

std::string make_dir(const std::string& base, const std::string& name) {
  std::string p = base + "/" + name;
  EXPECT_EQ(mkdir(p.c_str(), 0700), 0) << p;
  return p;
}

class RemoveTree : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/kpc-rmtree-test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    base_ = tmpl;
    victim_ = make_dir(base_, "victim");
    for (int i = 0; i < 5; ++i) touch(victim_ + "/keep" + std::to_string(i));
  }
  void TearDown() override {
    // The victim survived by design; clean it up by hand.
    for (int i = 0; i < 5; ++i) unlink((victim_ + "/keep" + std::to_string(i)).c_str());
    rmdir(victim_.c_str());
    remove_tree(base_);
  }
  void expect_victim_intact() {
    for (int i = 0; i < 5; ++i) EXPECT_TRUE(exists(victim_ + "/keep" + std::to_string(i))) << "victim file " << i;
  }
  std::string base_, victim_;
};

TEST_F(RemoveTree, RemovesNestedFilesAndDirectories) {
  std::string top = make_dir(base_, "top");
  std::string a = make_dir(top, "a");
  std::string b = make_dir(a, "b");
  touch(top + "/f");
  touch(b + "/g");
  remove_tree(top);
  EXPECT_FALSE(exists(top));
}

TEST_F(RemoveTree, RemovesSymlinksWithoutFollowingThem) {
  std::string top = make_dir(base_, "top");
  ASSERT_EQ(symlink(victim_.c_str(), (top + "/link").c_str()), 0);
  ASSERT_EQ(symlink((victim_ + "/keep0").c_str(), (top + "/filelink").c_str()), 0);
  remove_tree(top);
  EXPECT_FALSE(exists(top));
  expect_victim_intact();
}

TEST_F(RemoveTree, RefusesATopThatIsASymlink) {
  std::string link = base_ + "/toplink";
  ASSERT_EQ(symlink(victim_.c_str(), link.c_str()), 0);
  remove_tree(link);
  expect_victim_intact();
  EXPECT_TRUE(exists(link));  // left alone: it is not a directory we own
  unlink(link.c_str());
}

TEST_F(RemoveTree, DoesNotEnterAMountPoint) {
  if (geteuid() != 0) GTEST_SKIP() << "mounting needs root";
  // In a private mount namespace of a child, so nothing leaks if it fails.
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (unshare(CLONE_NEWNS) != 0 || mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) _exit(3);
    std::string top = base_ + "/top", mnt = top + "/mnt";
    if (mkdir(top.c_str(), 0700) != 0 || mkdir(mnt.c_str(), 0700) != 0) _exit(4);
    if (mount("kpc-test", mnt.c_str(), "tmpfs", 0, "size=64k") != 0) _exit(5);
    int fd = open((mnt + "/inside").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) _exit(6);
    close(fd);
    remove_tree(top);
    bool kept = exists(mnt + "/inside");
    umount2(mnt.c_str(), MNT_DETACH);
    remove_tree(top);
    _exit(kept ? 0 : 1);
  }
  int st = 0;
  ASSERT_EQ(waitpid(pid, &st, 0), pid);
  ASSERT_TRUE(WIFEXITED(st));
  EXPECT_EQ(WEXITSTATUS(st), 0) << "a file on a mount inside the tree was removed (or setup failed: exit > 1)";
}

// The audit's attack, made deterministic enough to catch the old
// path-string walk: a child keeps swapping top/a/d between a real
// directory full of files and a symlink to the victim while remove_tree
// works through it.
TEST_F(RemoveTree, NeverFollowsADirectorySwappedForASymlink) {
  for (int round = 0; round < 20; ++round) {
    std::string top = make_dir(base_, "top");
    std::string a = make_dir(top, "a");
    std::string d = make_dir(a, "d");
    for (int i = 0; i < 300; ++i) touch(d + "/f" + std::to_string(i));
    // The victim's names also exist in d, so an unlink that follows the
    // swapped link hits them.
    for (int i = 0; i < 5; ++i) touch(d + "/keep" + std::to_string(i));
    std::string parked = base_ + "/parked";
    pid_t swapper = fork();
    ASSERT_GE(swapper, 0);
    if (swapper == 0) {
      for (;;) {
        if (rename(d.c_str(), parked.c_str()) == 0) {
          symlink(victim_.c_str(), d.c_str());
          unlink(d.c_str());
          rename(parked.c_str(), d.c_str());
        }
      }
    }
    remove_tree(top);
    kill(swapper, SIGKILL);
    waitpid(swapper, nullptr, 0);
    expect_victim_intact();
    if (HasFailure()) return;
    // What the race left (the parked directory, a half-removed tree).
    remove_tree(parked);
    remove_tree(top);
  }
}

}  // namespace
}  // namespace kpc
