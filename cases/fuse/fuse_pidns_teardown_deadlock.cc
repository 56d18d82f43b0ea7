// fuse_pidns_teardown_deadlock: story 002's exact shape. A PID namespace
// holds a FUSE server that serves its own mount from a thread while its
// main thread keeps a file of that mount open. The namespace's init exits:
// the kernel SIGKILLs the server (zap_pid_ns_processes); the server's last
// exiting thread closes the file, FLUSH goes to a server that no longer
// reads, and the init waits for it forever. The namespace accepts no new
// process meanwhile: setns() into it works, fork() there fails.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "kpc/probe.h"
#include "kpc/proc.h"
#include "kpc/testfs.h"

namespace {

// True once the namespace's teardown has begun, so that no fork can enter
// it any more. zap_pid_ns_processes disables PID allocation first, then
// SIGKILLs every member: the member with SIGKILL pending, exiting, a
// zombie or gone says so, and one of these stays true from then on. (A
// /proc read that fails means gone only when kill(2) agrees.) Init's own
// state says less: it also sleeps in do_exit before zap_pid_ns_processes
// and runs again. Read twice under load -- asleep, then running -- it made
// this probe break, and read too early the fork below could have entered
// the namespace.
bool teardown_began(pid_t member) {
  auto st = kpc::read_stat(member);
  if (!st) return kpc::pid_gone(member);
  if (st->state == 'Z' || st->state == 'X' || (st->flags & kpc::kPfExiting)) return true;
  auto status = kpc::read_status(member);
  if (!status) return kpc::pid_gone(member);
  return status->sig_pnd.has(SIGKILL) || status->shd_pnd.has(SIGKILL);
}

}  // namespace

int probe_main(kpc::Probe&) {
  // The member's file is above its /dev/fuse descriptor: a /dev/fuse
  // descriptor held by the supervisor would keep the connection alive past
  // the member's exit, which is what this case watches.
  kpc::testfs::skip_unless_abort_recovery(
      "the member's file is above its /dev/fuse descriptor, so whether the "
      "exit releases /dev/fuse first is part of what is observed");
  kpc::testfs::enter_private_mount_namespace();
  kpc::TempDir dir("fuse");
  kpc::Pipe ready = kpc::Pipe::make(O_CLOEXEC), go = kpc::Pipe::make(O_CLOEXEC);

  kpc::Child init = kpc::fork_child_in_new_pidns([&] {
    // 1. init starts the member: a FUSE server (serving thread) whose main
    //    thread holds a file of its own mount open, then waits.
    kpc::Pipe member_ready = kpc::Pipe::make(O_CLOEXEC);
    kpc::Child member(kpc::fork_or_broken());
    if (member.pid() == 0) {
      auto fs = kpc::testfs::Server::start(dir.path(), kpc::testfs::Serve::thread);
      KPC_SYS(open(fs->file_path().c_str(), O_RDWR));
      fs->abandon();
      kpc::send_byte(member_ready.write.get());
      for (;;) pause();
    }
    member_ready.write.reset();  // so a member that ends early reads as EOF
    kpc::expect_ready(member, member_ready.read.get(), 5000, "the FUSE member never got ready");
    member.release();  // the kernel kills it when init exits
    kpc::send_byte(ready.write.get());
    // 2. On the word, init exits without touching the member.
    kpc::recv_byte(go.read.get(), 10000);
    kpc::mark("deadlock-armed");
    _exit(0);
  });
  ready.write.reset();
  kpc::expect_ready(init, ready.read.get(), 5000, "the namespace never got ready");
  kpc::Fd nsfd(KPC_SYS(open(("/proc/" + std::to_string(init.pid()) + "/ns/pid").c_str(), O_RDONLY | O_CLOEXEC)));
  const std::vector<pid_t> members = kpc::list_children(init.pid());  // as our /proc numbers them
  KPC_CHECK_MSG(members.size() == 1,
                "init should have one child, the FUSE member; it has " + std::to_string(members.size()));

  // 3. init exits; wait until the kernel has begun the namespace's teardown
  //    (one reading decides: the state it looks for does not go away).
  //    Observed too early, a namespace whose init still runs would accept
  //    the fork below: that would be this probe's fault, not the kernel's.
  kpc::send_byte(go.write.get());
  const int64_t deadline = kpc::monotonic_ms() + 5000;
  bool began = false;
  while (!(began = teardown_began(members[0])) && kpc::monotonic_ms() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  KPC_CHECK_MSG(began, "the namespace's teardown did not begin (its member not killed) within 5 s of the word");

  // 4. Meanwhile: setns into the namespace, and fork there.
  kpc::observe_setns_then_fork("during_teardown", nsfd.get());

  // 5. Does the teardown complete? Under kpc-launch a stuck init is reported
  //    as a hang, with every task's kernel stack, long before this gives up.
  if (auto st = init.wait_for(10000)) {
    kpc::observe("teardown.completed", true);
    kpc::observe("init.status", kpc::describe_wait_status(*st));
    return 0;
  }
  kpc::observe("teardown.completed", false);  // run by hand: free it ourselves
  kpc::note("abort", kpc::testfs::abort_mount(dir.path()));
  init.wait();
  return 0;
}
