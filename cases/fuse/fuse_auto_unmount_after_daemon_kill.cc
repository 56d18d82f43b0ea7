// fuse_auto_unmount_after_daemon_kill: a libfuse daemon mounted with
// "-o auto_unmount" is SIGKILLed. libfuse mounted through fusermount3,
// which stays behind watching the daemon; when the daemon dies it unmounts.
// Without the option (root mounts directly) the dead daemon's mount stays,
// failing every request with ENOTCONN, until somebody unmounts it.
//   variant auto_unmount / plain
#define FUSE_USE_VERSION 34
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "kpc/probe.h"
#include "kpc/proc.h"
#include "kpc/testfs.h"

namespace {
bool mounted(const std::string& path) {
  for (const auto& m : kpc::parse_mountinfo(kpc::read_text("/proc/thread-self/mountinfo").value_or("")))
    if (m.mount_point == path && m.fs_type.starts_with("fuse")) return true;
  return false;
}
}  // namespace

int probe_main(kpc::Probe& p) {
  bool autou = p.variant_is("auto_unmount", "plain");
  KPC_SYS(prctl(PR_SET_CHILD_SUBREAPER, 1));  // fusermount3's watcher comes to us when the daemon dies
  kpc::testfs::enter_private_mount_namespace();
  kpc::TempDir dir("fuse-auto");
  kpc::Pipe ready = kpc::Pipe::make(O_CLOEXEC);
  kpc::Child daemon = kpc::fork_child([&] {
    std::string opts = std::string("fsname=kpc-auto,subtype=kpcauto") + (autou ? ",auto_unmount" : "");
    const char* argv[] = {"kpc-auto", "-o", opts.c_str(), nullptr};
    fuse_args args = FUSE_ARGS_INIT(3, const_cast<char**>(argv));
    fuse_lowlevel_ops ops{};
    fuse_session* se = fuse_session_new(&args, &ops, sizeof ops, nullptr);
    fuse_opt_free_args(&args);
    if (!se || fuse_session_mount(se, dir.path().c_str()) != 0) _exit(11);
    kpc::send_byte(ready.write.get());
    fuse_session_loop(se);
    _exit(0);
  });
  ready.write.reset();
  if (!kpc::recv_byte(ready.read.get(), 10000)) kpc::skip("the daemon could not mount (with auto_unmount libfuse needs fusermount3)");
  for (const auto& m : kpc::parse_mountinfo(kpc::read_text("/proc/thread-self/mountinfo").value_or("")))
    if (m.mount_point == dir.path()) kpc::announce_fuse_connection(m.minor);
  kpc::observe("before.mounted", mounted(dir.path()));
  daemon.kill(SIGKILL);
  kpc::observe("daemon.status", kpc::describe_wait_status(daemon.wait()));
  // fusermount3's watcher (reparented to us when the daemon died) unmounts
  // and exits: waiting for our remaining children is waiting for it. With
  // the plain mount there is none, and nothing else would remove the mount.
  int st;
  while (wait(&st) > 0) {
  }
  bool still = mounted(dir.path());
  kpc::observe("after.mounted", still);
  if (still) {
    struct stat sb{};
    KPC_OBSERVE_CALL("after.stat", stat(dir.path().c_str(), &sb));
    umount2(dir.path().c_str(), MNT_DETACH);
  }
  return 0;
}
