// clone3_flags_by_version: what each clone3() flag and the extensible
// struct do on this kernel, one variant per feature, newest last. Raw
// syscall numbers and flag values, so one binary answers on 5.x and 7.x
// alike; an unknown flag is EINVAL.
//   5.3 clone3, struct size rules   5.5 CLONE_CLEAR_SIGHAND
//   5.6 CLONE_NEWTIME               5.7 CLONE_INTO_CGROUP
//   7.1 CLONE_AUTOREAP, CLONE_NNP, CLONE_PIDFD_AUTOKILL
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/sched.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>

#include "kpc/pidfd.h"
#include "kpc/probe.h"
#include "kpc/proc.h"

namespace {
using namespace kpc::pidfd;
constexpr uint64_t kCloneNewtime = 0x80, kClearSighand = 1ULL << 32, kIntoCgroup = 1ULL << 33;

// struct clone_args (VER2, 88 bytes) inside a zeroed page-sized buffer, so
// the size rules can be tried with bytes beyond the known struct.
struct Args {
  alignas(8) unsigned char raw[256] = {};
  clone_args& a() { return *reinterpret_cast<clone_args*>(raw); }
};

// clone3 with fork semantics; the child runs `child` and _exit()s.
template <typename F>
long clone3_run(Args& args, size_t size, F&& child) {
  long pid = syscall(kSysClone3, args.raw, size);
  if (pid == 0) _exit(child());
  return pid;
}

std::string ns_of(const std::string& path) {
  char buf[64] = {};
  ssize_t n = readlink(path.c_str(), buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : kpc::errno_name(errno);
}

// The exit status through PIDFD_GET_INFO (PIDFD_INFO_EXIT, 6.15). The pidfd
// turns readable when the task exits, a moment before the kernel stores the
// exit information at release: retry for up to 2 s (seen once on 7.2).
std::string exit_info(int pidfd) {
  for (int ms = 0;; ms += 5) {
    Info info{};
    info.mask = kInfoExit;
    if (ioctl(pidfd, kGetInfo, &info) != 0) return kpc::errno_name(errno);
    if (info.mask & kInfoExit) return kpc::describe_wait_status(info.exit_code);
    if (ms >= 2000) return "no exit information";
    usleep(5000);
  }
}

bool readable_within(int fd, int ms) {
  pollfd p{fd, POLLIN, 0};
  return poll(&p, 1, ms) == 1 && (p.revents & POLLIN);
}

// The extensible struct: VER0 (64 bytes) works; less is EINVAL; more is
// accepted only when the bytes the kernel does not know are zero.
int struct_size() {
  Args args;
  args.a().exit_signal = SIGCHLD;
  long pid = clone3_run(args, 64, [] { return 0; });
  kpc::observe("size.ver0", result(pid));
  if (pid > 0) waitpid(static_cast<pid_t>(pid), nullptr, 0);
  kpc::observe("size.below_ver0", result(clone3_run(args, 63, [] { return 0; })));
  args.raw[255] = 1;
  kpc::observe("size.nonzero_unknown_tail", result(clone3_run(args, 256, [] { return 0; })));
  return 0;
}

// CLONE_CLEAR_SIGHAND (5.5): a caught signal is back to default.
int clear_sighand() {
  kpc::ScopedSigaction usr1(
      SIGUSR1, [](int) {}, 0);
  Args args;
  args.a().flags = kClearSighand;
  args.a().exit_signal = SIGCHLD;
  long pid = clone3_run(args, sizeof(clone_args), [] {
    struct sigaction old {};
    sigaction(SIGUSR1, nullptr, &old);
    return old.sa_handler == SIG_DFL ? 0 : 1;
  });
  kpc::observe("clear_sighand", result(pid));
  if (pid > 0) kpc::observe("clear_sighand.child_default", kpc::Child(static_cast<pid_t>(pid)).wait() == 0);
  return 0;
}

// CLONE_NEWTIME (5.6; clone3 only, its bit is CSIGNAL's in clone()):
// the child is in a new time namespace.
int newtime() {
  kpc::Pipe p = kpc::Pipe::make(O_CLOEXEC);
  Args args;
  args.a().flags = kCloneNewtime;
  args.a().exit_signal = SIGCHLD;
  const std::string mine = ns_of("/proc/thread-self/ns/time");
  long pid = clone3_run(args, sizeof(clone_args), [&] { return ns_of("/proc/thread-self/ns/time") != mine ? 0 : 1; });
  kpc::observe("newtime", result(pid));
  if (pid > 0) kpc::observe("newtime.child_in_new_ns", kpc::Child(static_cast<pid_t>(pid)).wait() == 0);
  return 0;
}

// CLONE_INTO_CGROUP (5.7) with a descriptor that is not a cgroup
// directory: known flag -> EBADF; unknown flag -> EINVAL.
int into_cgroup() {
  kpc::Fd root(open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  KPC_CHECK(root);
  Args args;
  args.a().flags = kIntoCgroup;
  args.a().exit_signal = SIGCHLD;
  args.a().cgroup = static_cast<uint64_t>(root.get());
  long pid = clone3_run(args, sizeof(clone_args), [] { return 0; });
  kpc::observe("into_cgroup.not_a_cgroup_fd", result(pid));
  if (pid > 0) waitpid(static_cast<pid_t>(pid), nullptr, 0);
  return 0;
}

// CLONE_AUTOREAP (7.1): no zombie, no wait(); the exit status comes
// from the pidfd (PIDFD_GET_INFO). Asked without CLONE_PIDFD first.
int autoreap() {
  Args args;
  args.a().flags = kCloneAutoreap;
  long pid = clone3_run(args, sizeof(clone_args), [] { return 0; });
  kpc::observe("autoreap.without_pidfd", result(pid));
  if (pid > 0) waitpid(static_cast<pid_t>(pid), nullptr, __WALL);
  args.a().exit_signal = SIGCHLD;
  pid = clone3_run(args, sizeof(clone_args), [] { return 0; });
  kpc::observe("autoreap.with_exit_signal", result(pid));
  if (pid > 0) waitpid(static_cast<pid_t>(pid), nullptr, __WALL);
  args.a().exit_signal = 0;

  int pidfd = -1;
  args.a().flags = kCloneAutoreap | kClonePidfd;
  args.a().pidfd = reinterpret_cast<uint64_t>(&pidfd);
  kpc::Pipe go = kpc::Pipe::make(O_CLOEXEC);
  pid = clone3_run(args, sizeof(clone_args), [&] {
    kpc::recv_byte(go.read.get(), 5000);
    return 3;
  });
  kpc::observe("autoreap", result(pid));
  if (pid > 0) {
    kpc::Fd fd(pidfd);
    kpc::send_byte(go.write.get());
    kpc::observe("autoreap.pidfd_readable", readable_within(fd.get(), 5000));
    KPC_OBSERVE_CALL("autoreap.waitpid", waitpid(static_cast<pid_t>(pid), nullptr, __WALL | WNOHANG));
    kpc::observe("autoreap.exit_info", exit_info(fd.get()));
  }
  return 0;
}

// CLONE_NNP (7.1): the child starts with no_new_privs; we keep ours.
int nnp() {
  Args args;
  args.a().flags = kCloneNnp;
  args.a().exit_signal = SIGCHLD;
  long pid = clone3_run(args, sizeof(clone_args), [] {
    auto st = kpc::read_self_status();
    return st && st->no_new_privs == 1 ? 0 : 1;
  });
  kpc::observe("nnp", result(pid));
  if (pid > 0) kpc::observe("nnp.child_no_new_privs", kpc::Child(static_cast<pid_t>(pid)).wait() == 0);
  auto me = kpc::read_self_status();
  KPC_CHECK(me && me->no_new_privs.has_value());
  kpc::observe("nnp.parent_no_new_privs", *me->no_new_privs == 1);
  return 0;
}

// CLONE_PIDFD_AUTOKILL (7.1): closing the clone's pidfd kills the child.
// Asked alone with CLONE_PIDFD first, then with CLONE_AUTOREAP too. The
// child cannot be waited for, so a pidfd_open() one (which does not arm
// the kill) watches it, and the child reports its no_new_privs first.
int pidfd_autokill() {
  int pidfd = -1;
  Args args;
  args.a().flags = kClonePidfdAutokill | kClonePidfd;
  args.a().pidfd = reinterpret_cast<uint64_t>(&pidfd);
  args.a().exit_signal = SIGCHLD;
  long pid = clone3_run(args, sizeof(clone_args), [] { return 0; });
  kpc::observe("pidfd_autokill.without_autoreap", result(pid));
  if (pid > 0) {
    close(pidfd);
    waitpid(static_cast<pid_t>(pid), nullptr, 0);
  }

  kpc::Pipe nnp = kpc::Pipe::make(O_CLOEXEC);
  args.a().flags = kClonePidfdAutokill | kClonePidfd | kCloneAutoreap;
  args.a().exit_signal = 0;
  pid = clone3_run(args, sizeof(clone_args), [&] {
    auto st = kpc::read_self_status();
    kpc::send_int(nnp.write.get(), st && st->no_new_privs ? *st->no_new_privs : -1);
    for (;;) pause();
    return 0;
  });
  kpc::observe("pidfd_autokill", result(pid));
  if (pid > 0) {
    kpc::Fd armed(pidfd);
    auto child_nnp = kpc::recv_int(nnp.read.get(), 5000);
    kpc::observe("pidfd_autokill.child_no_new_privs", child_nnp ? std::to_string(*child_nnp) : "no answer");
    kpc::Fd watch(static_cast<int>(syscall(kSysOpen, pid, 0)));
    KPC_CHECK(watch);
    kpc::observe("pidfd_autokill.alive_before_close", !readable_within(watch.get(), 0));
    armed.reset();
    kpc::observe("pidfd_autokill.exited_after_close", readable_within(watch.get(), 5000));
    kpc::observe("pidfd_autokill.exit_info", exit_info(watch.get()));
    if (!readable_within(watch.get(), 0)) kill(static_cast<pid_t>(pid), SIGKILL);  // never leave it behind
  }
  return 0;
}

// CLONE_PIDFD_AUTOKILL without privilege: a child of ours keeps only
// CAP_SYS_ADMIN and asks; then drops every capability (capset to empty
// sets; same uid, so it works in every flavor) and asks three times --
// plain, with CLONE_NNP, and after prctl(PR_SET_NO_NEW_PRIVS). It
// reports each errno (0 = ok) on a pipe.
int pidfd_autokill_unprivileged() {
  kpc::Pipe report = kpc::Pipe::make(O_CLOEXEC);
  pid_t dropper = kpc::fork_or_broken();
  if (dropper == 0) {
    __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct caps[_LINUX_CAPABILITY_U32S_3] = {};
    caps[CAP_TO_INDEX(CAP_SYS_ADMIN)].effective = caps[CAP_TO_INDEX(CAP_SYS_ADMIN)].permitted =
        CAP_TO_MASK(CAP_SYS_ADMIN);
    auto set_caps = [&] { return syscall(SYS_capset, &hdr, caps) == 0; };
    auto ask = [&](uint64_t extra) {
      int pidfd = -1;
      Args args;
      args.a().flags = kClonePidfdAutokill | kClonePidfd | kCloneAutoreap | extra;
      args.a().pidfd = reinterpret_cast<uint64_t>(&pidfd);
      long pid = clone3_run(args, sizeof(clone_args), [] { return 0; });
      kpc::send_int(report.write.get(), pid < 0 ? errno : 0);
      // Let the child end before we do: an autoreaped orphan would go to
      // the launcher's subreaper, which gets no SIGCHLD for it (see
      // autoreap_orphan_under_subreaper).
      if (pid > 0) {
        readable_within(pidfd, 5000);
        close(pidfd);
      }
    };
    if (!set_caps()) _exit(89);
    ask(0);
    caps[CAP_TO_INDEX(CAP_SYS_ADMIN)] = {};
    if (!set_caps()) _exit(90);
    ask(0);
    ask(kCloneNnp);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) _exit(91);
    ask(0);
    _exit(0);
  }
  kpc::Child guard(dropper);
  report.write.reset();
  for (const char* key : {"pidfd_autokill.only_cap_sys_admin", "pidfd_autokill.no_caps",
                          "pidfd_autokill.no_caps.with_clone_nnp", "pidfd_autokill.no_caps.after_prctl_nnp"}) {
    auto e = kpc::recv_int(report.read.get(), 5000);
    kpc::observe(key, !e ? std::string("no answer") : *e == 0 ? std::string("ok") : kpc::errno_name(*e));
  }
  int st = guard.wait();
  KPC_CHECK_MSG(st == 0, "the capability-dropping child (exit 89/90: capset failed, 91: prctl failed): " +
                             kpc::describe_wait_status(st));
  return 0;
}
}  // namespace

int probe_main(kpc::Probe& p) {
  return p.dispatch({
      {"struct_size", struct_size},
      {"clear_sighand", clear_sighand},
      {"newtime", newtime},
      {"into_cgroup", into_cgroup},
      {"autoreap", autoreap},
      {"nnp", nnp},
      {"pidfd_autokill", pidfd_autokill},
      {"pidfd_autokill_unprivileged", pidfd_autokill_unprivileged},
  });
}
