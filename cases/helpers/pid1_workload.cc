// pid1_workload: the program a runtime/init under test starts, for
// runtime_pid1_duties. It reports on fd 3 (a pipe from the probe, passed
// through the runtime), or on the fd $KPC_OBS_FD names (docker cannot pass
// an fd into a container: there it is 1, stdout, which `docker run` copies
// to the probe's pipe), one line per fact:
//
//   pid1_workload exit N        exit with status N
//   pid1_workload selfkill SIG  kill itself with SIG (default action: death)
//   pid1_workload signals       catch TERM, INT, HUP, USR1; "sig N" per signal
//                               received; exit 0 after all four, or after 5 s.
//                               A child in its process group reports a
//                               SIGTERM that reaches it as "grp 15"
//   pid1_workload orphan        fork a child that forks a grandchild and
//                               exits: the grandchild reports "orphan PID PPID"
//                               once reparented, then exits; 1.5 s later
//                               report "orphan_state gone|zombie|running"
//   pid1_workload sleep         report "pid PID", then sleep 30 s
//   pid1_workload stubborn      story 004: fork a worker that ignores SIGTERM;
//                               on SIGTERM report "sig 15", forward it to the
//                               worker and wait for the worker (forever)
//
// Every mode first reports "pending MASK", the signals pending for it when
// it started (a runtime must leave none: one that is also blocked kills it
// the moment it unblocks, which it does next), then "ready PID" (its pid as
// the probe sees it may differ inside a PID namespace: the probe only uses
// it as a label).
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <string>

namespace {

int g_out = 3;  // the report fd: 3, or $KPC_OBS_FD

void say(const std::string& line) {
  std::string l = line + "\n";
  (void)!write(g_out, l.data(), l.size());
}

volatile sig_atomic_t g_seen = 0;
void on_signal(int sig) {
  char buf[32];
  int n = snprintf(buf, sizeof buf, "sig %d\n", sig);
  (void)!write(g_out, buf, n);
  ++g_seen;
}

void on_group_signal(int sig) {
  char buf[32];
  int n = snprintf(buf, sizeof buf, "grp %d\n", sig);
  (void)!write(g_out, buf, n);
  g_seen = 1;
}

// fork() a child that runs `prepare` (installs what it needs), says it is
// ready over a pipe, then runs `body` and exits 0; returns once it is ready
// (exit 70/71 when the pipe or the child fails). A signal sent after this
// returns finds the child prepared.
template <typename Prepare, typename Body>
pid_t fork_ready(Prepare prepare, Body body) {
  int ready[2];
  if (pipe(ready) != 0) _exit(70);
  pid_t child = fork();
  if (child == 0) {
    close(ready[0]);
    prepare();
    (void)!write(ready[1], "r", 1);
    close(ready[1]);
    body();
    _exit(0);
  }
  close(ready[1]);
  char r;
  if (child < 0 || read(ready[0], &r, 1) != 1) _exit(71);
  close(ready[0]);
  return child;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return 64;
  if (const char* fd = getenv("KPC_OBS_FD"); fd && *fd >= '0' && *fd <= '9') g_out = atoi(fd);
  std::string mode = argv[1];
  sigset_t pending;
  sigpending(&pending);
  unsigned long long mask = 0;
  for (int s = 1; s <= 64; ++s)
    if (sigismember(&pending, s) == 1) mask |= 1ULL << (s - 1);
  char line[64];
  snprintf(line, sizeof line, "pending %016llx", mask);
  say(line);
  // A clean start whatever the runtime passed through: forwarding is
  // judged, not the mask (runtime hygiene is inherited_signal_state's job).
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  for (int s : {SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2}) signal(s, SIG_DFL);

  if (mode == "exit" && argc > 2) {
    say("ready " + std::to_string(getpid()));
    _exit(atoi(argv[2]));
  }
  if (mode == "selfkill" && argc > 2) {
    say("ready " + std::to_string(getpid()));
    kill(getpid(), atoi(argv[2]));
    pause();
    _exit(99);
  }
  if (mode == "signals") {
    // A child in the workload's process group reports SIGTERM as "grp 15":
    // does the runtime signal the whole group (dumb-init's default, tini -g)?
    // It says it is ready (handler installed) before we say "ready": a
    // SIGTERM that came first would kill it silently (seen: a false "no
    // group forwarding" for dumb-init, once in two runs).
    fork_ready(
        [] {
          struct sigaction gs {};
          gs.sa_handler = on_group_signal;
          sigaction(SIGTERM, &gs, nullptr);
        },
        [] {
          for (int i = 0; i < 500 && !g_seen; ++i) usleep(10000);
        });
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    for (int s : {SIGTERM, SIGINT, SIGHUP, SIGUSR1}) sigaction(s, &sa, nullptr);
    say("ready " + std::to_string(getpid()));
    time_t end = time(nullptr) + 5;
    while (g_seen < 4 && time(nullptr) < end) usleep(10000);
    _exit(0);
  }
  if (mode == "orphan") {
    say("ready " + std::to_string(getpid()));
    int fds[2];
    if (pipe(fds) != 0) _exit(70);
    pid_t child = fork();
    if (child == 0) {
      pid_t parent = getpid();
      pid_t grandchild = fork();
      if (grandchild == 0) {
        // the grandchild: wait to be reparented, say who adopted us, exit
        for (int i = 0; i < 2000 && getppid() == parent; ++i) usleep(1000);
        say("orphan " + std::to_string(getpid()) + " " + std::to_string(getppid()));
        _exit(0);
      }
      (void)!write(fds[1], &grandchild, sizeof grandchild);
      _exit(0);
    }
    waitpid(child, nullptr, 0);
    pid_t orphan = 0;
    (void)!read(fds[0], &orphan, sizeof orphan);
    // Whoever adopted it had 1.5 s to reap it: is it gone, or a zombie?
    usleep(1500000);
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", orphan);
    std::string state = "gone";
    if (FILE* f = fopen(path, "r")) {
      char buf[512] = {0};
      size_t n = fread(buf, 1, sizeof buf - 1, f);
      fclose(f);
      const char* rp = strrchr(buf, ')');
      if (n > 0 && rp && rp[1] == ' ') state = rp[2] == 'Z' ? "zombie" : "running";
    }
    say("orphan_state " + state);
    _exit(0);
  }
  if (mode == "stubborn") {
    pid_t worker = fork_ready([] { signal(SIGTERM, SIG_IGN); },
                              [] {
                                for (int i = 0; i < 60; ++i) sleep(1);
                              });
    struct sigaction sa {};
    sa.sa_handler = on_signal;  // "sig 15"
    sigaction(SIGTERM, &sa, nullptr);
    say("ready " + std::to_string(getpid()));
    while (!g_seen) usleep(10000);
    kill(worker, SIGTERM);        // forwarded, and ignored
    waitpid(worker, nullptr, 0);  // the parent that waits for its child (multiprocessing's atexit join)
    _exit(0);
  }
  if (mode == "sleep") {
    say("ready " + std::to_string(getpid()));
    sleep(30);
    _exit(0);
  }
  return 64;
}
