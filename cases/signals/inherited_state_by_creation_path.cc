// inherited_state_by_creation_path: what signal and process state does a new
// process get, on each way of creating one, and what is left of it after one
// and after two execs? One variant per creation path:
//
//   fork  vfork_exec  clone  clone_vm  clone3  clone3_clear_sighand
//   clone3_clear_sighand_sighand  posix_spawn  posix_spawn_setsigmask
//   posix_spawn_setsigdef  sys_fork  sys_vfork  fork_execveat  fork_fexecve
//
// Keys: parent.* (the state that could be inherited, as a control),
// child.* (in the new process before exec, where the path lets code run
// there), exec.* (after the first exec) and exec2.* (after a second exec
// through an intermediate program: story 001's shell in the middle).
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "kpc/probe.h"
#include "kpc/state.h"

extern char** environ;

namespace {

constexpr int kRtSig = 36;  // a real-time signal; numbered, not SIGRTMIN+n (libcs disagree)
constexpr const char* kProps =
    "blocked,ignored,caught,pending,shared_pending,altstack,pdeathsig,subreaper,itimer_real,posix_timers,"
    "exit_signal,disp:SIGTERM,flags:SIGTERM,disp:SIGUSR2";

void on_term(int) {}

// argv for: exec_report --prefix exec --record P --then-exec exec_report --prefix exec2 --record P
struct ExecArgv {
  std::vector<std::string> strings;
  std::vector<char*> ptrs;
  explicit ExecArgv(const kpc::Probe& p) {
    std::string helper = p.helper("exec_report");
    strings = {helper, "--prefix", "exec",  "--record", kProps, "--then-exec",
               helper, "--prefix", "exec2", "--record", kProps};
    for (auto& s : strings) ptrs.push_back(s.data());
    ptrs.push_back(nullptr);
  }
  const char* path() const { return strings[0].c_str(); }
  char* const* argv() const { return ptrs.data(); }
};

// The state every creation path starts from.
struct ParentState {
  kpc::ScopedSigmask mask{SIG_BLOCK, kpc::SigSet::of({SIGUSR1, kRtSig})};
  kpc::ScopedSigaction ignore{SIGUSR2, SIG_IGN};
  kpc::ScopedSigaction handler{SIGTERM, on_term, SA_RESTART | SA_ONSTACK};
  std::unique_ptr<char[]> altstack{new char[SIGSTKSZ * 4]};
  timer_t timer{};

  ParentState() {
    // 1. Altstack, PDEATHSIG, subreaper, an armed ITIMER_REAL and a POSIX
    //    timer: all set in the parent, none expected in a new process.
    stack_t ss{};
    ss.ss_sp = altstack.get();
    ss.ss_size = SIGSTKSZ * 4;
    KPC_SYS(sigaltstack(&ss, nullptr));
    KPC_SYS(prctl(PR_SET_PDEATHSIG, SIGHUP));
    KPC_SYS(prctl(PR_SET_CHILD_SUBREAPER, 1));
    itimerval it{};
    it.it_value.tv_sec = 3600;
    KPC_SYS(setitimer(ITIMER_REAL, &it, nullptr));
    sigevent sev{};
    sev.sigev_notify = SIGEV_NONE;
    KPC_SYS(timer_create(CLOCK_MONOTONIC, &sev, &timer));
    // 2. One signal pending for this thread, one for the whole process.
    KPC_SYS(syscall(SYS_tgkill, getpid(), gettid(), SIGUSR1));
    KPC_SYS(kill(getpid(), kRtSig));
    kpc::record_state("parent", kProps);
  }
  ~ParentState() {
    kpc::consume_pending(kpc::SigSet::of({SIGUSR1, kRtSig}));
    timer_delete(timer);
    itimerval off{};
    setitimer(ITIMER_REAL, &off, nullptr);
    prctl(PR_SET_CHILD_SUBREAPER, 0);
    prctl(PR_SET_PDEATHSIG, 0);
    stack_t ss{};
    ss.ss_flags = SS_DISABLE;
    sigaltstack(&ss, nullptr);
  }
};

[[noreturn]] void record_child_then_exec(const ExecArgv& a) {
  kpc::record_state("child", kProps);
  execve(a.path(), a.argv(), environ);
  kpc::broken(std::string("execve: ") + strerror(errno));
}

int wait_and_record(pid_t pid) {
  int status = 0;
  if (waitpid(pid, &status, __WALL) != pid) kpc::broken(std::string("waitpid: ") + strerror(errno));
  kpc::observe("exec2.status", kpc::describe_wait_status(status));
  return 0;
}

// fork; the child records child.* and execs the helper through an fd
// opened with open_flags (execveat(AT_EMPTY_PATH) or fexecve).
template <typename ExecFd>
int fork_then_exec_fd(const ExecArgv& a, int open_flags, const char* what, ExecFd exec_fd) {
  kpc::Fd fd(open(a.path(), open_flags | O_CLOEXEC));
  KPC_CHECK(fd);
  pid_t pid = kpc::fork_or_broken();
  if (pid == 0) {
    kpc::record_state("child", kProps);
    exec_fd(fd.get());
    kpc::broken(std::string(what) + ": " + strerror(errno));
  }
  return wait_and_record(pid);
}

long raw_clone3(clone_args* args) { return syscall(SYS_clone3, args, sizeof(clone_args)); }

int via_clone3(const ExecArgv& a, uint64_t flags, bool expect_child) {
  clone_args args{};
  args.flags = flags;
  args.exit_signal = SIGCHLD;
  long pid = raw_clone3(&args);
  if (pid == 0) record_child_then_exec(a);
  if (pid < 0) {
    int err = errno;
    if (err == ENOSYS) kpc::skip("clone3 is not available (ENOSYS): Linux >= 5.3 has it");
    if (expect_child && err == EINVAL && (flags & CLONE_CLEAR_SIGHAND))
      kpc::skip("CLONE_CLEAR_SIGHAND is not supported (EINVAL): Linux >= 5.5 has it");
    kpc::observe("clone3.result", kpc::Errno{err});
    if (expect_child) kpc::broken("clone3 failed: " + kpc::errno_name(err));
    return 0;
  }
  if (!expect_child) kpc::broken("clone3 accepted flags it should refuse");
  return wait_and_record(static_cast<pid_t>(pid));
}

int via_spawn(const ExecArgv& a, short flags) {
  posix_spawnattr_t attr;
  KPC_ERRNUM(posix_spawnattr_init(&attr));
  if (flags & POSIX_SPAWN_SETSIGMASK) {
    sigset_t empty;
    sigemptyset(&empty);
    KPC_ERRNUM(posix_spawnattr_setsigmask(&attr, &empty));
  }
  if (flags & POSIX_SPAWN_SETSIGDEF) {
    sigset_t def = kpc::SigSet::of({SIGUSR2}).to_sigset();
    KPC_ERRNUM(posix_spawnattr_setsigdefault(&attr, &def));
  }
  KPC_ERRNUM(posix_spawnattr_setflags(&attr, flags));
  pid_t pid = -1;
  KPC_ERRNUM(posix_spawn(&pid, a.path(), nullptr, &attr, a.argv(), environ));
  posix_spawnattr_destroy(&attr);
  return wait_and_record(pid);
}

#if defined(__x86_64__)
// vfork and execve as raw syscalls with nothing on the stack in between: the
// child shares the parent's memory and stack until it execs, so it must not
// return from a function (the syscall() wrapper would do exactly that).
pid_t raw_vfork_exec(const char* path, char* const* argv, char* const* envp) {
  long ret;
  asm volatile(
      "mov $58, %%eax\n\t"  // SYS_vfork
      "syscall\n\t"
      "test %%rax, %%rax\n\t"
      "jnz 1f\n\t"
      "mov $59, %%eax\n\t"  // SYS_execve(path, argv, envp)
      "syscall\n\t"
      "mov $127, %%edi\n\t"  // execve failed: _exit(127)
      "mov $60, %%eax\n\t"
      "syscall\n\t"
      "1:\n\t"
      : "=a"(ret)
      : "D"(path), "S"(argv), "d"(envp)
      : "rcx", "r11", "memory");
  if (ret < 0) {
    errno = static_cast<int>(-ret);
    return -1;
  }
  return static_cast<pid_t>(ret);
}
#endif

// clone() on a stack of its own with `flags`: the child records child.*
// and execs; then the parent waits and records.
int clone_and_record(ExecArgv& a, int flags) {
  static char stack[256 * 1024] alignas(16);
  pid_t pid = clone([](void* arg) -> int { record_child_then_exec(*static_cast<ExecArgv*>(arg)); },
                    stack + sizeof stack, flags, &a);
  if (pid < 0) kpc::broken(std::string("clone: ") + strerror(errno));
  return wait_and_record(pid);
}

}  // namespace

int probe_main(kpc::Probe& p) {
  ExecArgv a(p);
  ParentState state;

  // 3. Create the process by the variant's path. Where code can run in the
  //    child it records child.*; then it execs exec_report (exec.*), which
  //    execs exec_report again (exec2.*).
  return p.dispatch({
      {"fork",
       [&] {
         pid_t pid = kpc::fork_or_broken();
         if (pid == 0) record_child_then_exec(a);
         return wait_and_record(pid);
       }},
      {"vfork_exec",
       [&] {
         pid_t pid = vfork();
         if (pid == 0) {
           execve(a.path(), a.argv(), environ);
           _exit(127);
         }
         if (pid < 0) kpc::broken(std::string("vfork: ") + strerror(errno));
         return wait_and_record(pid);
       }},
      {"clone", [&] { return clone_and_record(a, SIGCHLD); }},
      // CLONE_VM without CLONE_VFORK: shares memory, runs concurrently;
      // clone(2) says its alternate signal stack is cleared.
      {"clone_vm", [&] { return clone_and_record(a, CLONE_VM | SIGCHLD); }},
      {"clone3", [&] { return via_clone3(a, 0, true); }},
      {"clone3_clear_sighand", [&] { return via_clone3(a, CLONE_CLEAR_SIGHAND, true); }},
      {"clone3_clear_sighand_sighand",
       [&] { return via_clone3(a, CLONE_CLEAR_SIGHAND | CLONE_SIGHAND | CLONE_VM, false); }},
      {"posix_spawn", [&] { return via_spawn(a, 0); }},
      {"posix_spawn_setsigmask", [&] { return via_spawn(a, POSIX_SPAWN_SETSIGMASK); }},
      {"posix_spawn_setsigdef", [&] { return via_spawn(a, POSIX_SPAWN_SETSIGDEF); }},
      {"sys_fork",
       [&]() -> int {
#ifdef SYS_fork
         long pid = syscall(SYS_fork);
         if (pid == 0) record_child_then_exec(a);
         if (pid < 0) kpc::broken(std::string("SYS_fork: ") + strerror(errno));
         return wait_and_record(static_cast<pid_t>(pid));
#else
         kpc::skip("this architecture has no fork system call (only clone)");
#endif
       }},
      {"sys_vfork",
       [&]() -> int {
#if defined(__x86_64__)
         pid_t pid = raw_vfork_exec(a.path(), a.argv(), environ);
         if (pid < 0) kpc::broken(std::string("SYS_vfork: ") + strerror(errno));
         return wait_and_record(pid);
#else
         kpc::skip("raw vfork is implemented for x86_64 only (aarch64 has no vfork system call)");
#endif
       }},
      {"fork_execveat",
       [&] {
         return fork_then_exec_fd(a, O_PATH, "execveat",
                                  [&](int fd) { syscall(SYS_execveat, fd, "", a.argv(), environ, AT_EMPTY_PATH); });
       }},
      {"fork_fexecve",
       [&] { return fork_then_exec_fd(a, O_RDONLY, "fexecve", [&](int fd) { fexecve(fd, a.argv(), environ); }); }},
  });
}
