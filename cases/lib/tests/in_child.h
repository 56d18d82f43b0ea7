// Runs a piece of a test in a forked child and collects what it recorded.
//
// record.cc decides once per process where records go ($KPC_OBS_FD, else
// stderr in readable form), and skip()/broken() _exit() the process: both
// are only testable in a process of their own. The child's channel is a
// SOCK_SEQPACKET socket, so every write() the child makes arrives as one
// message: a test sees not only what was recorded but that each record was
// one write (record.h's promise that records never interleave).
//
// The parent process of the unit tests must never record anything itself
// (no observe/note/skip there), or the children would inherit its choice.
#pragma once

#include <errno.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <string>
#include <vector>

namespace kpc::tests {

enum class Records { kToLauncher, kToStderr };

struct ChildResult {
  std::vector<std::string> writes;  // one element per write() to the channel
  int status = -1;                  // raw wait status
  bool timed_out = false;           // killed by run_in_child's deadline

  int exit_code() const { return WIFEXITED(status) ? WEXITSTATUS(status) : -1; }
  std::string all() const {
    std::string s;
    for (const auto& w : writes) s += w;
    return s;
  }
  // For failure messages: how the child ended and everything it wrote.
  std::string describe() const {
    std::string s = timed_out ? "timed out; " : "";
    s += WIFEXITED(status)     ? "exited " + std::to_string(WEXITSTATUS(status))
         : WIFSIGNALED(status) ? "killed by signal " + std::to_string(WTERMSIG(status))
                               : "status " + std::to_string(status);
    s += "; wrote:\n" + all();
    return s;
  }
};

// The line observe() sends the launcher: obs_line("k", "bool", "true").
inline std::string obs_line(const std::string& key, const std::string& type, const std::string& json_value) {
  return "{\"obs\":\"" + key + "\",\"type\":\"" + type + "\",\"value\":" + json_value + "}\n";
}

inline long long now_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<long long>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

// Forks; the child points its records at a fresh channel (kToLauncher: the
// socket as $KPC_OBS_FD; kToStderr: no $KPC_OBS_FD, the socket as fd 2),
// runs body() and _exit(0)s. The parent collects the writes until the
// child and everything it forked closed the socket, or kills the child
// after timeout_ms.
template <class F>
ChildResult run_in_child(F body, Records where = Records::kToLauncher, int timeout_ms = 5000) {
  ChildResult r;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
    ADD_FAILURE() << "socketpair: " << strerror(errno);
    return r;
  }
  fflush(nullptr);  // or the child's finish() prints the parent's buffered output again
  pid_t pid = fork();
  if (pid < 0) {
    ADD_FAILURE() << "fork: " << strerror(errno);
    close(sv[0]);
    close(sv[1]);
    return r;
  }
  if (pid == 0) {
    close(sv[0]);
    if (where == Records::kToLauncher) {
      setenv("KPC_OBS_FD", std::to_string(sv[1]).c_str(), 1);
    } else {
      unsetenv("KPC_OBS_FD");
      dup2(sv[1], 2);
      close(sv[1]);
    }
    body();
    _exit(0);
  }
  close(sv[1]);
  const long long deadline = now_ms() + timeout_ms;
  std::vector<char> buf(1 << 16);
  for (;;) {
    long long left = deadline - now_ms();
    pollfd p{sv[0], POLLIN, 0};
    int n = left > 0 ? poll(&p, 1, static_cast<int>(left)) : 0;
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      r.timed_out = true;
      kill(pid, SIGKILL);
      break;
    }
    ssize_t got = recv(sv[0], buf.data(), buf.size(), 0);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;  // every writer is gone
    r.writes.emplace_back(buf.data(), static_cast<size_t>(got));
  }
  close(sv[0]);
  while (waitpid(pid, &r.status, 0) < 0 && errno == EINTR) {}
  return r;
}

}  // namespace kpc::tests
