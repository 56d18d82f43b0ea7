// fuse_owner_aborts_from_user_namespace: a FUSE connection's files in
// fusectl (/sys/fs/fuse/connections/N/) belong to the uid that mounted it,
// and its "abort" file is mode 0200: its owner may abort it without any
// privilege in the initial user namespace -- from inside a user namespace,
// where the owner is "root" (kselftest filesystems/fuse/fusectl_test.c). Only
// mounting fusectl needs the initial namespace's root.
//   variant owner:    the process that mounted the filesystem, in its user
//                     namespace (uid 0 there = kuid 3141590), aborts it
//   variant stranger: another user namespace (root there = kuid 3141591) tries
//
// Setup, as root: a private mount namespace with a directory holding a
// /dev/fuse node anyone may open, /proc, fusectl and a mountpoint; the user
// namespace processes chroot into it (the run directory above it is root's
// 0700, which they could not traverse).
#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <string>

#include "kpc/probe.h"
#include "kpc/testfs.h"

using kpc::testfs::Answer;

namespace {
constexpr uid_t kOwner = 3141590, kStranger = 3141591;  // no user has these ids

void write_file(const std::string& path, const std::string& text) {
  kpc::Fd fd(KPC_SYS(open(path.c_str(), O_WRONLY | O_CLOEXEC)));
  KPC_CHECK_MSG(write(fd.get(), text.data(), text.size()) == static_cast<ssize_t>(text.size()),
                "write " + path + ": " + kpc::errno_name(errno));
}

// The root directory of the user-namespace processes.
void build_root(const std::string& dir) {
  KPC_SYS(chmod(dir.c_str(), 0755));
  for (const char* d : {"/dev", "/proc", "/sys", "/sys/fs", "/sys/fs/fuse", "/sys/fs/fuse/connections", "/mnt"})
    KPC_SYS(mkdir((dir + d).c_str(), 0755));
  KPC_SYS(mount("kpc-dev", (dir + "/dev").c_str(), "tmpfs", MS_NOSUID, "mode=0755"));
  KPC_SYS(mknod((dir + "/dev/fuse").c_str(), S_IFCHR | 0666, makedev(10, 229)));
  KPC_SYS(chmod((dir + "/dev/fuse").c_str(), 0666));
  KPC_SYS(mount("/proc", (dir + "/proc").c_str(), nullptr, MS_BIND | MS_REC, nullptr));
  if (mount("fusectl", (dir + "/sys/fs/fuse/connections").c_str(), "fusectl", MS_NOSUID | MS_NODEV | MS_NOEXEC,
            nullptr) != 0)
    kpc::skip("cannot mount fusectl: " + kpc::errno_name(errno));
}

// fork()s a child that enters a new user namespace in which 0 is `kuid`,
// becomes that root, chroots into `dir` and runs fn.
template <class F>
kpc::Child in_user_namespace(uid_t kuid, const std::string& dir, F fn) {
  kpc::Pipe entered = kpc::Pipe::make(O_CLOEXEC), mapped = kpc::Pipe::make(O_CLOEXEC);
  kpc::Child c = kpc::fork_child([&] {
    KPC_SYS(chdir(dir.c_str()));  // while still root outside: the path is traversable
    if (unshare(CLONE_NEWUSER) != 0) kpc::skip("unshare(CLONE_NEWUSER): " + kpc::errno_name(errno));
    kpc::send_byte(entered.write.get());
    KPC_CHECK(kpc::recv_byte(mapped.read.get(), 5000).has_value());
    KPC_SYS(setresgid(0, 0, 0));
    KPC_SYS(setresuid(0, 0, 0));  // kuid `kuid` from now on
    kpc::testfs::enter_private_mount_namespace();
    KPC_SYS(chroot("."));
    KPC_SYS(chdir("/"));
    fn();
  });
  KPC_CHECK(kpc::recv_byte(entered.read.get(), 5000).has_value());
  std::string proc = "/proc/" + std::to_string(c.pid());
  std::string map = "0 " + std::to_string(kuid) + " 1";
  write_file(proc + "/uid_map", map);
  write_file(proc + "/setgroups", "deny");
  write_file(proc + "/gid_map", map);
  kpc::send_byte(mapped.write.get());
  return c;
}

std::string abort_path(unsigned long conn) { return "/sys/fs/fuse/connections/" + std::to_string(conn) + "/abort"; }
}  // namespace

int probe_main(kpc::Probe& p) {
  bool owner_aborts = p.variant_is("owner", "stranger");
  kpc::testfs::enter_private_mount_namespace();
  kpc::TempDir dir("fusectl-userns");
  build_root(dir.path());
  kpc::Pipe conn_pipe = kpc::Pipe::make(O_CLOEXEC), stranger_done = kpc::Pipe::make(O_CLOEXEC);

  // 1. The owner: mounts the test filesystem in its user namespace, starts a
  //    reader the server never answers, and (variant owner) aborts.
  kpc::Child owner = in_user_namespace(kOwner, dir.path(), [&] {
    auto fs = kpc::testfs::Server::start("/mnt", kpc::testfs::Serve::process);
    fs->set_read(Answer::never);
    kpc::Pipe result = kpc::Pipe::make(O_CLOEXEC);
    kpc::Child reader = kpc::fork_child([&] {
      int fd = KPC_SYS(open(fs->file_path().c_str(), O_RDONLY));
      char buf[16];
      long rc = read(fd, buf, sizeof buf);
      kpc::send_int(result.write.get(), rc < 0 ? errno : 0);
    });
    KPC_CHECK_MSG(fs->wait_unanswered(1, 5000), "the reader's READ never reached the server");
    struct stat st {};
    KPC_SYS(stat(abort_path(fs->connection()).c_str(), &st));
    kpc::observe("abort_file.owner_in_user_namespace", static_cast<int64_t>(st.st_uid));
    kpc::observe("abort_file.mode", (st.st_mode & 07777) == 0200 ? "0200" : std::to_string(st.st_mode & 07777));
    if (!owner_aborts) {
      kpc::send_int(conn_pipe.write.get(), static_cast<int>(fs->connection()));
      KPC_CHECK(kpc::recv_byte(stranger_done.read.get(), 5000).has_value());
      // The owner releases its reader itself (killing the reader would not:
      // a READ the server has taken is waited for uninterruptibly). Not by
      // killing the server: a reader waiting while the server's exit closes
      // /dev/fuse is, for a moment, a request nobody can answer, and on a
      // loaded machine the launcher has taken that moment for a deadlock.
      int fd = KPC_SYS(open(abort_path(fs->connection()).c_str(), O_WRONLY | O_CLOEXEC));
      KPC_SYS(write(fd, "1", 1));
      close(fd);
      reader.wait();
      fs->kill_server();
      return;
    }
    // 2. The owner aborts its own connection.
    int fd = open(abort_path(fs->connection()).c_str(), O_WRONLY | O_CLOEXEC);
    kpc::observe_result("owner.open_abort", fd, fd < 0 ? errno : 0);
    if (fd >= 0) {
      KPC_OBSERVE_CALL("owner.write_abort", write(fd, "1", 1));
      close(fd);
    }
    auto r = kpc::recv_int(result.read.get(), 5000);
    kpc::observe("reader.result", !r ? std::string("still waiting") : *r ? kpc::errno_name(*r) : "ok");
    KPC_OBSERVE_CALL("after.open", open(fs->file_path().c_str(), O_RDONLY | O_CLOEXEC));
    fs->kill_server();
    reader.wait();
  });

  if (!owner_aborts) {
    // 3. A stranger -- root of another user namespace -- tries.
    auto conn = kpc::recv_int(conn_pipe.read.get(), 10000);
    KPC_CHECK_MSG(conn.has_value(), "the owner never said its connection");
    kpc::Child stranger = in_user_namespace(kStranger, dir.path(), [&] {
      int fd = open(abort_path(static_cast<unsigned long>(*conn)).c_str(), O_WRONLY | O_CLOEXEC);
      kpc::observe_result("stranger.open_abort", fd, fd < 0 ? errno : 0);
    });
    kpc::observe("stranger.status", kpc::describe_wait_status(stranger.wait()));
    kpc::send_byte(stranger_done.write.get());
  }
  kpc::observe("owner.status", kpc::describe_wait_status(owner.wait()));
  return 0;
}
