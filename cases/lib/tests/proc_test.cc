// /proc parsers, fed with text captured from real kernels.
#include "kpc/proc.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

namespace kpc {
namespace {

// A 6.x process inside a PID namespace (NSpid has two levels).
constexpr std::string_view kStatus6 =
    "Name:\tsleep\n"
    "Umask:\t0022\n"
    "State:\tS (sleeping)\n"
    "Tgid:\t4242\n"
    "Ngid:\t0\n"
    "Pid:\t4242\n"
    "PPid:\t4200\n"
    "TracerPid:\t0\n"
    "NStgid:\t4242\t1\n"
    "NSpid:\t4242\t1\n"
    "Threads:\t1\n"
    "SigQ:\t0/95424\n"
    "SigPnd:\t0000000000000200\n"
    "ShdPnd:\t0000000000000800\n"
    "SigBlk:\t0000000000004a00\n"
    "SigIgn:\t0000000000001000\n"
    "SigCgt:\t0000000180000000\n"
    "NoNewPrivs:\t1\n"
    "voluntary_ctxt_switches:\t17\n"
    "nonvoluntary_ctxt_switches:\t3\n";

TEST(ParseStatus, ReadsSignalMasksByName) {
  auto st = parse_status(kStatus6);
  ASSERT_TRUE(st);
  EXPECT_TRUE(st->has_signals);
  EXPECT_EQ(format_sigset(st->sig_pnd), "SIGUSR1");
  EXPECT_EQ(format_sigset(st->shd_pnd), "SIGUSR2");
  EXPECT_EQ(format_sigset(st->sig_blk), "SIGUSR1|SIGUSR2|SIGTERM");
  EXPECT_EQ(format_sigset(st->sig_ign), "SIGPIPE");
  EXPECT_EQ(format_sigset(st->sig_cgt), "SIG32|SIG33");
}

TEST(ParseStatus, ReadsIdsStateAndNamespacePids) {
  auto st = parse_status(kStatus6);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->name, "sleep");
  EXPECT_EQ(st->state, 'S');
  EXPECT_EQ(st->state_text, "S (sleeping)");
  EXPECT_EQ(st->pid, 4242);
  EXPECT_EQ(st->ppid, 4200);
  EXPECT_EQ(st->nspid, (std::vector<pid_t>{4242, 1}));
  EXPECT_EQ(st->threads, 1);
  EXPECT_EQ(st->no_new_privs, 1);
  EXPECT_TRUE(st->has_ctxt_switches);
  EXPECT_EQ(st->voluntary_ctxt_switches, 17u);
  EXPECT_EQ(st->nonvoluntary_ctxt_switches, 3u);
}

TEST(ParseStatus, OldKernelWithoutNSpidLeavesItEmpty) {
  auto st = parse_status("Name:\tinit\nState:\tD (disk sleep)\nPid:\t1\nPPid:\t0\nSigBlk:\t0000000000000000\n");
  ASSERT_TRUE(st);
  EXPECT_EQ(st->state, 'D');
  EXPECT_TRUE(st->nspid.empty());
  EXPECT_FALSE(st->no_new_privs.has_value());
  EXPECT_FALSE(st->has_ctxt_switches);
}

TEST(ParseStatus, RejectsMalformedMask) { EXPECT_FALSE(parse_status("Name:\tx\nSigBlk:\tzz00000000000000\n")); }

TEST(ParseStat, CommWithSpacesAndParens) {
  // comm may hold ") (" — the parser must split at the last ')'.
  std::string line =
      "77 (a) (b c) D 1 77 77 0 -1 4194564 0 0 0 0 0 0 0 0 20 0 1 0 12345 0 0 "
      "18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
  auto st = parse_stat(line);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->pid, 77);
  EXPECT_EQ(st->comm, "a) (b c");
  EXPECT_EQ(st->state, 'D');
  EXPECT_EQ(st->ppid, 1);
  EXPECT_EQ(st->flags, 4194564u);
  EXPECT_TRUE(st->flags & kPfExiting);
  EXPECT_EQ(st->start_time, 12345u);
  EXPECT_EQ(st->exit_signal, 17);
}

TEST(ParseStat, TruncatedLineFails) {
  EXPECT_FALSE(parse_stat("12 (x"));
  EXPECT_FALSE(parse_stat(""));
}

TEST(ParseMountinfo, FuseMountWithOptionalFields) {
  std::string text =
      "22 1 0:21 / /proc rw,nosuid - proc proc rw\n"
      "87 22 0:52 / /tmp/kpc-run.x/mnt rw,nosuid,nodev shared:41 master:1 - fuse.kpctestfs kpctestfs "
      "rw,user_id=0,group_id=0\n";
  auto mounts = parse_mountinfo(text);
  ASSERT_EQ(mounts.size(), 2u);
  EXPECT_EQ(mounts[1].mount_id, 87);
  EXPECT_EQ(mounts[1].parent_id, 22);
  EXPECT_EQ(mounts[1].major, 0u);
  EXPECT_EQ(mounts[1].minor, 52u);  // the FUSE connection number under /sys/fs/fuse/connections
  EXPECT_EQ(mounts[1].mount_point, "/tmp/kpc-run.x/mnt");
  EXPECT_EQ(mounts[1].fs_type, "fuse.kpctestfs");
  EXPECT_EQ(mounts[1].source, "kpctestfs");
}

TEST(RootIsMountPoint, AChrootSeesNoMountOnSlash) {
  // A plain chroot (observed: `chroot DIR` into an unpacked Debian rootfs):
  // only what lies under the root is listed, and nothing is mounted on "/".
  EXPECT_FALSE(root_is_mount_point("116 80 0:53 / /proc rw,relatime - proc proc rw\n"));
  EXPECT_FALSE(root_is_mount_point(""));
  EXPECT_TRUE(
      root_is_mount_point("27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
                          "116 27 0:53 / /proc rw,relatime - proc proc rw\n"));
  // A bind mount of a subdirectory on / (schroot's, a container's): a mount point.
  EXPECT_TRUE(root_is_mount_point("300 299 254:0 /srv/chroot / rw - ext4 /dev/vda rw\n"));
}

TEST(ParseMountinfo, UnescapesOctalInPaths) {
  auto mounts = parse_mountinfo("30 1 8:1 / /mnt/with\\040space rw - ext4 /dev/sda1 rw\n");
  ASSERT_EQ(mounts.size(), 1u);
  EXPECT_EQ(mounts[0].mount_point, "/mnt/with space");
}

TEST(ReadStatus, SelfAgreesWithGetpid) {
  auto st = read_status(getpid());
  ASSERT_TRUE(st);
  EXPECT_EQ(st->pid, getpid());
  EXPECT_EQ(st->ppid, getppid());
  EXPECT_EQ(st->state, 'R');
  auto stat = read_stat(getpid());
  ASSERT_TRUE(stat);
  EXPECT_EQ(stat->ppid, getppid());
  EXPECT_EQ(list_tasks(getpid()).size(), static_cast<size_t>(st->threads));
}

}  // namespace
}  // namespace kpc

namespace kpc {
namespace {

TEST(WaitForState, SeesAnExitedChildAsZombieThenGone) {
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) _exit(0);
  EXPECT_EQ(wait_for_state(pid, 'Z', 2000), 'Z');
  int st;
  ASSERT_EQ(waitpid(pid, &st, 0), pid);
  EXPECT_EQ(wait_for_state(pid, 'Z', 5), '-');
}

TEST(ReadSelfStatus, IsTheCallingThread) {
  auto st = read_self_status();
  ASSERT_TRUE(st);
  EXPECT_EQ(st->pid, gettid());
  EXPECT_EQ(st->tgid, getpid());
}

}  // namespace
}  // namespace kpc
