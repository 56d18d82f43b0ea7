// file_caps_and_no_new_privs: file capabilities and no_new_privs at exec.
// A copy of creds_report carrying "cap_net_bind_service+ep" (set with
// libcap's cap_set_file) lives on a tmpfs in the probe's own mount namespace.
//   variant file_caps_nonroot:   uid 65534 with no capabilities execs it:
//                                it gains X (CAP_NET_BIND_SERVICE), P and E
//   variant file_caps_clear_ambient: the same with Y (CAP_NET_RAW) ambient:
//                                a privileged file clears the ambient set
//   variant nnp_blocks_file_caps: the same after PR_SET_NO_NEW_PRIVS: no gain
//   variant nnp_inherited:       no_new_privs set by root is inherited by a
//                                fork child, kept by exec, and cannot be unset
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <sys/capability.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <functional>
#include <string>
#include <vector>

#include "kpc/probe.h"
#include "kpc/state.h"

extern char** environ;

namespace {
constexpr uid_t kNobody = 65534;
const cap_value_t kX = CAP_NET_BIND_SERVICE, kY = CAP_NET_RAW;

void set_caps(std::vector<cap_value_t> pei) {
  cap_t c = cap_init();
  if (!pei.empty())
    for (cap_flag_t f : {CAP_PERMITTED, CAP_EFFECTIVE, CAP_INHERITABLE})
      cap_set_flag(c, f, static_cast<int>(pei.size()), pei.data(), CAP_SET);
  int r = cap_set_proc(c);
  cap_free(c);
  KPC_CHECK_MSG(r == 0, "cap_set_proc: " + kpc::errno_name(errno));
}

// uid/gid 65534, keeping `keep` in P, E and I.
void become_nobody(std::vector<cap_value_t> keep) {
  KPC_SYS(prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0));
  KPC_SYS(setgroups(0, nullptr));
  KPC_SYS(setresgid(kNobody, kNobody, kNobody));
  KPC_SYS(setresuid(kNobody, kNobody, kNobody));
  set_caps(keep);
}

[[noreturn]] void exec_fd(int prog) {
  char* const argv[] = {const_cast<char*>("creds_report"), const_cast<char*>("--prefix"), const_cast<char*>("exec"),
                        nullptr};
  syscall(SYS_execveat, prog, "", argv, environ, AT_EMPTY_PATH);  // glibc < 2.34 has no execveat()
  kpc::broken("execveat creds_report: " + kpc::errno_name(errno));
}

// Root sets no_new_privs; a fork child has it, an exec keeps it.
int nnp_inherited(const kpc::Probe& p) {
  kpc::Child c = kpc::fork_child([&] {
    KPC_SYS(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0));
    KPC_OBSERVE_CALL("unset_no_new_privs", prctl(PR_SET_NO_NEW_PRIVS, 0, 0, 0, 0));
    kpc::Child grandchild = kpc::fork_child([] { kpc::record_state("fork_child", "no_new_privs"); });
    grandchild.wait();
    kpc::exec_or_broken({p.helper("creds_report"), "--prefix", "exec"});
  });
  kpc::observe("status", kpc::describe_wait_status(c.wait()));
  return 0;
}

// A capability-carrying copy of creds_report, exec'd by a child that has
// become nobody in the variant's way (become()).
int file_caps(const kpc::Probe& p, const std::function<void()>& become) {
  if (p.flavor() == "userns") kpc::skip("the userns flavor maps one uid: there is no non-root uid to become");
  // 1. The capability-carrying copy, in a mount namespace of our own.
  kpc::enter_private_mount_namespace();
  KPC_SYS(mkdir("fcaps", 0700));  // the cwd is the run directory
  KPC_SYS(mount("kpc-fcaps", "fcaps", "tmpfs", MS_NODEV | MS_NOATIME,
                "mode=0755,size=16m"));  // not nosuid: that ignores file capabilities
  kpc::Fd dir(KPC_SYS(open("fcaps", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)));
  kpc::copy_file_into(p.helper("creds_report"), dir.get(), "creds_report", 0755);
  cap_t fcaps = cap_from_text("cap_net_bind_service+ep");
  int r = cap_set_file("fcaps/creds_report", fcaps);
  cap_free(fcaps);
  if (r != 0) kpc::skip("cap_set_file on tmpfs: " + kpc::errno_name(errno) + " (no security.capability xattrs here)");
  kpc::Fd prog(KPC_SYS(openat(dir.get(), "creds_report", O_PATH | O_NOFOLLOW | O_CLOEXEC)));
  // 2. The variants.
  kpc::Child child = kpc::fork_child([&] {
    become();
    exec_fd(prog.get());
  });
  kpc::observe("status", kpc::describe_wait_status(child.wait()));
  return 0;
}
}  // namespace

int probe_main(kpc::Probe& p) {
  return p.dispatch({
      {"nnp_inherited", [&] { return nnp_inherited(p); }},
      {"file_caps_nonroot", [&] { return file_caps(p, [] { become_nobody({}); }); }},
      {"file_caps_clear_ambient",
       [&] {
         return file_caps(p, [] {
           become_nobody({kY, CAP_SETPCAP});
           KPC_CHECK_MSG(cap_set_ambient(kY, CAP_SET) == 0, "cap_set_ambient: " + kpc::errno_name(errno));
         });
       }},
      {"nnp_blocks_file_caps",
       [&] {
         return file_caps(p, [] {
           become_nobody({});
           KPC_SYS(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0));
         });
       }},
  });
}
