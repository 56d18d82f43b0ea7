// fuse_auto_unmount_after_daemon_kill: a libfuse daemon mounted with
// "-o auto_unmount" is SIGKILLed. libfuse mounted through fusermount3,
// which stays behind watching the daemon through a socket; when the socket
// closes it opens the mountpoint and unmounts only if that says ENOTCONN
// (the connection has ended). Without the option (root mounts directly) the
// dead daemon's mount stays, failing every request with ENOTCONN, until
// somebody unmounts it.
//   variant auto_unmount:  the watcher checks after the connection ended
//                          (the probe holds a duplicate of the watched socket
//                          until the daemon is reaped: the usual order,
//                          made certain)
//   variant connection_outlives_daemon: the watcher checks while the
//                          connection still lives (the probe holds a
//                          duplicate of the daemon's /dev/fuse): it waits
//                          on the mount, gets ECONNABORTED, leaves it
//   variant plain:         no auto_unmount
// (Unordered, the daemon's exit closes the socket and /dev/fuse one after
// the other; a watcher scheduled in between sees the second case: on a
// loaded machine kpc saw the mount left behind once in ~30 runs.)
#define FUSE_USE_VERSION 34
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <set>
#include <string>

#include "kpc/fdpass.h"
#include "kpc/probe.h"
#include "kpc/proc.h"
#include "kpc/testfs.h"

namespace {

// Descriptors of this process that are sockets.
std::set<int> socket_fds() {
  std::set<int> out;
  DIR* d = opendir("/proc/self/fd");
  if (!d) return out;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    char target[64];
    ssize_t n = readlinkat(dirfd(d), e->d_name, target, sizeof target - 1);
    if (n > 0 && std::string_view(target, static_cast<size_t>(n)).starts_with("socket:")) out.insert(atoi(e->d_name));
  }
  closedir(d);
  return out;
}

// Waiting on a FUSE request (wchan, or the kernel stack where wchan is 0).
bool waits_on_fuse(pid_t pid) {
  std::string base = "/proc/" + std::to_string(pid);
  if (kpc::read_text(base + "/wchan").value_or("") == "request_wait_answer") return true;
  return kpc::read_text(base + "/stack").value_or("").find("request_wait_answer") != std::string::npos;
}
}  // namespace

int probe_main(kpc::Probe& p) {
  // Mount with auto_unmount? Let the connection outlive the daemon?
  bool autou = false, outlives = false;
  auto mount_with = [&](bool auto_unmount, bool connection_outlives) {
    autou = auto_unmount;
    outlives = connection_outlives;
    return 0;
  };
  p.dispatch({
      {"auto_unmount", [&] { return mount_with(true, false); }},
      {"connection_outlives_daemon", [&] { return mount_with(true, true); }},
      {"plain", [&] { return mount_with(false, false); }},
  });
  KPC_SYS(prctl(PR_SET_CHILD_SUBREAPER, 1));  // fusermount3's watcher comes to us when the daemon dies
  kpc::testfs::enter_private_mount_namespace();
  kpc::TempDir dir("fuse-auto");
  int sv[2];
  KPC_SYS(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv));
  kpc::Fd to_probe(sv[0]), from_daemon(sv[1]);
  // 1. The daemon mounts and hands the probe duplicates of its /dev/fuse and
  //    of the socket fusermount3's watcher watches (the socket that appeared
  //    with the mount).
  kpc::Child daemon = kpc::fork_child([&] {
    from_daemon.reset();
    std::string opts = std::string("fsname=kpc-auto,subtype=kpcauto") + (autou ? ",auto_unmount" : "");
    const char* argv[] = {"kpc-auto", "-o", opts.c_str(), nullptr};
    fuse_args args = FUSE_ARGS_INIT(3, const_cast<char**>(argv));
    fuse_lowlevel_ops ops{};
    fuse_session* se = fuse_session_new(&args, &ops, sizeof ops, nullptr);
    fuse_opt_free_args(&args);
    std::set<int> before = socket_fds();
    if (!se || fuse_session_mount(se, dir.path().c_str()) != 0) _exit(11);
    for (int fd : socket_fds())
      if (!before.contains(fd)) KPC_CHECK(kpc::send_fd(to_probe.get(), fd, "watched"));
    KPC_CHECK(kpc::send_fd(to_probe.get(), fuse_session_fd(se), "dev"));
    fuse_session_loop(se);
    _exit(0);
  });
  to_probe.reset();
  kpc::Fd watched, dev;
  while (auto m = kpc::recv_fd(from_daemon.get())) {
    if (m->text == "watched") watched = kpc::Fd(m->fd);
    if (m->text == "dev") {
      dev = kpc::Fd(m->fd);
      break;
    }
  }
  if (!dev) kpc::skip("the daemon could not mount (with auto_unmount libfuse needs fusermount3)");
  KPC_CHECK_MSG(!autou || watched, "no new socket in the daemon after an auto_unmount mount");
  for (unsigned long conn : kpc::testfs::connections_at(dir.path())) kpc::announce_fuse_connection(conn);
  kpc::observe("before.mounted", kpc::testfs::fuse_mounted(dir.path()));
  // The daemon has answered INIT once anything on the mount is answered
  // (until then a request waits for INIT, not for its answer).
  struct stat sb {};
  KPC_CHECK_MSG(stat(dir.path().c_str(), &sb) == 0 || errno != ENOTCONN, "the new mount is not connected");
  if (outlives) watched.reset();  // the daemon's death wakes the watcher
  else dev.reset();               // the daemon's death ends the connection
  // 2. SIGKILL, as the OOM killer or `docker kill` sends it.
  daemon.kill(SIGKILL);
  kpc::observe("daemon.status", kpc::describe_wait_status(daemon.wait()));
  if (outlives) {
    // 3. The watcher (reparented to us) woke and opened the mountpoint: its
    //    request waits, the connection alive through our duplicate. Then
    //    the connection ends.
    std::vector<pid_t> kids = kpc::list_children(getpid());
    KPC_CHECK_MSG(kids.size() == 1, "expected fusermount3's watcher as our only child");
    bool waited = false;
    for (int i = 0; i < 5000 && !waited; ++i) {
      waited = waits_on_fuse(kids[0]);
      if (!waited) usleep(1000);  // polling for an event, not a delay
    }
    kpc::observe("watcher.waited_on_live_connection", waited);
    dev.reset();
  } else {
    // 3. The connection has ended (the daemon, its only /dev/fuse, is gone):
    //    now the watcher may look.
    watched.reset();
  }
  // 4. fusermount3's watcher unmounts (or not) and exits: waiting for our
  //    remaining children is waiting for it. With the plain mount there is
  //    none, and nothing else would remove the mount.
  int st;
  while (wait(&st) > 0) {}
  bool still = kpc::testfs::fuse_mounted(dir.path());
  kpc::observe("after.mounted", still);
  if (still) {
    struct stat sb {};
    KPC_OBSERVE_CALL("after.stat", stat(dir.path().c_str(), &sb));
    umount2(dir.path().c_str(), MNT_DETACH);
  }
  return 0;
}
