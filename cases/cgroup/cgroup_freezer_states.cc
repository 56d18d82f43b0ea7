// cgroup_freezer_states: writing 1 to cgroup.freeze (5.2) freezes every
// task of the cgroup; cgroup.events says "frozen 1" once all are frozen.
// Which tasks can be frozen?
//   variant sleeping:   a task asleep in read(2): frozen
//   variant stopped:    a task stopped by SIGSTOP: frozen (it stays stopped after the thaw)
//   variant vfork:      a parent waiting in vfork for its child, and the child
//   variant fuse_stuck: a task waiting for a FUSE server that never answers
//                       (the server runs outside the cgroup) -- no peer tests it;
//                       kubelet and suspend hang on it (systemd#37590)
// The probe waits for "frozen 1" (up to 5 s) -- or, for the FUSE-stuck
// member, until it is back asleep uninterruptibly -- records it, thaws, and
// releases whatever it blocked.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <memory>
#include <optional>

#include "kpc/cgroup2.h"
#include "kpc/probe.h"
#include "kpc/proc.h"
#include "kpc/testfs.h"

int probe_main(kpc::Probe& p) {
  enum class Member { sleeping, stopped, vfork, fuse_stuck };
  Member m = Member::sleeping;
  auto member_is = [&](Member kind) {
    m = kind;
    return 0;
  };
  p.dispatch({
      {"sleeping", [&] { return member_is(Member::sleeping); }},
      {"stopped", [&] { return member_is(Member::stopped); }},
      {"vfork", [&] { return member_is(Member::vfork); }},
      {"fuse_stuck", [&] { return member_is(Member::fuse_stuck); }},
  });
  std::unique_ptr<kpc::testfs::Server> fs;
  kpc::TempDir mnt("fuse");
  if (m == Member::fuse_stuck) {
    kpc::testfs::enter_private_mount_namespace();
    fs = kpc::testfs::Server::start(mnt.path(), kpc::testfs::Serve::process);
    fs->set_read(kpc::testfs::Answer::never);
  }
  auto cg = kpc::cgroup2::Scratch::create("freeze");
  if (!cg->read("cgroup.freeze")) kpc::skip("no cgroup.freeze (cgroup v2 freezer, Linux 5.2)");
  kpc::Pipe go = kpc::Pipe::make(O_CLOEXEC), ready = kpc::Pipe::make(O_CLOEXEC);
  // 1. The member.
  kpc::Child member = kpc::fork_child([&] {
    go.write.reset();
    if (m == Member::vfork) {
      pid_t c = vfork();
      if (c == 0) {  // raw calls only: the parent's memory
        char b;
        (void)!read(go.read.get(), &b, 1);
        _exit(0);
      }
      int st;
      waitpid(c, &st, 0);
      return;
    }
    if (m == Member::fuse_stuck) {
      int fd = open(fs->file_path().c_str(), O_RDONLY);
      char b[16];
      if (fd >= 0) (void)!read(fd, b, sizeof b);  // never answered
      return;
    }
    kpc::recv_byte(go.read.get(), 20000);
  });
  cg->move(member.pid());
  switch (m) {
    case Member::stopped: {
      KPC_SYS(kill(member.pid(), SIGSTOP));
      int st;
      KPC_SYS(waitpid(member.pid(), &st, WUNTRACED));
      break;
    }
    case Member::fuse_stuck:
      KPC_CHECK_MSG(fs->wait_unanswered(1, 5000), "the member's READ never reached the server");
      break;
    case Member::vfork:
      KPC_CHECK(kpc::wait_for_state(member.pid(), 'D', 5000) == 'D');  // in the vfork wait
      break;
    case Member::sleeping:
      KPC_CHECK(kpc::wait_for_state(member.pid(), 'S', 5000) == 'S');
      break;
  }
  // 2. Freeze; does the cgroup get there?
  std::string w = cg->write("cgroup.freeze", "1");
  KPC_CHECK_MSG(w.empty(), "cgroup.freeze: " + w);
  // The FUSE-stuck member answers the freezer's wake-up by going back to
  // sleep uninterruptibly (D): from then on nothing will freeze it. Wait for
  // frozen, or for that (and then 100 ms more).
  std::optional<long> frozen;
  for (int i = 0; i < 5000; ++i) {
    frozen = cg->key("cgroup.events", "frozen");
    if (frozen && *frozen == 1) break;
    if (m == Member::fuse_stuck && kpc::wait_for_state(member.pid(), 'D', 0) == 'D') {
      frozen = cg->wait_key("cgroup.events", "frozen", 1, 100);
      break;
    }
    usleep(1000);
  }
  kpc::observe("frozen", frozen && *frozen == 1);
  // 3. Thaw, release, collect.
  KPC_CHECK(cg->write("cgroup.freeze", "0").empty());
  kpc::observe("thawed", cg->wait_key("cgroup.events", "frozen", 0, 2000).value_or(-1) == 0);
  if (m == Member::stopped) KPC_SYS(kill(member.pid(), SIGCONT));
  if (m == Member::fuse_stuck) fs->kill_server();  // the connection ends: the READ fails
  kpc::send_byte(go.write.get());
  kpc::observe("member.status", kpc::describe_wait_status(member.wait()));
  return 0;
}
