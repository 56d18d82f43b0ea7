/* musl_tracee: the tracee of tracer_sees_creation_path, built with musl
 * (Debian's musl-gcc, statically) so the tracer sees which system call
 * musl's own fork(), vfork(), posix_spawn() and pthread_create() issue --
 * story 003: glibc's fork() is clone, musl's is fork.
 *
 *   musl_tracee fork|vfork|posix_spawn|pthread_create
 *
 * Like the glibc tracee in the probe: PTRACE_TRACEME, stop, create one
 * process or thread by the named path, reap it, exit 0. Exit 92: the path
 * failed; 93: bad arguments. Already traced (`strace -f musl_tracee fork`):
 * it skips the stop and just runs the path. C, because Debian ships no C++ library for musl.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static void *thread_body(void *arg) { return arg; }

int main(int argc, char **argv) {
  if (argc != 2) return 93;
  /* Already traced (by strace, say): no stop, just run the path. */
  if (ptrace(PTRACE_TRACEME, 0, NULL, NULL) == 0) raise(SIGSTOP);
  const char *path = argv[1];
  pid_t pid = -1;
  if (strcmp(path, "fork") == 0) {
    pid = fork();
    if (pid == 0) _exit(0);
  } else if (strcmp(path, "vfork") == 0) {
    pid = vfork();
    if (pid == 0) _exit(0);
  } else if (strcmp(path, "posix_spawn") == 0) {
    char *args[] = {"/bin/true", NULL};
    if (posix_spawn(&pid, "/bin/true", NULL, NULL, args, environ) != 0) pid = -1;
  } else if (strcmp(path, "pthread_create") == 0) {
    pthread_t t;
    if (pthread_create(&t, NULL, thread_body, NULL) != 0) return 91;
    pthread_join(t, NULL);
    return 0;
  } else {
    return 93;
  }
  if (pid < 0) return 92;
  int st;
  waitpid(pid, &st, __WALL);
  return 0;
}
