// at_abnormal_exit: skip() and broken() _exit() without destructors; the
// hooks are how a probe still removes what it created outside itself.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kpc/record.h"

namespace {
int g_fd = -1;
void write_h(void*) { (void)!write(g_fd, "h", 1); }

// Runs `body` in a child (no launcher: its records go to stderr); returns
// what the hooks wrote to the pipe and the child's exit code.
template <class F>
std::pair<std::string, int> in_child(F body) {
  int p[2];
  EXPECT_EQ(pipe(p), 0);
  pid_t pid = fork();
  if (pid == 0) {
    close(p[0]);
    g_fd = p[1];
    body();
    _exit(0);
  }
  close(p[1]);
  std::string got;
  char c;
  while (read(p[0], &c, 1) == 1) got += c;
  close(p[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  return {got, WIFEXITED(st) ? WEXITSTATUS(st) : -1};
}
}  // namespace

TEST(AtAbnormalExit, RunsOnSkipAndBroken) {
  auto [s, code] = in_child([] {
    kpc::at_abnormal_exit(write_h, nullptr);
    kpc::skip("test");
  });
  EXPECT_EQ(s, "h");
  EXPECT_EQ(code, kpc::kExitSkip);
  auto [b, code2] = in_child([] {
    kpc::at_abnormal_exit(write_h, nullptr);
    kpc::broken("test");
  });
  EXPECT_EQ(b, "h");
  EXPECT_EQ(code2, kpc::kExitBroken);
}

TEST(AtAbnormalExit, NotInAChildForkedLater) {
  auto [s, code] = in_child([] {
    kpc::at_abnormal_exit(write_h, nullptr);
    pid_t c = fork();
    if (c == 0) kpc::skip("the child's skip");  // must not run the parent's hook
    int st;
    waitpid(c, &st, 0);
  });
  EXPECT_EQ(s, "");
  EXPECT_EQ(code, 0);
}
