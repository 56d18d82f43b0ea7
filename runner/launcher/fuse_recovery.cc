// See fuse_recovery.h.
#include "fuse_recovery.h"

#include <fcntl.h>
#include <linux/fuse.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <utility>

#include "kpc/fdpass.h"
#include "kpc/proc.h"
#include "kpc/raii.h"

namespace kpcl::fuse {
namespace {

constexpr long kFusectlMagic = 0x65735543;
const char* const kFusectlDir = "/sys/fs/fuse/connections";

bool is_fuse(const kpc::MountInfo& m) {
  return m.fs_type == "fuse" || m.fs_type == "fuseblk" || m.fs_type.starts_with("fuse.");
}

}  // namespace

std::set<unsigned long> connections_in(const std::string& mountinfo_path) {
  auto text = kpc::read_text(mountinfo_path);
  if (!text) return {};
  return connections_of(kpc::parse_mountinfo(*text));
}

std::set<unsigned long> connections_of(const std::vector<kpc::MountInfo>& mounts) {
  std::set<unsigned long> out;
  for (const auto& m : mounts)
    if (is_fuse(m) && m.major == 0) out.insert(m.minor);
  return out;
}

PinnedConnections run_connections(const std::vector<pid_t>& procs) {
  PinnedConnections out;
  std::set<std::pair<dev_t, ino_t>> read;
  // Per task, not per process: in story 002's deadlock the leader is a
  // zombie (no namespaces left) while another thread holds the file.
  for (pid_t p : procs)
    for (pid_t tid : kpc::list_tasks(p)) {
      const std::string task = "/proc/" + std::to_string(p) + "/task/" + std::to_string(tid);
      kpc::Fd ns(open((task + "/ns/mnt").c_str(), O_RDONLY | O_CLOEXEC));
      struct stat pinned, now;
      if (!ns || fstat(ns.get(), &pinned) != 0) continue;                 // gone
      if (!read.insert({pinned.st_dev, pinned.st_ino}).second) continue;  // that namespace is read and held
      std::set<unsigned long> seen = connections_in(task + "/mountinfo");
      // What was read is the pinned namespace's only if the task (or a
      // process that reused its number) is still in it.
      if (stat((task + "/ns/mnt").c_str(), &now) != 0 || now.st_dev != pinned.st_dev || now.st_ino != pinned.st_ino) {
        read.erase({pinned.st_dev, pinned.st_ino});
        continue;
      }
      out.ids.merge(seen);
      out.namespaces.push_back(std::move(ns));
    }
  return out;
}

int open_fusectl(std::string* why) {
  struct statfs fs {};
  if (statfs(kFusectlDir, &fs) == 0 && fs.f_type == kFusectlMagic) {
    int fd = open(kFusectlDir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) return fd;
    *why = std::string(kFusectlDir) + ": " + strerror(errno);
    return -1;
  }
  // Not mounted: a child mounts it in a mount namespace of its own and
  // sends back a descriptor of its root. The namespace dies with the child;
  // the descriptor keeps that one mount alive, reachable by nobody else.
  int sp[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) != 0) {
    *why = std::string("socketpair: ") + strerror(errno);
    return -1;
  }
  kpc::Fd mine(sp[0]), theirs(sp[1]);
  pid_t pid = fork();
  if (pid < 0) {
    *why = std::string("fork: ") + strerror(errno);
    return -1;
  }
  if (pid == 0) {
    std::string err;
    if (unshare(CLONE_NEWNS) != 0 || mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
      err = std::string("a private mount namespace: ") + strerror(errno);
    else if (mount("fusectl", kFusectlDir, "fusectl", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0)
      err = std::string("mount fusectl: ") + strerror(errno);
    int fd = err.empty() ? open(kFusectlDir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    if (fd < 0 && err.empty()) err = std::string("open fusectl: ") + strerror(errno);
    if (fd >= 0) kpc::send_fd(theirs.get(), fd, "fusectl");
    else if (write(theirs.get(), err.data(), err.size()) < 0) _exit(2);
    _exit(0);
  }
  theirs.reset();
  // A descriptor, or the child's error text.
  auto got = kpc::recv_fd(mine.get());
  int fd = got ? got->fd : -1;
  if (fd < 0) *why = got ? got->text : "the fusectl helper ended without an answer";
  while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {}
  return fd;
}

std::string abort_connection(int fusectl_fd, unsigned long conn) {
  std::string name = std::to_string(conn) + "/abort";
  kpc::Fd fd(openat(fusectl_fd, name.c_str(), O_WRONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return errno == ENOENT ? "" : "fusectl " + name + ": " + strerror(errno);  // ENOENT: already gone
  if (write(fd.get(), "1", 1) != 1) return "fusectl " + name + ": " + strerror(errno);
  return "";
}

std::optional<DeviceClone> DeviceClone::adopt(int devfd, unsigned long conn, std::string* why) {
  kpc::Fd dev(open("/dev/fuse", O_RDWR | O_NONBLOCK | O_CLOEXEC));
  if (!dev) {
    *why = std::string("open /dev/fuse: ") + strerror(errno);
    return std::nullopt;
  }
  uint32_t old = static_cast<uint32_t>(devfd);
  if (ioctl(dev.get(), FUSE_DEV_IOC_CLONE, &old) != 0) {
    *why = std::string("FUSE_DEV_IOC_CLONE: ") + strerror(errno);
    return std::nullopt;
  }
  return DeviceClone(dev.release(), conn);
}

DeviceClone::DeviceClone(DeviceClone&& o) noexcept : fd_(std::exchange(o.fd_, -1)), conn_(o.conn_) {}

DeviceClone::~DeviceClone() {
  if (fd_ >= 0) close(fd_);
}

int DeviceClone::answer_pending() {
  if (fd_ < 0) return -1;
  // The kernel refuses reads into a buffer smaller than a whole request
  // (up to max_write, 1 MiB with 256 pages, plus headers).
  static const std::unique_ptr<char[]> buf(new char[(1 << 20) + 8192]);
  int answered = 0;
  for (;;) {
    ssize_t n = read(fd_, buf.get(), (1 << 20) + 8192);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      if (errno == EAGAIN) return answered;
      close(fd_);  // ENODEV: the connection has ended
      fd_ = -1;
      return -1;
    }
    if (n < static_cast<ssize_t>(sizeof(fuse_in_header))) continue;
    fuse_in_header in;
    std::memcpy(&in, buf.get(), sizeof in);
    if (in.opcode == FUSE_FORGET || in.opcode == FUSE_BATCH_FORGET || in.opcode == FUSE_INTERRUPT) continue;
    fuse_out_header out{sizeof(fuse_out_header), -EIO, in.unique};
    if (write(fd_, &out, sizeof out) == sizeof out) ++answered;
  }
}

}  // namespace kpcl::fuse
