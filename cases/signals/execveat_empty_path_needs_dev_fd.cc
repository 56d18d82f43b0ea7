// execveat_empty_path_needs_dev_fd: does execveat(fd, "", AT_EMPTY_PATH)
// (and glibc's fexecve, which is that call) depend on /dev/fd existing?
// Found while booting kpc's minimal guest: on Debian's 5.10.223 both failed
// with ENOENT until the guest's /dev got a /dev/fd link; 6.1 and later did
// not care. This case pins that down on every kernel it runs on.
//
//   1. A child enters a private mount namespace and mounts an empty tmpfs on
//      /dev: no /dev/fd, no /dev/null.
//   2. It opens /bin/true (O_PATH) and, in a grandchild, execveat(fd, "",
//      AT_EMPTY_PATH): "ok" if /bin/true ran (exit 0), else the errno.
//   3. The same with fexecve on an O_RDONLY descriptor.
//   4. It creates /dev/fd -> /proc/self/fd and tries execveat again.
#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "kpc/probe.h"
#include "kpc/proc.h"
#include "kpc/raii.h"

extern char** environ;

namespace {

// Runs `exec` in a grandchild; "ok" when the program ran and exited 0,
// else the errno the exec call failed with (the grandchild's exit code).
template <typename Exec>
std::string attempt(Exec exec) {
  pid_t pid = kpc::fork_or_broken();
  if (pid == 0) {
    exec();
    _exit(errno > 0 && errno < 126 ? errno : 125);
  }
  int st = 0;
  KPC_SYS(waitpid(pid, &st, 0));
  if (!WIFEXITED(st)) kpc::broken("the exec attempt ended " + kpc::describe_wait_status(st));
  if (WEXITSTATUS(st) == 0) return "ok";
  return kpc::errno_name(WEXITSTATUS(st));
}

}  // namespace

int probe_main(kpc::Probe&) {
  kpc::Pipe done = kpc::Pipe::make(O_CLOEXEC);
  kpc::Child child(kpc::fork_or_broken());
  if (child.pid() == 0) {
    // 1. A /dev without anything in it, in our own mount namespace only.
    kpc::enter_private_mount_namespace();
    KPC_SYS(mount("tmpfs", "/dev", "tmpfs", 0, "mode=755"));
    kpc::observe("dev_fd_exists", access("/dev/fd", F_OK) == 0);
    kpc::Fd path_fd(open("/bin/true", O_PATH | O_CLOEXEC));
    kpc::Fd ro_fd(open("/bin/true", O_RDONLY | O_CLOEXEC));
    KPC_CHECK(path_fd && ro_fd);
    char* argv[] = {const_cast<char*>("true"), nullptr};
    // 2-3. Without /dev/fd.
    kpc::observe("without_dev_fd.execveat",
                 attempt([&] { syscall(SYS_execveat, path_fd.get(), "", argv, environ, AT_EMPTY_PATH); }));
    kpc::observe("without_dev_fd.fexecve", attempt([&] { fexecve(ro_fd.get(), argv, environ); }));
    // 4. With the link a normal userland has.
    KPC_SYS(symlink("/proc/self/fd", "/dev/fd"));
    kpc::observe("with_dev_fd.execveat",
                 attempt([&] { syscall(SYS_execveat, path_fd.get(), "", argv, environ, AT_EMPTY_PATH); }));
    _exit(0);
  }
  int st = child.wait();
  if (WIFEXITED(st) && WEXITSTATUS(st) == kpc::kExitSkip) _exit(kpc::kExitSkip);  // it said why (a chroot)
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) kpc::broken("the child ended " + kpc::describe_wait_status(st));
  return 0;
}
