// pdeathsig_cleared_by_setuid_exec: PR_SET_PDEATHSIG is cleared when the
// process execs a set-user-ID program that changes its credentials
// (prctl(2)), and kept across an ordinary exec (the control variant).
//
// The child drops to uid/gid 65534 *before* arming PDEATHSIG (a credential
// change also clears it), then execs a copy of setuid_report that is either
// set-user-ID root or plain.
//
// A set-user-ID root file is dangerous on a shared machine: this one lives
// on a tmpfs mounted in the probe's own mount namespace (nobody else sees
// it, and it vanishes with the namespace however the probe ends), is
// created without following links, is exec'd through a descriptor (no path
// another user could reach), and is a helper that records and execs
// nothing.
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kpc/probe.h"
#include "kpc/proc.h"
#include "kpc/state.h"

int probe_main(kpc::Probe& p) {
  const bool setuid_bit = p.variant_is("setuid_program", "plain_program");

  // 1. A private tmpfs in a private mount namespace, holding a copy of the
  //    helper, set-user-ID root or not.
  kpc::enter_private_mount_namespace();
  KPC_SYS(mkdir("suid", 0700));  // the cwd is the run directory (0700)
  KPC_SYS(mount("kpc-suid", "suid", "tmpfs", MS_NODEV | MS_NOATIME, "mode=0700,size=16m"));
  kpc::Fd dir(KPC_SYS(open("suid", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)));
  kpc::copy_file_into(p.helper("setuid_report"), dir.get(), "setuid_report", setuid_bit ? 04755 : 0755);
  kpc::Fd prog(KPC_SYS(openat(dir.get(), "setuid_report", O_PATH | O_NOFOLLOW | O_CLOEXEC)));

  kpc::Child child = kpc::fork_child([&] {
    // 2. Drop to 65534, then arm PDEATHSIG and record it.
    KPC_SYS(setgroups(0, nullptr));
    KPC_SYS(setresgid(65534, 65534, 65534));
    KPC_SYS(setresuid(65534, 65534, 65534));
    KPC_SYS(prctl(PR_SET_PDEATHSIG, SIGHUP));
    kpc::record_state("child", "pdeathsig");
    // 3. Exec the copy through its descriptor (65534 cannot even enter the
    //    run directory): the helper records PDEATHSIG and its euid.
    char* const argv[] = {const_cast<char*>("setuid_report"), nullptr};
    syscall(SYS_execveat, prog.get(), "", argv, environ, AT_EMPTY_PATH);  // glibc < 2.34 has no execveat()
    kpc::broken(std::string("execveat setuid_report: ") + kpc::errno_name(errno));
  });
  kpc::observe("exec.status", kpc::describe_wait_status(child.wait()));
  return 0;
}
