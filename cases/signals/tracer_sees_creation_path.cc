// tracer_sees_creation_path (story 003): a ptrace observer with
// PTRACE_O_TRACEFORK|TRACEVFORK|TRACECLONE watches a tracee create a
// process (or thread) by each path and records, per path:
//   event    which ptrace event stop it got: fork, vfork, clone, or none
//   syscall  which system call the tracee was in (x86_64: orig_rax; aarch64:
//            NT_ARM_SYSTEM_CALL, as arm64 has no fork/vfork syscall): a tracer
//            that keys on the syscall number sees "fork" from musl's fork()
//            but "clone" from glibc's (the story's lost container metadata);
//            the musl_* variants run a musl-built tracee to show it
//   same_namespaces / same_cgroup  the new task's /proc/PID/ns/* links and
//            /proc/PID/cgroup equal its creator's
#include <elf.h>
#include <linux/sched.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <set>
#include <string>

#include "kpc/probe.h"
#include "kpc/proc.h"

extern char** environ;

namespace {

std::string ns_links(pid_t pid) {
  std::string out;
  for (const char* ns : {"pid_for_children", "mnt", "net", "ipc", "uts", "user", "cgroup"}) {
    char buf[128] = {};
    std::string path = "/proc/" + std::to_string(pid) + "/ns/" + ns;
    ssize_t n = readlink(path.c_str(), buf, sizeof buf - 1);
    // A failed read is the probe's problem, not a "different namespace":
    // say which link and why.
    if (n <= 0) kpc::broken("readlink " + path + ": " + kpc::errno_name(errno));
    out += std::string(ns) + "=" + std::string(buf, static_cast<size_t>(n)) + ";";
  }
  return out;
}

std::string syscall_name(long nr) {
  switch (nr) {
#ifdef SYS_fork
    case SYS_fork:
      return "fork";
#endif
#ifdef SYS_vfork
    case SYS_vfork:
      return "vfork";
#endif
    case SYS_clone:
      return "clone";
    case SYS_clone3:
      return "clone3";
  }
  return "nr" + std::to_string(nr);
}

// The system call a tracee in a ptrace event stop is in. (PTRACE_GET_SYSCALL_INFO
// is arch-neutral but reports no number at event stops: op NONE.)
long syscall_number(pid_t who) {
#if defined(__x86_64__)
  user_regs_struct regs{};
  KPC_SYS(ptrace(PTRACE_GETREGS, who, nullptr, &regs));
  return static_cast<long>(regs.orig_rax);
#elif defined(__aarch64__)
  int nr = -1;  // pt_regs->syscallno
  iovec iov{&nr, sizeof nr};
  KPC_SYS(ptrace(PTRACE_GETREGSET, who, reinterpret_cast<void*>(NT_ARM_SYSTEM_CALL), &iov));
  return nr;
#else
  (void)who;
  kpc::skip("reading the system call number at a ptrace event stop is implemented for x86_64 and aarch64 only");
#endif
}

void* thread_body(void*) { return nullptr; }
int exit_now(void*) { _exit(0); }

// The creation paths, one per variant, as the tracee takes them: each
// returns the new process's pid (-1 on failure); the new process exits at once.
alignas(16) char clone_stack[64 * 1024];

pid_t by_fork() {
  pid_t pid = fork();
  if (pid == 0) _exit(0);
  return pid;
}

pid_t by_vfork() {
  pid_t pid = vfork();
  if (pid == 0) _exit(0);
  return pid;
}

pid_t by_sys_fork() {
  pid_t pid = -1;
#ifdef SYS_fork
  pid = static_cast<pid_t>(syscall(SYS_fork));
  if (pid == 0) _exit(0);
#endif
  return pid;
}

pid_t by_clone_sigchld() { return clone(exit_now, clone_stack + sizeof clone_stack, SIGCHLD, nullptr); }

pid_t by_clone_exit_signal_usr1() { return clone(exit_now, clone_stack + sizeof clone_stack, SIGUSR1, nullptr); }

pid_t by_clone3() {
  clone_args args{};
  args.exit_signal = SIGCHLD;
  pid_t pid = static_cast<pid_t>(syscall(SYS_clone3, &args, sizeof args));
  if (pid == 0) _exit(0);
  if (pid < 0 && errno == ENOSYS) _exit(77);
  return pid;
}

pid_t by_posix_spawn() {
  pid_t pid = -1;
  char* argv[] = {const_cast<char*>("/bin/true"), nullptr};
  if (posix_spawn(&pid, "/bin/true", nullptr, nullptr, argv, environ) != 0) pid = -1;
  return pid;
}

// A thread: no new process to reap; the tracee exits after joining it.
pid_t by_pthread_create() {
  pthread_t t;
  if (pthread_create(&t, nullptr, thread_body, nullptr) != 0) _exit(91);
  pthread_join(t, nullptr);
  _exit(0);
}

// The tracee: stop, let the tracer attach options, create, reap, exit.
[[noreturn]] void tracee(pid_t (*create)()) {
  if (ptrace(PTRACE_TRACEME, 0, nullptr, nullptr) != 0) _exit(90);
  raise(SIGSTOP);
  pid_t pid = create();
  if (pid < 0) _exit(92);
  int st;
  waitpid(pid, &st, __WALL);
  _exit(0);
}

}  // namespace

int probe_main(kpc::Probe& p) {
#if !defined(__x86_64__) && !defined(__aarch64__)
  kpc::skip("the syscall decoding is implemented for x86_64 and aarch64 only");
#endif
  // The variant: a creation path in this tracee, or (musl_*) one in
  // cases/helpers/musl/musl_tracee.c, built with musl-gcc when Debian's
  // musl-tools is installed, named in its argument.
  pid_t (*create)() = nullptr;
  std::string musl_arg;
  auto here = [&](pid_t (*path)()) {
    create = path;
    return 0;
  };
  auto in_musl = [&](const char* path) {
    musl_arg = path;
    return 0;
  };
  p.dispatch({
      {"fork", [&] { return here(by_fork); }},
      {"vfork", [&] { return here(by_vfork); }},
      {"sys_fork",
       [&] {
#ifndef SYS_fork
         kpc::skip("this architecture has no fork system call (only clone), e.g. aarch64");
#endif
         return here(by_sys_fork);
       }},
      {"clone_sigchld", [&] { return here(by_clone_sigchld); }},
      {"clone_exit_signal_usr1", [&] { return here(by_clone_exit_signal_usr1); }},
      {"clone3", [&] { return here(by_clone3); }},
      {"posix_spawn", [&] { return here(by_posix_spawn); }},
      {"pthread_create", [&] { return here(by_pthread_create); }},
      {"musl_fork", [&] { return in_musl("fork"); }},
      {"musl_vfork", [&] { return in_musl("vfork"); }},
      {"musl_posix_spawn", [&] { return in_musl("posix_spawn"); }},
      {"musl_pthread_create", [&] { return in_musl("pthread_create"); }},
  });
  std::string musl_path;
  if (!musl_arg.empty()) {
    musl_path = p.helper("musl_tracee");
    if (access(musl_path.c_str(), X_OK) != 0)
      kpc::skip("the musl tracee was not built: install Debian's musl-tools (musl-gcc); the next ./kpc run builds it");
  }
  // 1. The tracee stops itself; the tracer sets the creation options.
  pid_t child = kpc::fork_or_broken();
  if (child == 0 && !musl_path.empty()) {
    char* argv[] = {musl_path.data(), musl_arg.data(), nullptr};
    execve(argv[0], argv, environ);
    _exit(94);
  }
  if (child == 0) tracee(create);
  kpc::Child guard(child);
  int status = 0;
  KPC_SYS(waitpid(child, &status, __WALL));
  KPC_CHECK(WIFSTOPPED(status) && WSTOPSIG(status) == SIGSTOP);
  KPC_SYS(
      ptrace(PTRACE_SETOPTIONS, child, nullptr,
             PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK | PTRACE_O_TRACECLONE | PTRACE_O_TRACEEXEC | PTRACE_O_EXITKILL));
  std::string creator_ns = ns_links(child);
  auto creator_cg = kpc::read_text("/proc/" + std::to_string(child) + "/cgroup");
  KPC_CHECK_MSG(creator_cg.has_value(), "cannot read the tracee's /proc/PID/cgroup");
  KPC_SYS(ptrace(PTRACE_CONT, child, nullptr, nullptr));

  // 2. Follow every stop until the tracee exits; record the first creation event.
  std::string event = "none", sys = "none";
  bool same_ns = false, same_cg = false;
  // New tasks whose initial SIGSTOP was reported before their creator's event
  // stop (waitpid(-1) may return either first). Continuing such a task at once
  // lets it run to _exit before its /proc links are read -- readlink on the
  // zombie fails ENOENT (CI saw it on 6.1 and 7.2). They stay stopped until
  // the creator's event has been recorded.
  std::set<pid_t> held;
  for (;;) {
    pid_t who = waitpid(-1, &status, __WALL);
    if (who < 0) break;
    if (who == child && (WIFEXITED(status) || WIFSIGNALED(status))) {
      guard.release();
      if (WIFEXITED(status) && WEXITSTATUS(status) == 77) kpc::skip("clone3 is not available (ENOSYS)");
      kpc::observe("tracee.status", kpc::describe_wait_status(status));
      break;
    }
    if (!WIFSTOPPED(status)) continue;
    int ev = status >> 16, sig = WSTOPSIG(status);
    if (event == "none" && who != child && ev == 0 && sig == SIGSTOP) {
      held.insert(who);  // a new task's initial stop, ahead of its creator's event
      continue;
    }
    if (ev == PTRACE_EVENT_FORK || ev == PTRACE_EVENT_VFORK || ev == PTRACE_EVENT_CLONE) {
      if (event == "none") {
        event = ev == PTRACE_EVENT_FORK ? "fork" : ev == PTRACE_EVENT_VFORK ? "vfork" : "clone";
        sys = syscall_name(syscall_number(who));
        unsigned long msg = 0;
        KPC_SYS(ptrace(PTRACE_GETEVENTMSG, who, nullptr, &msg));
        auto newpid = static_cast<pid_t>(msg);
        // 3. Make sure the new task sits in its initial stop (it stops before
        //    running any code of its own), then compare its /proc links.
        if (held.contains(newpid)) {
          kpc::note("new_task_stop_reported_first", true);
        } else {
          int st = 0;
          KPC_SYS(waitpid(newpid, &st, __WALL));
          KPC_CHECK_MSG(WIFSTOPPED(st), "the new task " + std::to_string(newpid) +
                                            " did not stop first: " + kpc::describe_wait_status(st));
          held.insert(newpid);
        }
        same_ns = ns_links(newpid) == creator_ns;
        auto new_cg = kpc::read_text("/proc/" + std::to_string(newpid) + "/cgroup");
        KPC_CHECK_MSG(new_cg.has_value(), "cannot read the new task's /proc/" + std::to_string(newpid) + "/cgroup");
        same_cg = new_cg == creator_cg;
        for (pid_t h : held) ptrace(PTRACE_CONT, h, nullptr, 0);
        held.clear();
      }
      sig = 0;
    } else if (ev != 0 || sig == SIGSTOP || sig == SIGTRAP) {
      sig = 0;  // exec events and the new tasks' initial stops
    }
    ptrace(PTRACE_CONT, who, nullptr, sig);
  }
  kpc::observe("event", event);
  kpc::observe("syscall", sys);
  kpc::observe("same_namespaces", same_ns);
  kpc::observe("same_cgroup", same_cg);
  return 0;
}
