// seccomp_clone3_errno_decides_glibc: glibc (2.34+) creates threads and
// posix_spawn children with clone3 and falls back to clone only when
// clone3 says ENOSYS. A seccomp profile that denies clone3 with EPERM --
// Docker's default profile did, moby#42680 -- therefore breaks
// pthread_create and posix_spawn, while one that says ENOSYS does not.
// fork() uses clone and is unaffected either way.
//   variant enosys / eperm: the errno the filter gives clone3
// The probe is linked statically with the build machine's glibc: the same
// glibc on the host and in every guest (before 2.34 it never calls clone3).
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <spawn.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "kpc/arch.h"
#include "kpc/probe.h"

extern char** environ;

namespace {
void deny_clone3(int err) {
  sock_filter f[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kpc::kAuditArch, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 435 /* clone3 */, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | static_cast<unsigned>(err)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog prog{static_cast<unsigned short>(sizeof f / sizeof *f), f};
  KPC_SYS(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0));
  KPC_SYS(syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog));
}
void* nothing(void*) { return nullptr; }
std::string name(int err) { return err == 0 ? "ok" : kpc::errno_name(err); }
}  // namespace

int probe_main(kpc::Probe& p) {
  bool eperm = p.variant_is("eperm", "enosys");
  kpc::Child c = kpc::fork_child([&] {
    deny_clone3(eperm ? EPERM : ENOSYS);
    // 1. clone3 itself.
    long r = syscall(435, nullptr, 0);
    kpc::observe("raw_clone3", r < 0 ? kpc::errno_name(errno) : "ok");
    // 2. glibc's thread creation.
    pthread_t t;
    int e = pthread_create(&t, nullptr, nothing, nullptr);
    if (e == 0) pthread_join(t, nullptr);
    kpc::observe("pthread_create", name(e));
    // 3. posix_spawn.
    pid_t pid;
    char* argv[] = {const_cast<char*>("true"), nullptr};
    e = posix_spawn(&pid, "/bin/true", nullptr, nullptr, argv, environ);
    if (e == 0) waitpid(pid, nullptr, 0);
    kpc::observe("posix_spawn", name(e));
    // 4. fork (clone underneath).
    kpc::observe("fork", kpc::fork_exit_and_wait());
  });
  kpc::observe("status", kpc::describe_wait_status(c.wait()));
  return 0;
}
