// kpc's FUSE test filesystem: one directory with one file, served through
// libfuse3's low-level API, whose answers a case controls and whose requests
// it counts by opcode.
//
//   kpc::testfs::enter_private_mount_namespace();   // mounts stay ours
//   kpc::TempDir dir("fuse");
//   auto fs = kpc::testfs::Server::start(dir.path(), kpc::testfs::Serve::process);
//   fs->set_flush(kpc::testfs::Answer::never);
//   int fd = open(fs->file_path().c_str(), O_RDWR);
//   ... close(fd) now waits for a FLUSH answer that never comes ...
//
// Behaviour and counters live in shared memory, so they work the same when
// the server is a thread of the probe or a separate process.
#pragma once

#include <pthread.h>
#include <sys/types.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

struct fuse_session;  // libfuse's

namespace kpc::testfs {

// How the server answers a kind of request.
enum class Answer : int {
  now,    // at once
  late,   // after the configured delay
  never,  // not at all: the request stays pending until the connection ends
  fail,   // at once, with the configured errno
};

// The requests the server counts (FUSE opcode names).
enum class Op : int {
  INIT,
  DESTROY,
  LOOKUP,
  FORGET,
  GETATTR,
  SETATTR,
  OPEN,
  READ,
  WRITE,
  FLUSH,
  RELEASE,
  OPENDIR,
  READDIR,
  RELEASEDIR,
  STATFS,
  count_
};
const char* op_name(Op op);

enum class Serve {
  thread,   // a thread of the calling process serves (its /dev/fuse fd is ours)
  process,  // a forked child serves; the caller holds no /dev/fuse fd
};

struct Shared;  // the shared-memory block

class Server {
 public:
  // Mounts a fresh test filesystem on `mountpoint` (an existing directory)
  // and starts serving. Skips the probe (kpc::skip) when /dev/fuse is
  // missing or mounting FUSE is not permitted here.
  static std::unique_ptr<Server> start(const std::string& mountpoint, Serve how);
  // Stops serving, detaches the mount and reaps the server process (thread
  // mode: stops the thread first, then detaches).
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  const std::string& mountpoint() const { return mountpoint_; }
  std::string file_path() const { return mountpoint_ + "/file"; }
  // N of /sys/fs/fuse/connections/N (also announced to the launcher).
  unsigned long connection() const { return conn_; }
  // Thread mode: this process's /dev/fuse descriptor. Process mode: -1.
  int devfuse_fd() const { return devfuse_fd_; }
  pid_t server_pid() const { return server_pid_; }

  void set_flush(Answer a, int arg = 0);  // arg: delay ms (late) or errno (fail)
  void set_read(Answer a, int arg = 0);
  // Files opened from now on get FOPEN_NOFLUSH (FUSE 7.35, Linux 5.16): the
  // kernel sends no FLUSH when they are closed. An older kernel ignores it.
  void set_noflush(bool on);
  // Whether this libfuse can send FOPEN_NOFLUSH at all (its fuse_file_info
  // has `noflush`: not Debian 11's 3.10). A case that needs it skips first.
  static bool can_noflush();
  static std::string libfuse_version();  // "3.14", the headers kpc was built with
  int count(Op op) const;
  // Polls (1 ms steps) until count(op) >= n; false on timeout.
  bool wait_count(Op op, int n, int timeout_ms) const;
  // Requests received and deliberately left unanswered.
  int unanswered() const;
  bool wait_unanswered(int n, int timeout_ms) const;

  // Process mode: SIGKILL the server and reap it. Its /dev/fuse descriptor
  // was the connection's only one, so the kernel ends the connection.
  void kill_server();
  // Forget the server without stopping it (the probe is about to exit with
  // it, on purpose). The destructor then does nothing.
  void abandon() { abandoned_ = true; }
  // abandon(), tell the probe on ready_fd, mark "deadlock-armed" and
  // _exit(0) with whatever files of the mount this process holds: the
  // self-served exit that deadlocks while the server is a thread of it.
  [[noreturn]] void exit_holding_files(int ready_fd);
  // Thread mode, for kpc's own tests: the serving thread lingers `ms` after
  // its loop ends, as it can on a loaded machine (the destructor must not
  // act on the connection's number meanwhile: runner/tests/test_security.py).
  void delay_thread_exit_for_test(int ms);

 private:
  Server() = default;
  std::string mountpoint_;
  unsigned long conn_ = 0;
  int devfuse_fd_ = -1;
  pid_t server_pid_ = -1;
  Shared* shared_ = nullptr;
  ::fuse_session* session_ = nullptr;  // thread mode
  static void* serve_thread(void* self);
  pthread_t thread_{};    // thread mode
  bool serving_ = false;  // thread_ runs
  bool abandoned_ = false;
};

// unshare(CLONE_NEWNS) and make every mount private, so the test
// filesystem is invisible outside and vanishes with the namespace. Skips
// the probe when not permitted.
void enter_private_mount_namespace();

// Serve::thread builds a server whose death, while its process holds a file
// of the mount, deadlocks. It is started only when somebody can undo that
// (kpc/supervisor.h): the launcher, through fusectl or -- without privilege
// -- through a /dev/fuse descriptor the server deposits with it at mount
// time; run by hand, only root. Otherwise the probe skips.
//
// That deposited descriptor keeps the connection alive: it must not decide
// what the case observes. A case whose outcome depends on the kernel
// releasing the process's /dev/fuse file (a file of the mount closed after
// /dev/fuse, say) calls this first: it skips, saying `why`, when the
// launcher could only recover that way.
void skip_unless_abort_recovery(const std::string& why);

// Writes "1" to /sys/fs/fuse/connections/N/abort (mounting fusectl in the
// caller's mount namespace when missing). Returns "" or what failed.
std::string abort_connection(unsigned long conn);

// Aborts every FUSE connection mounted on `mountpoint` (as this process's
// mountinfo shows it): how a probe run by hand frees a task it saw stuck.
// Returns "" or what failed.
std::string abort_mount(const std::string& mountpoint);

// The FUSE connections (device minors) mounted on `mountpoint`, oldest
// first, as the calling thread's mountinfo shows them; empty when none.
std::vector<unsigned long> connections_at(const std::string& mountpoint);

// Whether a FUSE filesystem is mounted on `mountpoint` (any server: the
// test filesystem or a libfuse daemon of the probe's own).
inline bool fuse_mounted(const std::string& mountpoint) { return !connections_at(mountpoint).empty(); }

}  // namespace kpc::testfs
