// fuse_init_rejected_and_dev_clone: the /dev/fuse protocol's first steps,
// without libfuse. FUSE_DEV_IOC_CLONE attaches a second /dev/fuse
// descriptor to a mounted connection (how libfuse's multithreaded loop
// gives each thread its own queue): refused (EINVAL) while the source is
// not mounted, refused onto a descriptor that already belongs to a
// connection. The kernel's first request is INIT; a server that answers
// with a protocol major version other than 7 makes the connection unusable:
// every later request fails with ECONNREFUSED.
#include <fcntl.h>
#include <linux/fuse.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "kpc/probe.h"
#include "kpc/proc.h"
#include "kpc/testfs.h"

namespace {
int open_dev() {
  int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
  if (fd < 0) kpc::skip(std::string("/dev/fuse: ") + strerror(errno) + " (opening the FUSE device)");
  return fd;
}
std::string clone_onto(int fd, int source) {
  uint32_t src = static_cast<uint32_t>(source);
  return ioctl(fd, FUSE_DEV_IOC_CLONE, &src) == 0 ? "ok" : kpc::errno_name(errno);
}
}  // namespace

int probe_main(kpc::Probe&) {
  kpc::testfs::enter_private_mount_namespace();
  kpc::TempDir dir("fuse-raw");
  kpc::Fd dev(open_dev()), spare(open_dev()), other(open_dev());
  // 1. Cloning from a descriptor that is not mounted yet.
  kpc::observe("clone.from_unmounted", clone_onto(spare.get(), dev.get()));
  // 2. Mount with it; the kernel queues INIT.
  std::string opts = "fd=" + std::to_string(dev.get()) + ",rootmode=40000,user_id=0,group_id=0";
  if (mount("kpc-raw", dir.path().c_str(), "fuse.kpcraw", MS_NOSUID | MS_NODEV, opts.c_str()) != 0)
    kpc::skip("mounting FUSE here: " + kpc::errno_name(errno));
  kpc::Mount m(dir.path());
  for (const auto& mi : kpc::parse_mountinfo(kpc::read_text("/proc/thread-self/mountinfo").value_or("")))
    if (mi.mount_point == dir.path()) kpc::announce_fuse_connection(mi.minor);
  // 3. Cloning works now, once; onto an already attached descriptor it does not.
  kpc::observe("clone.from_mounted", clone_onto(spare.get(), dev.get()));
  kpc::observe("clone.onto_attached", clone_onto(spare.get(), dev.get()));
  kpc::observe("clone.onto_fresh_again", clone_onto(other.get(), dev.get()));
  // 4. INIT, answered with major version 6.
  alignas(8) char buf[FUSE_MIN_READ_BUFFER];
  ssize_t n = read(dev.get(), buf, sizeof buf);
  KPC_CHECK_MSG(n >= static_cast<ssize_t>(sizeof(fuse_in_header)), "read(/dev/fuse): " + kpc::errno_name(errno));
  fuse_in_header in;
  memcpy(&in, buf, sizeof in);
  kpc::observe("first_request_is_init", in.opcode == FUSE_INIT);
  struct {
    fuse_out_header h;
    fuse_init_out init;
  } reply{};
  reply.h.len = sizeof reply;
  reply.h.unique = in.unique;
  reply.init.major = 6;
  reply.init.minor = 0;
  KPC_OBSERVE_CALL("bad_init.reply_write", write(dev.get(), &reply, sizeof reply));
  // 5. The connection refuses everything from now on. (fuse(4) describes a
  //    daemon answering a lower major and the kernel sending INIT again: if
  //    it did, the stat would wait; a child does it, and the probe looks at
  //    what is queued if it has not returned within 3 s.)
  kpc::Pipe r = kpc::Pipe::make(O_CLOEXEC);
  kpc::Child c = kpc::fork_child([&] {
    struct stat st {};
    kpc::send_int(r.write.get(), stat(dir.path().c_str(), &st) == 0 ? 0 : errno);
    int fd = open((dir.path() + "/x").c_str(), O_RDONLY | O_CLOEXEC);
    kpc::send_int(r.write.get(), fd >= 0 ? 0 : errno);
  });
  auto st_err = kpc::recv_int(r.read.get(), 3000);
  if (!st_err) {
    kpc::observe("after_bad_init.stat", "waits");
    pollfd p{dev.get(), POLLIN, 0};
    bool queued =
        poll(&p, 1, 0) == 1 && read(dev.get(), buf, sizeof buf) >= static_cast<ssize_t>(sizeof(fuse_in_header));
    if (queued) memcpy(&in, buf, sizeof in);
    kpc::observe("after_bad_init.next_request", queued ? std::to_string(in.opcode) : std::string("none"));
    c.kill(SIGKILL);
    return 0;
  }
  auto open_err = kpc::recv_int(r.read.get(), 3000);
  kpc::observe("after_bad_init.stat", *st_err ? kpc::errno_name(*st_err) : "ok");
  kpc::observe("after_bad_init.open", !open_err ? "waits" : *open_err ? kpc::errno_name(*open_err) : "ok");
  c.wait();
  return 0;
}
