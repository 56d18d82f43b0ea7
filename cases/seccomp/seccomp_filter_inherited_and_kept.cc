// seccomp_filter_inherited_and_kept: a seccomp filter stays with the
// process for good: fork children and new threads inherit it, execve keeps
// it, and with SECCOMP_FILTER_FLAG_TSYNC it is applied to the process's
// existing threads too (without, only to the caller).
//   variant caller_only / tsync: a thread started before the filter Installing one without CAP_SYS_ADMIN
// needs no_new_privs (EACCES otherwise).
// The filter answers getppid() with EMLINK and allows everything else. The
// exec side is this probe itself, run again with the argument "exec-side".
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <string>

#include "kpc/arch.h"
#include "kpc/caps.h"
#include "kpc/probe.h"
#include "kpc/proc.h"

namespace {
sock_fprog getppid_emlink() {
  static sock_filter f[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kpc::kAuditArch, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_getppid, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EMLINK),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  return sock_fprog{static_cast<unsigned short>(sizeof f / sizeof *f), f};
}
long install(unsigned flags) {
  sock_fprog prog = getppid_emlink();
  return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog);
}
std::string getppid_result() {
  long r = syscall(SYS_getppid);
  return r < 0 ? kpc::errno_name(errno) : "ok";
}
std::string seccomp_field() {
  std::string s = kpc::read_text("/proc/thread-self/status").value_or("");
  auto at = s.find("\nSeccomp:\t");
  return at == std::string::npos ? "missing" : s.substr(at + 10, 1);
}
int g_go = -1;
void* early_thread(void*) {
  kpc::recv_byte(g_go, 5000);
  kpc::observe("earlier_thread.getppid", getppid_result());
  return nullptr;
}
void* thread_check(void* key) {
  kpc::observe(static_cast<const char*>(key), getppid_result());
  return nullptr;
}
}  // namespace

int probe_main(kpc::Probe& p) {
  if (!p.args.empty() && p.args[0] == "exec-side") {
    kpc::observe("exec.getppid", getppid_result());
    kpc::observe("exec.seccomp_mode", seccomp_field());
    _exit(0);  // a grandchild of the probe: it must not record the probe's end
  }
  kpc::Child c = kpc::fork_child([&] {
    // 1. Without privilege and without no_new_privs: refused.
    kpc::Child unpriv = kpc::fork_child([] {
      kpc::drop_capabilities({21 /* CAP_SYS_ADMIN */});
      long r = install(0);
      kpc::observe_result("unprivileged_without_nnp.install", r, r < 0 ? errno : 0);
    });
    unpriv.wait();
    // 2. A thread started before the filter waits; then the filter.
    KPC_SYS(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0));
    bool tsync = p.variant_is("tsync", "caller_only");
    kpc::Pipe go = kpc::Pipe::make(O_CLOEXEC);
    g_go = go.read.get();
    pthread_t early;
    KPC_ERRNUM(pthread_create(&early, nullptr, early_thread, nullptr));
    long r = install(tsync ? SECCOMP_FILTER_FLAG_TSYNC : 0);
    if (r < 0 && errno == ENOSYS) kpc::skip("no seccomp(2)");
    KPC_SYS(r);
    kpc::observe("self.getppid", getppid_result());
    kpc::send_byte(go.write.get());
    pthread_join(early, nullptr);
    pthread_t t;
    KPC_ERRNUM(pthread_create(&t, nullptr, thread_check, const_cast<char*>("new_thread.getppid")));
    pthread_join(t, nullptr);
    // 3. fork and exec.
    kpc::Child f = kpc::fork_child([] { kpc::observe("fork_child.getppid", getppid_result()); });
    f.wait();
    kpc::exec_or_broken({p.helper(p.id), "--variant", p.variant, "exec-side"});
  });
  kpc::observe("status", kpc::describe_wait_status(c.wait()));
  return 0;
}
