// The FUSE test filesystem (see kpc/testfs.h).
#define FUSE_USE_VERSION 34
#include "kpc/testfs.h"

#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "kpc/check.h"
#include "kpc/proc.h"
#include "kpc/raii.h"
#include "kpc/record.h"
#include "kpc/supervisor.h"

namespace kpc::testfs {

struct Shared {
  std::atomic<int> counts[static_cast<int>(Op::count_)];
  std::atomic<int> flush_answer, flush_arg, read_answer, read_arg;
  std::atomic<int> unanswered;
  std::atomic<int> noflush;  // OPEN replies carry FOPEN_NOFLUSH
  // Process mode: the child's startup result.
  std::atomic<int> ready;  // 0 starting, 1 serving, -1 failed (see error)
  std::atomic<unsigned long> conn;
  std::atomic<int> exit_delay_ms;  // delay_thread_exit_for_test()
  char error[512];
};

namespace {

constexpr fuse_ino_t kRoot = FUSE_ROOT_ID;
constexpr fuse_ino_t kFile = 2;
constexpr off_t kFileSize = 4096;
constexpr long kFusectlMagic = 0x65735543;
const int kWakeSignal = SIGRTMIN + 7;  // interrupts the serving thread's read
// Set by enter_private_mount_namespace(): a test filesystem is mounted
// nowhere else (see Server::start).
bool g_private_mount_namespace = false;

Shared* S(fuse_req_t req) { return static_cast<Shared*>(fuse_req_userdata(req)); }
void bump(Shared* s, Op op) { s->counts[static_cast<int>(op)].fetch_add(1); }

struct stat attr_of(fuse_ino_t ino) {
  struct stat st {};
  st.st_ino = ino;
  if (ino == kRoot) {
    st.st_mode = S_IFDIR | 0755;
    st.st_nlink = 2;
  } else {
    st.st_mode = S_IFREG | 0666;
    st.st_nlink = 1;
    st.st_size = kFileSize;
  }
  return st;
}

// Answers per the configured behaviour; returns false when the request was
// deliberately left pending.
bool answer(fuse_req_t req, const std::atomic<int>& how, const std::atomic<int>& arg, int* err_out) {
  *err_out = 0;
  switch (static_cast<Answer>(how.load())) {
    case Answer::now:
      return true;
    case Answer::late:
      std::this_thread::sleep_for(std::chrono::milliseconds(arg.load()));
      return true;
    case Answer::never:
      S(req)->unanswered.fetch_add(1);
      return false;
    case Answer::fail:
      *err_out = arg.load();
      return true;
  }
  return true;
}

void op_init(void* data, struct fuse_conn_info*) { static_cast<Shared*>(data)->counts[int(Op::INIT)]++; }
void op_destroy(void* data) { static_cast<Shared*>(data)->counts[int(Op::DESTROY)]++; }

void op_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  bump(S(req), Op::LOOKUP);
  if (parent != kRoot || strcmp(name, "file") != 0) {
    fuse_reply_err(req, ENOENT);
    return;
  }
  fuse_entry_param e{};
  e.ino = kFile;
  e.attr = attr_of(kFile);
  e.attr_timeout = e.entry_timeout = 3600;
  fuse_reply_entry(req, &e);
}

void op_forget(fuse_req_t req, fuse_ino_t, uint64_t) {
  bump(S(req), Op::FORGET);
  fuse_reply_none(req);
}

void op_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  bump(S(req), Op::GETATTR);
  struct stat st = attr_of(ino);
  fuse_reply_attr(req, &st, 3600);
}

void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat*, int, fuse_file_info*) {
  bump(S(req), Op::SETATTR);
  struct stat st = attr_of(ino);
  fuse_reply_attr(req, &st, 3600);
}

template <typename FileInfo>
constexpr bool kHasNoflush = requires(FileInfo f) {
  f.noflush = 1;
};

template <typename FileInfo>
void set_noflush_flag(FileInfo* fi, bool on) {
  if constexpr (kHasNoflush<FileInfo>) fi->noflush = on ? 1 : 0;
}

void op_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  bump(S(req), Op::OPEN);
  if (ino != kFile) {
    fuse_reply_err(req, EISDIR);
    return;
  }
  fi->direct_io = 1;  // every read() reaches the server, none is served from the page cache
  set_noflush_flag(fi, S(req)->noflush.load());
  fuse_reply_open(req, fi);
}

void op_read(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info*) {
  Shared* s = S(req);
  bump(s, Op::READ);
  int err;
  if (!answer(req, s->read_answer, s->read_arg, &err)) return;
  if (err) {
    fuse_reply_err(req, err);
    return;
  }
  static const std::string content(kFileSize, 'k');
  size_t n = off >= kFileSize ? 0 : std::min<size_t>(size, kFileSize - off);
  fuse_reply_buf(req, content.data() + (n ? off : 0), n);
}

void op_write(fuse_req_t req, fuse_ino_t, const char*, size_t size, off_t, fuse_file_info*) {
  bump(S(req), Op::WRITE);
  fuse_reply_write(req, size);
}

void op_flush(fuse_req_t req, fuse_ino_t, fuse_file_info*) {
  Shared* s = S(req);
  bump(s, Op::FLUSH);
  int err;
  if (answer(req, s->flush_answer, s->flush_arg, &err)) fuse_reply_err(req, err);
}

void op_release(fuse_req_t req, fuse_ino_t, fuse_file_info*) {
  bump(S(req), Op::RELEASE);
  fuse_reply_err(req, 0);
}

void op_opendir(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  bump(S(req), Op::OPENDIR);
  fuse_reply_open(req, fi);
}

void op_readdir(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info*) {
  bump(S(req), Op::READDIR);
  char buf[512];
  size_t used = 0;
  const char* names[] = {".", "..", "file"};
  for (off_t i = off; i < 3; ++i) {
    struct stat st = attr_of(i == 2 ? kFile : kRoot);
    size_t need = fuse_add_direntry(req, buf + used, std::min(sizeof buf, size) - used, names[i], &st, i + 1);
    if (need > std::min(sizeof buf, size) - used) break;
    used += need;
  }
  fuse_reply_buf(req, buf, used);
}

void op_releasedir(fuse_req_t req, fuse_ino_t, fuse_file_info*) {
  bump(S(req), Op::RELEASEDIR);
  fuse_reply_err(req, 0);
}

void op_statfs(fuse_req_t req, fuse_ino_t) {
  bump(S(req), Op::STATFS);
  struct statvfs st {};
  st.f_bsize = 4096;
  st.f_namemax = 255;
  fuse_reply_statfs(req, &st);
}

const fuse_lowlevel_ops kOps = [] {
  fuse_lowlevel_ops o{};
  o.init = op_init;
  o.destroy = op_destroy;
  o.lookup = op_lookup;
  o.forget = op_forget;
  o.getattr = op_getattr;
  o.setattr = op_setattr;
  o.open = op_open;
  o.read = op_read;
  o.write = op_write;
  o.flush = op_flush;
  o.release = op_release;
  o.opendir = op_opendir;
  o.readdir = op_readdir;
  o.releasedir = op_releasedir;
  o.statfs = op_statfs;
  return o;
}();

// Why FUSE cannot be used here, or "" when /dev/fuse opens.
std::string devfuse_problem() {
  int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
  if (fd >= 0) {
    close(fd);
    return "";
  }
  return std::string("/dev/fuse: ") + strerror(errno) +
         (errno == ENOENT   ? " (no FUSE device here; load the fuse module or add the device)"
          : errno == EACCES ? " (the device's permissions exclude this user)"
                            : "");
}

// The mount's device minor from our mountinfo: no request to the server.
unsigned long connection_of(const std::string& mountpoint) {
  KPC_CHECK(read_text("/proc/thread-self/mountinfo").has_value());
  auto conns = connections_at(mountpoint);
  KPC_CHECK_MSG(!conns.empty(), "the FUSE mount on " + mountpoint + " is not in mountinfo");
  return conns.back();  // last one wins
}

// Creates the session and mounts; "" or an error text (libfuse prints its
// own details to stderr).
std::string mount_session(Shared* shared, const std::string& mountpoint, fuse_session** out) {
  const char* argv[] = {"kpc-testfs", "-o", "fsname=kpc-testfs,subtype=kpctest", nullptr};
  fuse_args args = FUSE_ARGS_INIT(3, const_cast<char**>(argv));
  fuse_session* se = fuse_session_new(&args, &kOps, sizeof kOps, shared);
  fuse_opt_free_args(&args);
  if (!se) return "fuse_session_new failed";
  if (fuse_session_mount(se, mountpoint.c_str()) != 0) {
    fuse_session_destroy(se);
    return "mounting FUSE on " + mountpoint + " failed (see stderr; EPERM means no privilege to mount)";
  }
  *out = se;
  return "";
}

void ignore_wake(int) {}

bool fusectl_mounted() {
  struct statfs fs {};
  return statfs("/sys/fs/fuse/connections", &fs) == 0 && fs.f_type == kFusectlMagic;
}

// Root of the initial user namespace: may mount fusectl (abort_connection).
bool may_mount_fusectl() {
  auto map = read_text("/proc/self/uid_map");
  if (!map || map->find("4294967295") == std::string::npos) return false;  // not the initial user namespace
  auto status = read_text("/proc/self/status");
  if (!status) return false;
  auto at = status->find("\nCapEff:\t");
  if (at == std::string::npos) return false;
  unsigned long long eff = strtoull(status->c_str() + at + 9, nullptr, 16);
  return (eff >> 21) & 1;  // CAP_SYS_ADMIN
}

// A server that is a thread of the process holding files of its mount
// deadlocks when that process dies (fuse_self_served_exit). Build one only
// when somebody can undo that: say who, or skip.
void require_recovery_for_self_serving() {
  std::string how = supervisor::fuse_recovery();
  if (how == supervisor::kFusectl || how == supervisor::kDevice) return;
  if (!how.empty()) kpc::broken("unknown " + std::string(supervisor::kFuseRecoveryEnv) + "=" + how);
  // Run by hand: only our own abort (fusectl) can free it.
  if (!fusectl_mounted() && !may_mount_fusectl())
    kpc::skip(
        "a self-served FUSE mount can deadlock, and nothing here could undo that: run it under kpc-launch "
        "(./kpc run), or as root");
}

}  // namespace

const char* op_name(Op op) {
  static const char* const names[] = {"INIT",    "DESTROY", "LOOKUP",  "FORGET",     "GETATTR",
                                      "SETATTR", "OPEN",    "READ",    "WRITE",      "FLUSH",
                                      "RELEASE", "OPENDIR", "READDIR", "RELEASEDIR", "STATFS"};
  static_assert(sizeof names / sizeof *names == static_cast<size_t>(Op::count_));
  return names[static_cast<int>(op)];
}

std::unique_ptr<Server> Server::start(const std::string& mountpoint, Serve how) {
  // Never in a shared mount namespace: as root the mount would be the
  // machine's; unprivileged, libfuse would fall back to the set-user-ID
  // fusermount3, which mounts in the caller's namespace and leaves the
  // mount behind when the probe dies.
  KPC_CHECK_MSG(g_private_mount_namespace, "testfs::Server::start before enter_private_mount_namespace()");
  if (auto why = devfuse_problem(); !why.empty()) kpc::skip(why);
  std::unique_ptr<Server> s(new Server());
  s->mountpoint_ = mountpoint;
  void* mem = mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  KPC_CHECK_MSG(mem != MAP_FAILED, std::string("mmap: ") + strerror(errno));
  s->shared_ = new (mem) Shared();

  if (how == Serve::thread) {
    require_recovery_for_self_serving();
    std::string err = mount_session(s->shared_, mountpoint, &s->session_);
    if (!err.empty()) kpc::skip(err);
    s->devfuse_fd_ = fuse_session_fd(s->session_);
    s->conn_ = connection_of(mountpoint);
    if (supervisor::fuse_recovery() == supervisor::kDevice) {
      // The supervisor can answer this connection's requests only through
      // a descriptor of it: hand it one before anything can get stuck.
      std::string why = supervisor::deposit_fuse_device(s->devfuse_fd_, s->conn_);
      if (!why.empty()) kpc::broken("FUSE recovery without privilege: " + why);
      kpc::note("fuse_recovery", "device deposited with the supervisor");
    }
    struct sigaction sa {};
    sa.sa_handler = ignore_wake;  // no SA_RESTART: the read returns EINTR
    sigaction(kWakeSignal, &sa, nullptr);
    s->serving_ = pthread_create(&s->thread_, nullptr, serve_thread, s.get()) == 0;
    KPC_CHECK_MSG(s->serving_, "pthread_create failed");
  } else {
    Shared* shared = s->shared_;
    pid_t pid = fork_or_broken();
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);  // the probe's death ends its server
      fuse_session* se = nullptr;
      std::string err = mount_session(shared, mountpoint, &se);
      if (!err.empty()) {
        snprintf(shared->error, sizeof shared->error, "%s", err.c_str());
        shared->ready = -1;
        _exit(1);
      }
      shared->conn = connection_of(mountpoint);
      shared->ready = 1;
      fuse_session_loop(se);
      _exit(0);  // no unmount: the caller owns the mount's lifetime
    }
    s->server_pid_ = pid;
    const int64_t deadline = monotonic_ms() + 5000;
    while (shared->ready == 0) {
      int st;
      if (waitpid(pid, &st, WNOHANG) == pid) {
        s->server_pid_ = -1;
        if (shared->ready == 0)
          kpc::broken("the FUSE server process ended during startup: " + describe_wait_status(st));
      }
      KPC_CHECK_MSG(monotonic_ms() < deadline, "the FUSE server process did not start within 5 s");
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    if (shared->ready < 0) kpc::skip(shared->error);
    s->conn_ = shared->conn;
  }
  announce_fuse_connection(s->conn_);
  return s;
}

Server::~Server() {
  if (abandoned_) return;
  if (server_pid_ > 0) {
    // Detach first: once nothing holds a file of it, the kernel ends the
    // connection and the server's read() returns; the kill ends it anyway.
    umount2(mountpoint_.c_str(), MNT_DETACH);
    kill(server_pid_, SIGKILL);
    waitpid(server_pid_, nullptr, 0);
  }
  if (serving_) {
    // Thread mode: stop the thread while the mount is still attached. The
    // thread may sit in read(/dev/fuse) of a connection that files still
    // pin: wake it (EINTR ends the loop), and if it is still serving after
    // a while, end the connection itself -- through the mount, which pins
    // the connection's number. (Detaching first and aborting N later
    // aborted *another* mount: a connection that ends frees its number, the
    // next FUSE mount on the machine gets it, and on a loaded machine the
    // thread can take 200 ms to notice. Other runs' fresh mounts said
    // ENOTCONN or ECONNABORTED beside a second kpc.)
    fuse_session_exit(session_);
    for (int i = 0;; ++i) {
      pthread_kill(thread_, kWakeSignal);
      timespec deadline;
      clock_gettime(CLOCK_REALTIME, &deadline);
      deadline.tv_nsec += 20'000'000;
      if (deadline.tv_nsec >= 1'000'000'000) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1'000'000'000;
      }
      if (pthread_timedjoin_np(thread_, nullptr, &deadline) == 0) break;
      if (i == 10) abort_mount(mountpoint_);
      if (i == 100) {
        pthread_detach(thread_);  // give up; the process's exit ends it
        break;
      }
    }
    fuse_session_destroy(session_);
    umount2(mountpoint_.c_str(), MNT_DETACH);
  }
  if (shared_) munmap(shared_, sizeof(Shared));
}

void Server::delay_thread_exit_for_test(int ms) { shared_->exit_delay_ms = ms; }

// A pthread, not a std::thread: the destructor joins it with a deadline
// (pthread_timedjoin_np), which std::thread cannot be told about.
void* Server::serve_thread(void* self) {
  auto* s = static_cast<Server*>(self);
  fuse_session_loop(s->session_);
  if (int ms = s->shared_->exit_delay_ms.load()) std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return nullptr;
}

void Server::set_flush(Answer a, int arg) {
  shared_->flush_arg = arg;
  shared_->flush_answer = static_cast<int>(a);
}

bool Server::can_noflush() { return kHasNoflush<fuse_file_info>; }

std::string Server::libfuse_version() {
  return std::to_string(FUSE_MAJOR_VERSION) + "." + std::to_string(FUSE_MINOR_VERSION);
}

void Server::set_noflush(bool on) {
  if (on && !can_noflush())
    kpc::broken("set_noflush: this libfuse cannot send FOPEN_NOFLUSH (check can_noflush() first)");
  shared_->noflush = on ? 1 : 0;
}

void Server::set_read(Answer a, int arg) {
  shared_->read_arg = arg;
  shared_->read_answer = static_cast<int>(a);
}

int Server::count(Op op) const { return shared_->counts[static_cast<int>(op)].load(); }

namespace {
// Polls `done` every millisecond until it holds or `timeout_ms` (a real
// deadline) has passed; the answer is done() at the end.
template <class Done>
bool poll_until(Done done, int timeout_ms) {
  const int64_t deadline = monotonic_ms() + timeout_ms;
  while (!done()) {
    if (monotonic_ms() >= deadline) return done();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}
}  // namespace

bool Server::wait_count(Op op, int n, int timeout_ms) const {
  return poll_until([&] { return count(op) >= n; }, timeout_ms);
}

int Server::unanswered() const { return shared_->unanswered.load(); }

bool Server::wait_unanswered(int n, int timeout_ms) const {
  return poll_until([&] { return unanswered() >= n; }, timeout_ms);
}

void Server::kill_server() {
  KPC_CHECK_MSG(server_pid_ > 0, "kill_server() needs a server process (Serve::process)");
  kill(server_pid_, SIGKILL);
  waitpid(server_pid_, nullptr, 0);
  server_pid_ = -1;
}

void enter_private_mount_namespace() {
  kpc::enter_private_mount_namespace();  // skips in a chroot, where / is not a mount point
  g_private_mount_namespace = true;
}

void skip_unless_abort_recovery(const std::string& why) {
  if (supervisor::fuse_recovery() == supervisor::kDevice)
    kpc::skip(
        "without root (and with no fusectl mounted) kpc can free a FUSE deadlock only by holding a /dev/fuse "
        "descriptor of the connection, and here that would decide the outcome: " +
        why);
}

std::string abort_connection(unsigned long conn) {
  const char* dir = "/sys/fs/fuse/connections";
  struct statfs fs {};
  if (statfs(dir, &fs) != 0) return std::string(dir) + ": " + strerror(errno);
  if (fs.f_type != kFusectlMagic && mount("fusectl", dir, "fusectl", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0)
    return std::string("mount fusectl on ") + dir + ": " + strerror(errno);
  std::string path = std::string(dir) + "/" + std::to_string(conn) + "/abort";
  Fd fd(open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) return path + ": " + strerror(errno);
  if (write(fd.get(), "1", 1) != 1) return path + ": " + strerror(errno);
  return "";
}

void Server::exit_holding_files(int ready_fd) {
  abandon();
  send_byte(ready_fd);
  mark("deadlock-armed");
  _exit(0);
}

std::string abort_mount(const std::string& mountpoint) {
  std::string errors;
  for (unsigned long conn : connections_at(mountpoint)) errors += abort_connection(conn);
  return errors;
}

std::vector<unsigned long> connections_at(const std::string& mountpoint) {
  std::vector<unsigned long> out;
  for (const auto& m : parse_mountinfo(read_text("/proc/thread-self/mountinfo").value_or("")))
    if (m.mount_point == mountpoint && m.fs_type.starts_with("fuse")) out.push_back(m.minor);
  return out;
}

}  // namespace kpc::testfs
