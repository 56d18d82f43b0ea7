// setpgid_setsid_rules: the rules of process groups and sessions:
// setsid() by a process-group leader is EPERM; setpgid() into a group of
// another session is EPERM, on a session leader EPERM, on a child that has
// already exec'd EACCES; kill(0, sig) reaches the caller's group only; a
// zombie keeps its group and session; a session outlives its leader.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kpc/probe.h"
#include "kpc/proc.h"
#include "kpc/siginfo.h"

int probe_main(kpc::Probe& p) {
  kpc::ScopedSigmask block(SIG_BLOCK, kpc::SigSet::of({SIGUSR1}));
  kpc::Child top = kpc::fork_child([&] {
    // 1. A group leader cannot create a session.
    KPC_SYS(setpgid(0, 0));
    KPC_OBSERVE_CALL("group_leader.setsid", setsid());
    // 2. A child in a new session: we cannot move it, nor join its group.
    kpc::Pipe go = kpc::Pipe::make(O_CLOEXEC), ready = kpc::Pipe::make(O_CLOEXEC);
    kpc::Child other_session = kpc::fork_child([&] {
      setsid();
      kpc::send_byte(ready.write.get());
      kpc::recv_byte(go.read.get(), 10000);
    });
    KPC_CHECK(kpc::recv_byte(ready.read.get(), 5000).has_value());
    KPC_OBSERVE_CALL("setpgid.of_session_leader", setpgid(other_session.pid(), getpgrp()));
    KPC_OBSERVE_CALL("setpgid.into_group_of_other_session", setpgid(0, other_session.pid()));
    // 3. A child that has exec'd can no longer be moved by its parent.
    kpc::Pipe in = kpc::Pipe::make();
    KPC_SYS(fcntl(in.write.get(), F_SETFD, FD_CLOEXEC));
    kpc::Child execd = kpc::fork_child([&] {
      dup2(in.read.get(), 0);
      kpc::exec_or_broken({"/bin/sh", "-c", "read x"});
    });
    in.read.reset();
    bool exec_seen = false;
    for (int i = 0; i < 5000 && !exec_seen; ++i) {
      exec_seen = kpc::read_text("/proc/" + std::to_string(execd.pid()) + "/comm").value_or("") == "sh\n";
      if (!exec_seen) usleep(1000);
    }
    KPC_CHECK(exec_seen);
    KPC_OBSERVE_CALL("setpgid.after_child_exec", setpgid(execd.pid(), execd.pid()));
    in.write.reset();
    execd.wait();
    // 4. kill(0, SIGUSR1): our group (a member) but not the other session's process.
    kpc::Pipe member_report = kpc::Pipe::make(O_CLOEXEC), member_ready = kpc::Pipe::make(O_CLOEXEC);
    kpc::Child member = kpc::fork_child([&] {
      kpc::send_byte(member_ready.write.get());
      kpc::send_int(member_report.write.get(), kpc::take_signal(SIGUSR1, 5000) ? 1 : 0);
    });
    KPC_CHECK(kpc::recv_byte(member_ready.read.get(), 5000).has_value());
    KPC_SYS(kill(0, SIGUSR1));
    auto got = kpc::recv_int(member_report.read.get(), 5000);
    kpc::observe("kill_0.reached_group_member", got && *got == 1);
    kpc::observe("kill_0.reached_caller", kpc::take_signal(SIGUSR1, 0).has_value());
    member.wait();
    // 5. A zombie keeps its group and session.
    pid_t oth = other_session.pid();
    kpc::send_byte(go.write.get());
    KPC_CHECK(kpc::wait_for_state(oth, 'Z', 5000) == 'Z');
    kpc::observe("zombie.getsid_is_its_own", getsid(oth) == oth);
    kpc::observe("zombie.getpgid_is_its_own", getpgid(oth) == oth);
    other_session.wait();
    kpc::observe("reaped.getsid", getsid(oth) < 0 ? kpc::errno_name(errno) : std::string("found"));
  });
  kpc::observe("status", kpc::describe_wait_status(top.wait()));
  (void)p;
  return 0;
}
