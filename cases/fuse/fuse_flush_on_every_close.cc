// fuse_flush_on_every_close: a FUSE server gets FLUSH on every close() of
// every descriptor of an open file (dup'd or inherited), RELEASE once, after
// the last one; close() returns the FLUSH answer's error, and closes anyway.
#include <fcntl.h>
#include <unistd.h>

#include <chrono>

#include "kpc/probe.h"
#include "kpc/testfs.h"

using kpc::testfs::Answer;
using kpc::testfs::Op;

namespace {

// 1. Mount the test filesystem in a private mount namespace, served by a
//    separate process, so close() here only talks to it through the kernel.
//    (Members are built in order: the namespace first. A constructor body
//    runs after the members -- the mount once landed in the host's mount
//    namespace, through libfuse's set-user-ID fusermount3 when unprivileged.)
struct PrivateMountNamespace {
  PrivateMountNamespace() { kpc::testfs::enter_private_mount_namespace(); }
};
struct Setup {
  PrivateMountNamespace ns;
  kpc::TempDir dir{"fuse"};
  std::unique_ptr<kpc::testfs::Server> fs = kpc::testfs::Server::start(dir.path(), kpc::testfs::Serve::process);
};

int every_descriptor() {
  Setup s;
  kpc::Fd fd(KPC_SYS(open(s.fs->file_path().c_str(), O_RDWR | O_CLOEXEC)));
  // 2. A child inherits the descriptor and exits without closing it: its
  //    exit closes the copy, which is a close like any other.
  kpc::fork_child([] { _exit(0); }).wait();
  s.fs->wait_count(Op::FLUSH, 1, 1000);
  kpc::observe("flushes.after_child_exit", s.fs->count(Op::FLUSH));

  // 3. Two dups; close all three, counting FLUSH and RELEASE after each.
  int fds[3] = {fd.release(), KPC_SYS(dup(fds[0])), KPC_SYS(dup(fds[0]))};
  std::string counts;
  int releases_while_open = 0;
  for (int i = 0; i < 3; ++i) {
    KPC_SYS(close(fds[i]));
    counts += (i ? "," : "") + std::to_string(s.fs->count(Op::FLUSH));
    if (i < 2) releases_while_open += s.fs->count(Op::RELEASE);
  }
  kpc::observe("flushes.after_each_close", counts);
  kpc::observe("releases.while_a_descriptor_is_open", releases_while_open);
  // 4. RELEASE may be sent asynchronously after the last close: wait for it.
  s.fs->wait_count(Op::RELEASE, 1, 2000);
  kpc::observe("releases.after_last_close", s.fs->count(Op::RELEASE));
  return 0;
}

// The server answers FLUSH with `err`; what does close() return?
int flush_fails(int err) {
  Setup s;
  s.fs->set_flush(Answer::fail, err);
  for (int i = 1; i <= 2; ++i) {
    int fd = KPC_SYS(open(s.fs->file_path().c_str(), O_RDWR | O_CLOEXEC));
    long rc = close(fd);
    kpc::observe_result("close_" + std::to_string(i), rc, errno);
    kpc::observe("fd_still_open_after_close_" + std::to_string(i), fcntl(fd, F_GETFD) != -1);
  }
  // ENOSYS tells the kernel the filesystem has no flush: is it asked again?
  kpc::observe("flushes.after_two_closes", s.fs->count(Op::FLUSH));
  return 0;
}

// The server answers FLUSH only after 300 ms: close() waits for it.
int flush_late() {
  Setup s;
  s.fs->set_flush(Answer::late, 300);
  int fd = KPC_SYS(open(s.fs->file_path().c_str(), O_RDWR | O_CLOEXEC));
  auto start = std::chrono::steady_clock::now();
  long rc = close(fd);
  int err = errno;
  auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
  kpc::observe_result("close_1", rc, err);
  kpc::observe("close_waited_for_the_answer", waited.count() >= 300);
  kpc::note("close_ms", waited.count());
  return 0;
}

}  // namespace

int probe_main(kpc::Probe& p) {
  return p.dispatch({
      {"every_descriptor", every_descriptor},
      {"flush_eio", [] { return flush_fails(EIO); }},
      {"flush_enosys", [] { return flush_fails(ENOSYS); }},
      {"flush_late", flush_late},
  });
}
