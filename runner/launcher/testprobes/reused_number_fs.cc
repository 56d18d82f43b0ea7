// reused_number_fs DIR: does ending a test filesystem ever abort somebody
// else's FUSE mount? (Issue 15, item 4's second path.) A FUSE connection's
// number N (/sys/fs/fuse/connections/N) is its superblock's minor, from an
// allocator that hands out the lowest free number: when a connection ends,
// the next FUSE mount on the machine -- another run's, another kpc's,
// anyone's -- gets its N. Whoever aborts "N" after that aborts the stranger.
//
// 1. Mount A (testfs, thread mode) on DIR/a; its serving thread is made to
//    linger 600 ms after its loop ends, as it can on a loaded machine.
// 2. End A (its destructor) in another thread. Meanwhile, as soon as A's
//    connection is gone, mount B -- the stranger -- on DIR/b: it gets A's
//    old number when nothing else on the machine took it first.
// 3. When A is ended, B must still answer.
// Prints "a N", "b M", "b_stat ok|<errno name>". Run as root by
// runner/tests/test_security.py; not a case.
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include "kpc/probe.h"
#include "kpc/record.h"
#include "kpc/testfs.h"

namespace {
constexpr long kFusectlMagic = 0x65735543;

bool connection_exists(unsigned long n) {
  struct stat st;
  return stat(("/sys/fs/fuse/connections/" + std::to_string(n)).c_str(), &st) == 0;
}
}  // namespace

int probe_main(kpc::Probe& p) {
  if (p.args.size() != 1) kpc::broken("usage: reused_number_fs DIR");
  const std::string a_dir = p.args[0] + "/a", b_dir = p.args[0] + "/b";
  KPC_SYS(mkdir(a_dir.c_str(), 0700));
  KPC_SYS(mkdir(b_dir.c_str(), 0700));
  kpc::testfs::enter_private_mount_namespace();
  struct statfs fs {};
  if (statfs("/sys/fs/fuse/connections", &fs) != 0 || fs.f_type != kFusectlMagic)
    KPC_SYS(mount("fusectl", "/sys/fs/fuse/connections", "fusectl", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr));

  // 1.
  auto a = kpc::testfs::Server::start(a_dir, kpc::testfs::Serve::thread);
  const unsigned long a_conn = a->connection();
  a->delay_thread_exit_for_test(600);
  std::printf("a %lu\n", a_conn);

  // 2.
  std::thread ender([&a] { a.reset(); });
  std::unique_ptr<kpc::testfs::Server> b;
  for (int ms = 0; ms < 400 && !b; ++ms) {
    if (!connection_exists(a_conn)) b = kpc::testfs::Server::start(b_dir, kpc::testfs::Serve::process);
    else std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ender.join();
  if (!b) b = kpc::testfs::Server::start(b_dir, kpc::testfs::Serve::process);  // A ended only now
  std::printf("b %lu\n", b->connection());

  // 3.
  struct stat st;
  int rc = stat(b->file_path().c_str(), &st);
  std::printf("b_stat %s\n", rc == 0 ? "ok" : kpc::errno_name(errno).c_str());
  std::fflush(stdout);
  return 0;
}
