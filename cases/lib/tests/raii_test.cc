// kpc/raii.h: the owners and handshakes every probe is built from. A probe
// that leaks a descriptor, a zombie or a signal mask changes what the next
// observation sees, so each owner is held to releasing exactly what it owns.
#include "kpc/raii.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <string>

#include "in_child.h"
#include "kpc/caps.h"
#include "kpc/record.h"

namespace kpc {
namespace {

using tests::ChildResult;
constexpr auto obs = tests::obs_line;
using tests::now_ms;
using tests::run_in_child;

// "open" for an open descriptor, else the errno name of fcntl(F_GETFD).
std::string fd_state(int fd) {
  errno = 0;
  if (fcntl(fd, F_GETFD) != -1) return "open";
  return errno_name(errno);
}

int open_null() {
  int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  EXPECT_GE(fd, 0) << "open /dev/null: " << errno_name(errno);
  return fd;
}

// "running", or how waitpid(WNOHANG) sees `pid`: "ECHILD" once it is reaped.
std::string child_state(pid_t pid) {
  int st = 0;
  pid_t r = waitpid(pid, &st, WNOHANG | __WALL);
  if (r == 0) return "running";
  if (r == pid) return "reaped by the test: " + describe_wait_status(st);
  return errno_name(errno);
}

// For a child that must outlive nothing: it waits to be killed, and dies
// with its parent (`parent`), so no failed test leaves it behind. SIGTERM
// is reset in case the test runner ignores it.
[[noreturn]] void idle_until_killed(pid_t parent) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(0);
  signal(SIGTERM, SIG_DFL);
  for (;;) pause();
}

Child blocked_child() {
  pid_t me = getpid();
  return fork_child([me] { idle_until_killed(me); });
}

// --- Fd --------------------------------------------------------------------

TEST(Fd, DestructorClosesTheDescriptor) {
  int raw = open_null();
  {
    Fd fd(raw);
    ASSERT_EQ(fd_state(raw), "open");
  }
  EXPECT_EQ(fd_state(raw), "EBADF");
}

TEST(Fd, MoveAssignmentClosesTheDescriptorItHeld) {
  int a = open_null(), b = open_null();
  Fd fa(a), fb(b);
  fa = std::move(fb);
  EXPECT_EQ(fd_state(a), "EBADF") << "the descriptor fa held before the assignment";
  EXPECT_EQ(fd_state(b), "open");
  EXPECT_EQ(fa.get(), b);
  EXPECT_EQ(fb.get(), -1);
  EXPECT_FALSE(fb);
}

TEST(Fd, MovedFromDoesNotClose) {
  int raw = open_null();
  Fd outer;
  {
    Fd inner(raw);
    outer = Fd(std::move(inner));
  }  // inner (moved from) destroyed here
  EXPECT_EQ(fd_state(raw), "open");
  EXPECT_EQ(outer.get(), raw);
}

TEST(Fd, SelfMoveAssignmentKeepsTheDescriptor) {
  int raw = open_null();
  Fd fd(raw);
  Fd& same = fd;
  fd = std::move(same);
  EXPECT_EQ(fd.get(), raw);
  EXPECT_EQ(fd_state(raw), "open");
}

TEST(Fd, ReleaseGivesUpOwnership) {
  int raw = open_null();
  {
    Fd fd(raw);
    EXPECT_EQ(fd.release(), raw);
    EXPECT_FALSE(fd);
  }
  EXPECT_EQ(fd_state(raw), "open");
  close(raw);
}

TEST(Fd, ResetClosesTheOldAndOwnsTheNew) {
  int a = open_null(), b = open_null();
  Fd fd(a);
  fd.reset(b);
  EXPECT_EQ(fd_state(a), "EBADF");
  EXPECT_EQ(fd_state(b), "open");
  EXPECT_EQ(fd.get(), b);
}

// --- Pipe ------------------------------------------------------------------

TEST(Pipe, MakeWithCloexecSetsItOnBothEnds) {
  Pipe p = Pipe::make(O_CLOEXEC);
  EXPECT_EQ(fcntl(p.read.get(), F_GETFD), FD_CLOEXEC) << errno_name(errno);
  EXPECT_EQ(fcntl(p.write.get(), F_GETFD), FD_CLOEXEC) << errno_name(errno);
  Pipe q = Pipe::make();
  EXPECT_EQ(fcntl(q.read.get(), F_GETFD), 0) << errno_name(errno);
  EXPECT_EQ(fcntl(q.write.get(), F_GETFD), 0) << errno_name(errno);
}

// wait_for_go closes the child's copy of the write end: without that the
// child never sees EOF when the parent closes its end, and waits out the
// whole timeout.
TEST(Pipe, WaitForGoReturnsWhenTheParentClosesItsEnd) {
  Pipe go = Pipe::make(O_CLOEXEC);
  Child c = fork_child([&] {
    long long t0 = now_ms();
    go.wait_for_go(5000);
    return now_ms() - t0 < 2500 ? 0 : 1;
  });
  go.write.reset();
  auto st = c.wait_for(5000);
  ASSERT_TRUE(st) << "wait_for_go did not return";
  EXPECT_EQ(describe_wait_status(*st), "exited 0") << "exited 1: it waited for its timeout, not for EOF";
}

TEST(Pipe, WaitForGoReturnsOnTheParentsByte) {
  Pipe go = Pipe::make(O_CLOEXEC);
  Child c = fork_child([&] {
    long long t0 = now_ms();
    go.wait_for_go(5000);
    return now_ms() - t0 < 2500 ? 0 : 1;
  });
  send_byte(go.write.get());
  auto st = c.wait_for(5000);
  ASSERT_TRUE(st) << "wait_for_go did not return";
  EXPECT_EQ(describe_wait_status(*st), "exited 0");
}

// --- send_byte / recv_byte ---------------------------------------------------

TEST(RecvByte, ReturnsTheByteSent) {
  Pipe p = Pipe::make(O_CLOEXEC);
  send_byte(p.write.get(), 'R');
  send_byte(p.write.get());
  EXPECT_EQ(recv_byte(p.read.get(), 1000), std::optional<char>('R'));
  EXPECT_EQ(recv_byte(p.read.get(), 1000), std::optional<char>('x')) << "send_byte's default byte";
}

TEST(RecvByte, ZeroTimeoutTakesAByteAlreadyThere) {
  Pipe p = Pipe::make(O_CLOEXEC);
  send_byte(p.write.get(), 'z');
  EXPECT_EQ(recv_byte(p.read.get(), 0), std::optional<char>('z'));
  EXPECT_EQ(recv_byte(p.read.get(), 0), std::nullopt);
}

TEST(RecvByte, TimesOutOnASilentPipeAfterAboutTheTimeout) {
  Pipe p = Pipe::make(O_CLOEXEC);
  long long t0 = now_ms();
  EXPECT_EQ(recv_byte(p.read.get(), 50), std::nullopt);
  long long took = now_ms() - t0;
  EXPECT_GE(took, 49) << "returned before its timeout";
  EXPECT_LT(took, 1000) << "waited far past its timeout";
}

TEST(RecvByte, NulloptAtEofWithoutWaitingForTheTimeout) {
  Pipe p = Pipe::make(O_CLOEXEC);
  p.write.reset();
  long long t0 = now_ms();
  EXPECT_EQ(recv_byte(p.read.get(), 5000), std::nullopt);
  EXPECT_LT(now_ms() - t0, 1000);
}

int g_signal_pipe = -1;
void write_byte_to_pipe(int) { (void)!write(g_signal_pipe, "s", 1); }
void nothing(int) {}

// A signal whose handler interrupts poll() (no SA_RESTART) is not an error
// and not the end of the wait. In a child: a poll error is broken(), which
// exits.
TEST(RecvByte, SignalDuringTheWaitIsNotTheEnd) {
  ChildResult r = run_in_child([] {
    Pipe p = Pipe::make(O_CLOEXEC);
    g_signal_pipe = p.write.get();
    ScopedSigaction sa(SIGALRM, write_byte_to_pipe, 0);
    itimerval t{};
    t.it_value.tv_usec = 20000;
    setitimer(ITIMER_REAL, &t, nullptr);
    auto c = recv_byte(p.read.get(), 5000);
    observe("got", c ? std::string(1, *c) : std::string("nullopt"));
  });
  EXPECT_EQ(r.all(), obs("got", "str", "\"s\"")) << r.describe();
}

// Interrupted waits go on with what is left of the timeout, not a new one:
// with a signal every 30 ms a restarted 100 ms timeout would never end.
TEST(RecvByte, SignalsDoNotRestartTheTimeout) {
  ChildResult r = run_in_child(
      [] {
        Pipe p = Pipe::make(O_CLOEXEC);
        ScopedSigaction sa(SIGALRM, nothing, 0);
        itimerval t{};
        t.it_value.tv_usec = t.it_interval.tv_usec = 30000;
        setitimer(ITIMER_REAL, &t, nullptr);
        long long t0 = now_ms();
        auto c = recv_byte(p.read.get(), 100);
        long long took = now_ms() - t0;
        itimerval off{};
        setitimer(ITIMER_REAL, &off, nullptr);
        observe("nullopt", !c.has_value());
        observe("in_time", took >= 99 && took < 1500);
        note("took_ms", took);
      },
      tests::Records::kToLauncher, 3000);
  EXPECT_FALSE(r.timed_out) << "recv_byte(100 ms) still waiting after 3 s of signals";
  EXPECT_NE(r.all().find(obs("nullopt", "bool", "true")), std::string::npos) << r.describe();
  EXPECT_NE(r.all().find(obs("in_time", "bool", "true")), std::string::npos) << r.describe();
}

// --- send_int / recv_int -------------------------------------------------------

TEST(RecvInt, RoundTripsAnyInt) {
  Pipe p = Pipe::make(O_CLOEXEC);
  for (int v : {0, -1, 42, INT32_MIN, INT32_MAX}) {
    send_int(p.write.get(), v);
    EXPECT_EQ(recv_int(p.read.get(), 1000), std::optional<int>(v));
  }
}

TEST(RecvInt, NulloptAtEof) {
  Pipe p = Pipe::make(O_CLOEXEC);
  p.write.reset();
  long long t0 = now_ms();
  EXPECT_EQ(recv_int(p.read.get(), 5000), std::nullopt);
  EXPECT_LT(now_ms() - t0, 1000);
}

TEST(RecvInt, NulloptForAShortWrite) {
  Pipe p = Pipe::make(O_CLOEXEC);
  ASSERT_EQ(write(p.write.get(), "ab", 2), 2) << errno_name(errno);
  p.write.reset();
  EXPECT_EQ(recv_int(p.read.get(), 1000), std::nullopt);
}

TEST(RecvInt, TimesOutOnASilentPipe) {
  Pipe p = Pipe::make(O_CLOEXEC);
  long long t0 = now_ms();
  EXPECT_EQ(recv_int(p.read.get(), 50), std::nullopt);
  long long took = now_ms() - t0;
  EXPECT_GE(took, 49);
  EXPECT_LT(took, 1000);
}

// --- monotonic_ms ----------------------------------------------------------------

TEST(MonotonicMs, IsClockMonotonicInMilliseconds) {
  long long before = now_ms();
  int64_t m = monotonic_ms();
  long long after = now_ms();
  EXPECT_GE(m, before);
  EXPECT_LE(m, after);
  EXPECT_LE(monotonic_ms() - m, 1000);
}

// --- describe_wait_status of real children ----------------------------------------

TEST(DescribeWaitStatus, OfRealChildren) {
  Child exits = fork_child([] { return 3; });
  EXPECT_EQ(describe_wait_status(exits.wait()), "exited 3");

  Child killed = blocked_child();
  killed.kill(SIGTERM);
  EXPECT_EQ(describe_wait_status(killed.wait()), "killed SIGTERM");

  Child stopped = blocked_child();
  stopped.kill(SIGSTOP);
  EXPECT_EQ(describe_wait_status(stopped.wait(WUNTRACED)), "stopped SIGSTOP");
  EXPECT_TRUE(stopped) << "a stopped child is still owned";
  stopped.kill(SIGCONT);
  EXPECT_EQ(describe_wait_status(stopped.wait(WCONTINUED)), "continued");
  EXPECT_TRUE(stopped) << "a continued child is still owned";
}

TEST(DescribeWaitStatus, UnknownStatusByNumber) {
  // Neither exited, signaled, stopped nor continued (0xffff would be).
  EXPECT_EQ(describe_wait_status(0x00ff), "status 255");
}

// --- Child -------------------------------------------------------------------------

TEST(Child, DestructorKillsAndReaps) {
  pid_t pid;
  {
    Child c = blocked_child();
    pid = c.pid();
    ASSERT_GT(pid, 0);
    ASSERT_EQ(child_state(pid), "running");
  }
  EXPECT_EQ(child_state(pid), "ECHILD") << "the destroyed Child left its process unreaped";
}

TEST(Child, WaitReturnsTheStatusAndForgetsTheChild) {
  Child c = fork_child([] { return 7; });
  pid_t pid = c.pid();
  int st = c.wait();
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 7) << describe_wait_status(st);
  EXPECT_FALSE(c);
  EXPECT_EQ(child_state(pid), "ECHILD");
}

TEST(Child, WaitForTimesOutAndKeepsTheChild) {
  Child c = blocked_child();
  long long t0 = now_ms();
  EXPECT_EQ(c.wait_for(30), std::nullopt);
  long long took = now_ms() - t0;
  EXPECT_GE(took, 30);
  EXPECT_LT(took, 1000);
  EXPECT_TRUE(c);
  EXPECT_EQ(child_state(c.pid()), "running");
}

TEST(Child, WaitForReapsAChildThatEnds) {
  Child c = fork_child([] { return 4; });
  auto st = c.wait_for(5000);
  ASSERT_TRUE(st);
  EXPECT_EQ(describe_wait_status(*st), "exited 4");
  EXPECT_FALSE(c);
}

TEST(Child, MovedFromDoesNotKill) {
  Child outer;
  {
    Child inner = blocked_child();
    outer = std::move(inner);
  }  // inner (moved from) destroyed here
  ASSERT_TRUE(outer);
  EXPECT_EQ(child_state(outer.pid()), "running");
}

TEST(Child, MoveAssignmentKillsAndReapsTheChildItHeld) {
  Child c = blocked_child();
  pid_t first = c.pid();
  c = blocked_child();
  EXPECT_EQ(child_state(first), "ECHILD");
  EXPECT_NE(c.pid(), first);
  EXPECT_EQ(child_state(c.pid()), "running");
}

TEST(Child, ReleaseLeavesTheProcessAlone) {
  pid_t pid;
  {
    Child c = blocked_child();
    pid = c.release();
    EXPECT_FALSE(c);
  }
  EXPECT_EQ(child_state(pid), "running");
  kill(pid, SIGKILL);
  int st = 0;
  ASSERT_EQ(waitpid(pid, &st, 0), pid) << errno_name(errno);
  EXPECT_EQ(describe_wait_status(st), "killed SIGKILL");
}

// --- fork_or_broken, fork_exit_and_wait --------------------------------------------

TEST(ForkOrBroken, ZeroInTheChildItsPidInTheParent) {
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0) << errno_name(errno);
  pid_t pid = fork_or_broken();
  if (pid == 0) {
    send_int(p[1], static_cast<int>(getpid()));
    _exit(5);
  }
  close(p[1]);
  EXPECT_EQ(recv_int(p[0], 5000), std::optional<int>(pid));
  close(p[0]);
  int st = 0;
  ASSERT_EQ(waitpid(pid, &st, 0), pid) << errno_name(errno);
  EXPECT_EQ(describe_wait_status(st), "exited 5");
}

// A fork that fails makes the probe broken, naming the errno. RLIMIT_NPROC
// of 0 makes fork() fail with EAGAIN, but not for root: a root test drops
// to nobody first, in its child.
TEST(ForkOrBroken, FailureIsBrokenWithTheErrno) {
  ChildResult r = run_in_child([] {
    if (geteuid() == 0 && setuid(65534) != 0) _exit(3);
    rlimit none{0, 0};
    if (setrlimit(RLIMIT_NPROC, &none) != 0) _exit(4);
    pid_t pid = fork_or_broken();
    if (pid == 0) _exit(0);
    _exit(5);  // fork worked: nothing to test
  });
  if (r.exit_code() == 3) GTEST_SKIP() << "cannot become uid 65534 here (no such uid in this user namespace?)";
  ASSERT_NE(r.exit_code(), 4) << "setrlimit(RLIMIT_NPROC) failed";
  if (r.exit_code() == 5) GTEST_SKIP() << "fork() worked despite RLIMIT_NPROC 0 (uid 65534 has CAP_SYS_RESOURCE?)";
  EXPECT_EQ(r.exit_code(), kExitBroken) << r.describe();
  ASSERT_EQ(r.writes.size(), 1u) << r.describe();
  EXPECT_NE(r.writes[0].find("{\"broken\":"), std::string::npos) << r.describe();
  EXPECT_NE(r.writes[0].find("fork() failed: EAGAIN"), std::string::npos) << r.describe();
}

TEST(ForkExitAndWait, ExitedZero) { EXPECT_EQ(fork_exit_and_wait(), "exited 0"); }

TEST(ForkExitAndWait, EchildWhereChildrenAreAutoReaped) {
  ChildResult r = run_in_child([] {
    ScopedSigaction ign(SIGCHLD, SIG_IGN);
    observe("result", fork_exit_and_wait());
  });
  EXPECT_EQ(r.all(), obs("result", "str", "\"ECHILD\"")) << r.describe();
}

// --- expect_ready ----------------------------------------------------------------------

TEST(ExpectReady, ReturnsOnTheReadyByte) {
  ChildResult r = run_in_child([] {
    Pipe ready = Pipe::make(O_CLOEXEC);
    pid_t me = getpid();
    Child c = fork_child([&] {
      send_byte(ready.write.get());
      idle_until_killed(me);
    });
    ready.write.reset();
    expect_ready(c, ready.read.get(), 5000, "the child");
    observe("ready", true);
  });
  EXPECT_EQ(r.exit_code(), 0) << r.describe();
  EXPECT_EQ(r.all(), obs("ready", "bool", "true")) << r.describe();
}

TEST(ExpectReady, AChildThatSkippedSkipsTheCaller) {
  ChildResult r = run_in_child([] {
    Pipe ready = Pipe::make(O_CLOEXEC);
    Child c = fork_child([] { return kExitSkip; });
    ready.write.reset();
    expect_ready(c, ready.read.get(), 5000, "the child");
    observe("ready", true);
  });
  EXPECT_EQ(r.exit_code(), kExitSkip) << r.describe();
  EXPECT_EQ(r.all(), "{\"skip\":\"a process of the probe skipped (reason above)\"}\n") << r.describe();
}

TEST(ExpectReady, AChildThatDiedMakesTheCallerBrokenNamingWhatAndHow) {
  ChildResult r = run_in_child([] {
    Pipe ready = Pipe::make(O_CLOEXEC);
    Child c = fork_child([] { return 3; });
    ready.write.reset();
    expect_ready(c, ready.read.get(), 5000, "the helper never got ready");
    observe("ready", true);
  });
  EXPECT_EQ(r.exit_code(), kExitBroken) << r.describe();
  EXPECT_EQ(r.all(), "{\"broken\":\"the helper never got ready (exited 3)\"}\n") << r.describe();
}

// --- ScopedSigaction, ScopedSigmask ----------------------------------------------------

// Saves the process's real disposition of the signals a test changes and
// puts it back whatever the code under test did.
class SignalStateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int i = 0; i < 2; ++i) ASSERT_EQ(sigaction(kSigs[i], nullptr, &saved_[i]), 0) << errno_name(errno);
    ASSERT_EQ(pthread_sigmask(SIG_SETMASK, nullptr, &saved_mask_), 0);
  }
  void TearDown() override {
    pthread_sigmask(SIG_SETMASK, &saved_mask_, nullptr);
    for (int i = 0; i < 2; ++i) sigaction(kSigs[i], &saved_[i], nullptr);
  }
  static void set(int sig, void (*handler)(int), int flags) {
    struct sigaction a {};
    a.sa_handler = handler;
    a.sa_flags = flags;
    sigemptyset(&a.sa_mask);
    ASSERT_EQ(sigaction(sig, &a, nullptr), 0) << errno_name(errno);
  }
  static struct sigaction get(int sig) {
    struct sigaction a {};
    EXPECT_EQ(sigaction(sig, nullptr, &a), 0) << errno_name(errno);
    return a;
  }
  static bool blocked(int sig) {
    sigset_t m;
    EXPECT_EQ(pthread_sigmask(SIG_SETMASK, nullptr, &m), 0);
    return sigismember(&m, sig) == 1;
  }
  static constexpr int kSigs[2] = {SIGUSR1, SIGUSR2};
  struct sigaction saved_[2]{};
  sigset_t saved_mask_{};
};

void handler_a(int) {}
void handler_b(int) {}

using ScopedSigactionTest = SignalStateTest;

TEST_F(ScopedSigactionTest, InstallsTheHandlerAndFlagsThenRestoresThePrevious) {
  set(SIGUSR1, handler_a, SA_NODEFER);
  {
    ScopedSigaction s(SIGUSR1, handler_b, SA_RESTART);
    struct sigaction now = get(SIGUSR1);
    EXPECT_EQ(now.sa_handler, handler_b);
    EXPECT_TRUE(now.sa_flags & SA_RESTART);
    EXPECT_FALSE(now.sa_flags & SA_NODEFER);
  }
  struct sigaction after = get(SIGUSR1);
  EXPECT_EQ(after.sa_handler, handler_a) << "the previous handler was not restored";
  EXPECT_TRUE(after.sa_flags & SA_NODEFER) << "the previous flags were not restored";
  EXPECT_FALSE(after.sa_flags & SA_RESTART);
}

TEST_F(ScopedSigactionTest, StructFormInstallsItsMaskThenRestoresIgnore) {
  set(SIGUSR2, SIG_IGN, 0);
  {
    struct sigaction a {};
    a.sa_handler = handler_a;
    sigemptyset(&a.sa_mask);
    sigaddset(&a.sa_mask, SIGTERM);
    ScopedSigaction s(SIGUSR2, a);
    struct sigaction now = get(SIGUSR2);
    EXPECT_EQ(now.sa_handler, handler_a);
    EXPECT_EQ(sigismember(&now.sa_mask, SIGTERM), 1);
  }
  EXPECT_EQ(get(SIGUSR2).sa_handler, SIG_IGN);
}

TEST_F(ScopedSigactionTest, NestedScopesUnwindInOrder) {
  set(SIGUSR1, SIG_DFL, 0);
  {
    ScopedSigaction outer(SIGUSR1, handler_a);
    {
      ScopedSigaction inner(SIGUSR1, SIG_IGN);
      EXPECT_EQ(get(SIGUSR1).sa_handler, SIG_IGN);
    }
    EXPECT_EQ(get(SIGUSR1).sa_handler, handler_a);
  }
  EXPECT_EQ(get(SIGUSR1).sa_handler, SIG_DFL);
}

using ScopedSigmaskTest = SignalStateTest;

TEST_F(ScopedSigmaskTest, BlockThenRestore) {
  sigset_t none;
  sigemptyset(&none);
  ASSERT_EQ(pthread_sigmask(SIG_SETMASK, &none, nullptr), 0);
  {
    ScopedSigmask m(SIG_BLOCK, SigSet::of({SIGUSR1}));
    EXPECT_TRUE(blocked(SIGUSR1));
    EXPECT_FALSE(blocked(SIGUSR2)) << "SIG_BLOCK adds to the mask, it does not set others";
  }
  EXPECT_FALSE(blocked(SIGUSR1)) << "the mask was not restored";
}

TEST_F(ScopedSigmaskTest, UnblockThenRestoreTheBlockedSignal) {
  sigset_t both;
  sigemptyset(&both);
  sigaddset(&both, SIGUSR1);
  sigaddset(&both, SIGUSR2);
  ASSERT_EQ(pthread_sigmask(SIG_SETMASK, &both, nullptr), 0);
  {
    ScopedSigmask m(SIG_UNBLOCK, SigSet::of({SIGUSR2}));
    EXPECT_TRUE(blocked(SIGUSR1));
    EXPECT_FALSE(blocked(SIGUSR2));
  }
  EXPECT_TRUE(blocked(SIGUSR1));
  EXPECT_TRUE(blocked(SIGUSR2)) << "the mask was not restored";
}

TEST_F(ScopedSigmaskTest, SetmaskReplacesTheWholeMaskThenRestoresIt) {
  sigset_t one;
  sigemptyset(&one);
  sigaddset(&one, SIGUSR1);
  ASSERT_EQ(pthread_sigmask(SIG_SETMASK, &one, nullptr), 0);
  {
    ScopedSigmask m(SIG_SETMASK, SigSet::of({SIGUSR2}));
    EXPECT_FALSE(blocked(SIGUSR1));
    EXPECT_TRUE(blocked(SIGUSR2));
  }
  EXPECT_TRUE(blocked(SIGUSR1));
  EXPECT_FALSE(blocked(SIGUSR2));
}

// --- TempDir ----------------------------------------------------------------------------

bool exists(const std::string& p) {
  struct stat st {};
  return lstat(p.c_str(), &st) == 0;
}

void write_file(const std::string& p) {
  int fd = open(p.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0) << p << ": " << errno_name(errno);
  close(fd);
}

// Sets $KPC_TMPDIR for one test and puts back what was there.
class TempDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* v = getenv("KPC_TMPDIR");
    had_ = v != nullptr;
    if (had_) old_ = v;
    char tmpl[] = "/tmp/kpc-tempdir-test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr) << errno_name(errno);
    base_ = tmpl;
    setenv("KPC_TMPDIR", base_.c_str(), 1);
  }
  void TearDown() override {
    if (had_) setenv("KPC_TMPDIR", old_.c_str(), 1);
    else unsetenv("KPC_TMPDIR");
    remove_tree(base_);
  }
  bool had_ = false;
  std::string old_, base_;
};

TEST_F(TempDirTest, APrivateDirectoryUnderKpcTmpdirNamedByThePrefix) {
  TempDir t("unit-prefix");
  EXPECT_EQ(t.path().rfind(base_ + "/unit-prefix.", 0), 0u) << t.path();
  EXPECT_EQ(t.path().size(), base_.size() + std::string("/unit-prefix.XXXXXX").size()) << t.path();
  struct stat st {};
  ASSERT_EQ(lstat(t.path().c_str(), &st), 0) << errno_name(errno);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0700u);
}

TEST_F(TempDirTest, EmptyKpcTmpdirMeansTmp) {
  setenv("KPC_TMPDIR", "", 1);
  TempDir t("kpc-unit");
  EXPECT_EQ(t.path().rfind("/tmp/kpc-unit.", 0), 0u) << t.path();
}

TEST_F(TempDirTest, DestructorRemovesItWithItsContentsButNotWhatLinksPointTo) {
  std::string outside = base_ + "/outside";
  write_file(outside);
  std::string path;
  {
    TempDir t;
    path = t.path();
    ASSERT_EQ(mkdir((path + "/sub").c_str(), 0700), 0) << errno_name(errno);
    write_file(path + "/sub/f");
    write_file(path + "/g");
    ASSERT_EQ(symlink(outside.c_str(), (path + "/link").c_str()), 0) << errno_name(errno);
    ASSERT_EQ(symlink(base_.c_str(), (path + "/dirlink").c_str()), 0) << errno_name(errno);
  }
  EXPECT_FALSE(exists(path)) << path << " is still there";
  EXPECT_TRUE(exists(outside)) << "a symlink's target was removed";
}

// --- copy_file_into -------------------------------------------------------------------

using CopyFileInto = TempDirTest;

TEST_F(CopyFileInto, CopiesTheBytesThenSetsTheMode) {
  std::string from = base_ + "/from";
  {
    Fd f(open(from.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    ASSERT_TRUE(f) << errno_name(errno);
    std::string big(100000, 'q');  // more than copy_file_into's buffer
    big += "end";
    ASSERT_EQ(write(f.get(), big.data(), big.size()), static_cast<ssize_t>(big.size())) << errno_name(errno);
  }
  TempDir t;
  Fd dir(open(t.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  ASSERT_TRUE(dir) << errno_name(errno);
  // Without CAP_FSETID, as a probe's unprivileged side: with it, a write
  // keeps S_ISUID and the order would not show.
  ChildResult r = run_in_child([&] {
    if (has_effective_capability(CAP_FSETID)) drop_capabilities({CAP_FSETID});
    copy_file_into(from, dir.get(), "copy", 04711);
  });
  ASSERT_EQ(r.exit_code(), 0) << r.describe();
  struct stat st {};
  ASSERT_EQ(fstatat(dir.get(), "copy", &st, AT_SYMLINK_NOFOLLOW), 0) << errno_name(errno);
  EXPECT_EQ(st.st_mode & 07777, 04711u) << "set-user-ID must survive: chmod after the write";
  EXPECT_EQ(st.st_size, 100003);
  Fd in(openat(dir.get(), "copy", O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(in) << errno_name(errno);
  char tail[3];
  ASSERT_EQ(pread(in.get(), tail, 3, 100000), 3) << errno_name(errno);
  EXPECT_EQ(std::string(tail, 3), "end");
}

// Never an existing name, never through a link: both make the probe broken
// (EEXIST) and leave what was there alone.
TEST_F(CopyFileInto, RefusesAnExistingNameOrALink) {
  std::string victim = base_ + "/victim";
  write_file(victim);
  ASSERT_EQ(symlink(victim.c_str(), (base_ + "/link").c_str()), 0) << errno_name(errno);
  for (const char* name : {"victim", "link"}) {
    std::string b = base_;
    ChildResult r = run_in_child([&] {
      Fd dir(open(b.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      copy_file_into("/proc/self/exe", dir.get(), name, 0755);
    });
    EXPECT_EQ(r.exit_code(), kExitBroken) << name << ": " << r.describe();
    EXPECT_NE(r.all().find("EEXIST"), std::string::npos) << name << ": " << r.describe();
  }
  struct stat st {};
  ASSERT_EQ(stat(victim.c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 0) << "the victim was written through the link";
  EXPECT_EQ(st.st_mode & 07777, 0600u);
}

}  // namespace
}  // namespace kpc
