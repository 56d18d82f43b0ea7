// pdeathsig_cleared_by_setuid_exec: PR_SET_PDEATHSIG is cleared when the
// process execs a set-user-ID program that changes its credentials
// (prctl(2)), and kept across an ordinary exec (the control variant).
//
// The child drops to uid/gid 65534 *before* arming PDEATHSIG (a credential
// change also clears it), then execs a copy of exec_report that is either
// set-user-ID root or plain.
#include <fcntl.h>
#include <grp.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kpc/probe.h"
#include "kpc/state.h"

namespace {
void copy_file(const std::string& from, const std::string& to, mode_t mode) {
  kpc::Fd in(open(from.c_str(), O_RDONLY | O_CLOEXEC));
  KPC_CHECK(in);
  kpc::Fd out(open(to.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0700));
  KPC_CHECK(out);
  char buf[65536];
  for (;;) {
    ssize_t n = read(in.get(), buf, sizeof buf);
    KPC_CHECK(n >= 0);
    if (n == 0) break;
    KPC_CHECK(write(out.get(), buf, static_cast<size_t>(n)) == n);
  }
  KPC_SYS(fchmod(out.get(), mode));  // after writing: a write clears S_ISUID
}
}  // namespace

int probe_main(kpc::Probe& p) {
  const bool setuid_bit = p.variant_is("setuid_program", "plain_program");

  // 1. A copy of the helper in the run directory, set-user-ID root or not;
  //    the directory must be traversable by uid 65534.
  KPC_SYS(chmod(".", 0711));
  const std::string copy = "./exec_report_copy";  // the cwd is the run directory
  copy_file(p.helper("exec_report"), copy, setuid_bit ? 04755 : 0755);

  kpc::Child child = kpc::fork_child([&] {
    // 2. Drop to 65534, then arm PDEATHSIG and record it.
    KPC_SYS(setgroups(0, nullptr));
    KPC_SYS(setresgid(65534, 65534, 65534));
    KPC_SYS(setresuid(65534, 65534, 65534));
    KPC_SYS(prctl(PR_SET_PDEATHSIG, SIGHUP));
    kpc::record_state("child", "pdeathsig");
    // 3. Exec the copy: the helper records PDEATHSIG and its euid.
    kpc::exec_or_broken({copy, "--prefix", "exec", "--record", "pdeathsig,euid_is_root"});
  });
  kpc::observe("exec.status", kpc::describe_wait_status(child.wait()));
  return 0;
}
