// The structural FUSE hang rule (unanswerable_fuse_waiters): which holders of
// /dev/fuse could still answer a waiter. The waiter is described; the holder
// is a real child holding /dev/fuse (the rule reads its /proc/PID/fd).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include "launcher.h"

namespace kpcl {
namespace {

class FuseWaiters : public ::testing::Test {
 protected:
  void SetUp() override {
    int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
    if (fd < 0) GTEST_SKIP() << "cannot open /dev/fuse: " << strerror(errno);
    holder_ = fork();
    ASSERT_GE(holder_, 0);
    if (holder_ == 0) {
      pause();
      _exit(0);
    }
    close(fd);
  }
  void TearDown() override {
    if (holder_ > 0) {
      kill(holder_, SIGKILL);
      waitpid(holder_, nullptr, 0);
    }
  }
  TaskInfo waiter() const {
    TaskInfo w;
    w.pid = w.tid = getpid();
    w.state = 'S';
    w.wchan = "request_wait_answer";
    return w;
  }
  TaskInfo holder(char state, bool exiting) const {
    TaskInfo h;
    h.pid = h.tid = holder_;
    h.state = state;
    h.exiting = exiting;
    h.wchan = state == 'R' ? "" : "do_exit";
    return h;
  }
  pid_t holder_ = -1;
};

TEST_F(FuseWaiters, ALiveHolderCanAnswer) {
  EXPECT_TRUE(unanswerable_fuse_waiters({waiter(), holder('S', false)}, 1).empty());
}

TEST_F(FuseWaiters, ARunnableExitingHolderIsAboutToEndTheConnection) {
  EXPECT_TRUE(unanswerable_fuse_waiters({waiter(), holder('R', true)}, 1).empty());
}

TEST_F(FuseWaiters, AnExitingHolderStillHoldingTheDeviceWillCloseIt) {
  EXPECT_TRUE(unanswerable_fuse_waiters({waiter(), holder('S', true)}, 1).empty());
  EXPECT_TRUE(unanswerable_fuse_waiters({waiter(), holder('D', true)}, 1).empty());
}

TEST_F(FuseWaiters, AHolderWaitingOnFuseItselfAnswersNothing) {
  TaskInfo h = holder('D', true);
  h.wchan = "request_wait_answer";  // the self-served deadlock: its own flush
  EXPECT_EQ(unanswerable_fuse_waiters({waiter(), h}, 1), (std::set<pid_t>{getpid(), holder_}));
}

TEST_F(FuseWaiters, TheShimsDeviceIsForRecoveryNotForAnswers) {
  EXPECT_EQ(unanswerable_fuse_waiters({waiter(), holder('S', false)}, holder_), std::set<pid_t>{getpid()});
}

// The killed server of cgroup_freezer_states:fuse_stuck, seen at load 17:
// exiting, D in synchronize_rcu_expedited <- free_nsproxy <- do_exit. Its
// descriptor table is gone (exit_files), its last /dev/fuse file is not
// released yet (exit_task_work comes later): the connection is about to end.
// 3 false hangs in 150 runs of the case before this rule, 0 after.
TEST_F(FuseWaiters, AnExitingTaskPastItsFilesMayStillEndTheConnection) {
  pid_t other = fork();  // holds no /dev/fuse
  ASSERT_GE(other, 0);
  if (other == 0) {
    pause();
    _exit(0);
  }
  TaskInfo t;
  t.pid = t.tid = other;
  t.state = 'D';
  t.exiting = true;
  t.wchan = "exp_funnel_lock";
  auto got = unanswerable_fuse_waiters({waiter(), t}, 1);
  kill(other, SIGKILL);
  waitpid(other, nullptr, 0);
  EXPECT_TRUE(got.empty());
}

TEST_F(FuseWaiters, ANamespaceInitInItsTeardownReleasesNothing) {
  // Described as a task of this process, which holds no /dev/fuse; the
  // rule decides on its wchan before reading anything else.
  TaskInfo init;
  init.pid = getpid();
  init.tid = getpid() + 1;
  init.state = 'D';
  init.exiting = true;
  init.wchan = "zap_pid_ns_processes";
  EXPECT_EQ(unanswerable_fuse_waiters({waiter(), init}, 1), std::set<pid_t>{getpid()});
}

}  // namespace
}  // namespace kpcl
