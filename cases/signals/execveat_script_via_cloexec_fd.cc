// execveat_script_via_cloexec_fd: execveat(fd, "", AT_EMPTY_PATH) of a
// "#!" script. The kernel hands the interpreter the script's name as
// /dev/fd/N. With a close-on-exec fd that name would point nowhere after
// the exec, so the kernel refuses at once (ENOENT, BINPRM_FLAGS_PATH_INACCESSIBLE);
// without close-on-exec the interpreter reads the script through /dev/fd/N.
// The sibling of execveat_empty_path_needs_dev_fd, which execs a binary.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "kpc/probe.h"

extern char** environ;

namespace {
// execveat in a child; "exited N" when the program ran, else the errno.
std::string attempt(int fd) {
  pid_t pid = kpc::fork_or_broken();
  if (pid == 0) {
    char* argv[] = {const_cast<char*>("script"), nullptr};
    syscall(SYS_execveat, fd, "", argv, environ, AT_EMPTY_PATH);
    _exit(errno > 0 && errno < 100 ? 100 + errno : 99);
  }
  int st = 0;
  KPC_SYS(waitpid(pid, &st, 0));
  if (WIFEXITED(st) && WEXITSTATUS(st) > 100) return kpc::errno_name(WEXITSTATUS(st) - 100);
  return kpc::describe_wait_status(st);
}
}  // namespace

int probe_main(kpc::Probe&) {
  // 1. A script that exits 7.
  kpc::TempDir dir("script");
  std::string path = dir.path() + "/script";
  {
    kpc::Fd f(KPC_SYS(open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0755)));
    const std::string text = "#!/bin/sh\nexit 7\n";
    KPC_CHECK(write(f.get(), text.data(), text.size()) == static_cast<ssize_t>(text.size()));
  }
  kpc::observe("dev_fd_exists", access("/dev/fd", F_OK) == 0);
  // 2. Through a descriptor that survives the exec: the interpreter runs it.
  kpc::Fd plain(KPC_SYS(open(path.c_str(), O_RDONLY)));
  kpc::observe("script.fd_kept_at_exec", attempt(plain.get()));
  // 3. Through a close-on-exec descriptor: refused before anything runs.
  kpc::Fd cloexec(KPC_SYS(open(path.c_str(), O_RDONLY | O_CLOEXEC)));
  kpc::observe("script.fd_cloexec", attempt(cloexec.get()));
  // 4. O_PATH with close-on-exec, as fexecve users often open it: the same.
  kpc::Fd opath(KPC_SYS(open(path.c_str(), O_PATH | O_CLOEXEC)));
  kpc::observe("script.o_path_cloexec", attempt(opath.get()));
  return 0;
}
