// kpc/state.h: the state a probe records about itself. Each building
// block is compared with what the test set through the syscalls directly
// (sigaction, sigprocmask, open/close, raise); record_state runs in a child
// (in_child.h) because it records.
#include "kpc/state.h"

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <set>
#include <string>
#include <vector>

#include "in_child.h"
#include "kpc/raii.h"
#include "kpc/record.h"

namespace kpc {
namespace {

using tests::ChildResult;
constexpr auto obs = tests::obs_line;
using tests::run_in_child;

void handler(int) {}
void siginfo_handler(int, siginfo_t*, void*) {}

// Saves the dispositions and the mask a test changes and restores them,
// after taking whatever the test left pending (so that unblocking delivers
// nothing).
class SignalState : public ::testing::Test {
 protected:
  static constexpr int kSigs[] = {SIGUSR1, SIGUSR2, SIGCHLD, SIGWINCH};
  void SetUp() override {
    for (size_t i = 0; i < std::size(kSigs); ++i) ASSERT_EQ(sigaction(kSigs[i], nullptr, &saved_[i]), 0);
    ASSERT_EQ(pthread_sigmask(SIG_SETMASK, nullptr, &saved_mask_), 0);
  }
  void TearDown() override {
    sigset_t all;
    sigfillset(&all);
    timespec zero{};
    while (sigtimedwait(&all, nullptr, &zero) > 0) {}
    pthread_sigmask(SIG_SETMASK, &saved_mask_, nullptr);
    for (size_t i = 0; i < std::size(kSigs); ++i) sigaction(kSigs[i], &saved_[i], nullptr);
  }
  static void set(int sig, void (*h)(int), int flags) {
    struct sigaction a {};
    a.sa_handler = h;
    a.sa_flags = flags;
    sigemptyset(&a.sa_mask);
    ASSERT_EQ(sigaction(sig, &a, nullptr), 0) << errno_name(errno);
  }
  static void block(std::initializer_list<int> sigs) {
    sigset_t s;
    sigemptyset(&s);
    for (int sig : sigs) sigaddset(&s, sig);
    ASSERT_EQ(pthread_sigmask(SIG_BLOCK, &s, nullptr), 0);
  }
  static bool pending(int sig) {
    sigset_t s;
    EXPECT_EQ(sigpending(&s), 0) << errno_name(errno);
    return sigismember(&s, sig) == 1;
  }
  struct sigaction saved_[std::size(kSigs)]{};
  sigset_t saved_mask_{};
};

// --- disposition_of, sa_flags_of --------------------------------------------------

using DispositionOf = SignalState;

TEST_F(DispositionOf, DefaultIgnoreAndHandler) {
  set(SIGUSR1, SIG_DFL, 0);
  EXPECT_EQ(disposition_of(SIGUSR1), "default");
  set(SIGUSR1, SIG_IGN, 0);
  EXPECT_EQ(disposition_of(SIGUSR1), "ignore");
  set(SIGUSR1, handler, 0);
  EXPECT_EQ(disposition_of(SIGUSR1), "handler");
}

TEST_F(DispositionOf, SiginfoHandlerIsAHandler) {
  struct sigaction a {};
  a.sa_sigaction = siginfo_handler;
  a.sa_flags = SA_SIGINFO;
  sigemptyset(&a.sa_mask);
  ASSERT_EQ(sigaction(SIGUSR2, &a, nullptr), 0) << errno_name(errno);
  EXPECT_EQ(disposition_of(SIGUSR2), "handler");
}

TEST(DispositionOfInvalid, NumbersSigactionRefuses) {
  EXPECT_EQ(disposition_of(0), "invalid");
  EXPECT_EQ(disposition_of(65), "invalid");
  EXPECT_EQ(sa_flags_of(0), "invalid");
  EXPECT_EQ(disposition_of(SIGKILL), "default");
}

using SaFlagsOf = SignalState;

TEST_F(SaFlagsOf, NoneForAPlainHandler) {
  set(SIGUSR1, handler, 0);  // glibc adds SA_RESTORER: not one of the names
  EXPECT_EQ(sa_flags_of(SIGUSR1), "none");
}

TEST_F(SaFlagsOf, NamesInTheirFixedOrder) {
  struct sigaction a {};
  a.sa_sigaction = siginfo_handler;
  a.sa_flags = SA_RESETHAND | SA_NODEFER | SA_RESTART | SA_ONSTACK | SA_SIGINFO;
  sigemptyset(&a.sa_mask);
  ASSERT_EQ(sigaction(SIGUSR2, &a, nullptr), 0) << errno_name(errno);
  EXPECT_EQ(sa_flags_of(SIGUSR2), "SA_SIGINFO|SA_ONSTACK|SA_RESTART|SA_NODEFER|SA_RESETHAND");
}

TEST_F(SaFlagsOf, ChildFlags) {
  set(SIGCHLD, SIG_DFL, SA_NOCLDSTOP | SA_NOCLDWAIT);
  EXPECT_EQ(sa_flags_of(SIGCHLD), "SA_NOCLDSTOP|SA_NOCLDWAIT");
  EXPECT_EQ(disposition_of(SIGCHLD), "default");
}

// --- open_fds_above_stdio ----------------------------------------------------------

std::set<int> fd_list(const std::string& text) {
  std::set<int> out;
  if (text == "none") return out;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t comma = text.find(',', pos);
    out.insert(std::stoi(text.substr(pos, comma - pos)));
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return out;
}

// Closes every descriptor above 2 but `keep` (whatever the test runner
// left open, at any number).
void close_all_but(int keep) {
  std::vector<int> fds;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (dirent* e = readdir(d))
      if (e->d_name[0] != '.') fds.push_back(atoi(e->d_name));
    closedir(d);
  }
  for (int fd : fds)
    if (fd > 2 && fd != keep) close(fd);
}

TEST(OpenFdsAboveStdio, ListsAnOpenFdAndNotAClosedOne) {
  int fd = fcntl(0, F_DUPFD_CLOEXEC, 300);
  ASSERT_GE(fd, 300) << errno_name(errno);
  EXPECT_EQ(fd_list(open_fds_above_stdio()).count(fd), 1u) << open_fds_above_stdio();
  ASSERT_EQ(close(fd), 0);
  EXPECT_EQ(fd_list(open_fds_above_stdio()).count(fd), 0u) << open_fds_above_stdio();
}

TEST(OpenFdsAboveStdio, NeverListsStdioOrTheDirectoryItReads) {
  std::set<int> fds = fd_list(open_fds_above_stdio());
  EXPECT_EQ(fds.count(0) + fds.count(1) + fds.count(2), 0u);
  // The directory stream's descriptor is the lowest free one: the same
  // number the next open() gets.
  int next = open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(next, 0);
  close(next);
  EXPECT_EQ(fds.count(next), 0u) << "fd " << next << " (the /proc/self/fd stream) in " << open_fds_above_stdio();
}

// In a child holding nothing but stdio and the observation channel: the
// channel is left out, the list is in numeric order (9 before 10), "none"
// when empty.
TEST(OpenFdsAboveStdio, NumericOrderWithoutTheObservationFd) {
  ChildResult r = run_in_child([] {
    int chan = atoi(getenv("KPC_OBS_FD"));
    if (dup2(chan, 500) != 500) _exit(3);
    setenv("KPC_OBS_FD", "500", 1);
    close_all_but(500);
    if (dup2(0, 10) != 10 || dup2(0, 100) != 100 || dup2(0, 9) != 9) _exit(4);
    std::string some = open_fds_above_stdio();
    close(9);
    close(10);
    close(100);
    std::string none = open_fds_above_stdio();
    observe("some", some);
    observe("none", none);
  });
  EXPECT_EQ(r.exit_code(), 0) << r.describe();
  EXPECT_EQ(r.all(), obs("some", "str", "\"9,10,100\"") + obs("none", "str", "\"none\""));
}

// --- consume_pending ---------------------------------------------------------------

using ConsumePending = SignalState;

TEST_F(ConsumePending, ClearsTheGivenBlockedSignalAndNoOther) {
  block({SIGUSR1, SIGUSR2});
  ASSERT_EQ(raise(SIGUSR1), 0);
  ASSERT_EQ(raise(SIGUSR2), 0);
  ASSERT_TRUE(pending(SIGUSR1));
  consume_pending(SigSet::of({SIGUSR1}));
  EXPECT_FALSE(pending(SIGUSR1)) << "still pending after consume_pending";
  EXPECT_TRUE(pending(SIGUSR2)) << "a signal not asked for was consumed";
}

TEST_F(ConsumePending, ClearsEveryQueuedInstanceOfARealtimeSignal) {
  const int rt = SIGRTMIN + 2;
  block({rt});
  for (int i = 0; i < 3; ++i) ASSERT_EQ(raise(rt), 0);
  consume_pending(SigSet::of({rt}));
  EXPECT_FALSE(pending(rt)) << "an instance of the queued signal is left";
}

TEST_F(ConsumePending, ReturnsAtOnceWhenNothingIsPending) {
  block({SIGUSR1});
  long long t0 = tests::now_ms();
  consume_pending(SigSet::of({SIGUSR1}));
  EXPECT_LT(tests::now_ms() - t0, 100);
}

// --- self_status -------------------------------------------------------------------

using SelfStatus = SignalState;

TEST_F(SelfStatus, TheKernelsViewOfThisThread) {
  set(SIGUSR1, SIG_IGN, 0);
  set(SIGUSR2, handler, 0);
  block({SIGWINCH});
  ASSERT_EQ(raise(SIGWINCH), 0);
  ProcStatus st = self_status();
  EXPECT_EQ(st.tgid, getpid());
  EXPECT_EQ(st.pid, gettid());
  EXPECT_TRUE(st.sig_ign.has(SIGUSR1));
  EXPECT_FALSE(st.sig_cgt.has(SIGUSR1));
  EXPECT_TRUE(st.sig_cgt.has(SIGUSR2));
  EXPECT_TRUE(st.sig_blk.has(SIGWINCH));
  EXPECT_TRUE(st.sig_pnd.has(SIGWINCH));
  EXPECT_GE(st.threads, 1);
}

// --- record_state ------------------------------------------------------------------

TEST(RecordState, RecordsEachPropertyUnderThePrefix) {
  ChildResult r = run_in_child([] {
    for (int sig = 1; sig <= 64; ++sig)
      if (sig != SIGKILL && sig != SIGSTOP) signal(sig, SIG_DFL);  // 32, 33: glibc refuses; fine
    struct sigaction a {};
    sigemptyset(&a.sa_mask);
    a.sa_handler = SIG_IGN;  // flags 0 (glibc's signal() would add SA_RESTART)
    sigaction(SIGHUP, &a, nullptr);
    a.sa_handler = handler;
    a.sa_flags = SA_RESTART;
    sigaction(SIGUSR2, &a, nullptr);
    sigset_t m;
    sigemptyset(&m);
    sigaddset(&m, SIGUSR1);
    pthread_sigmask(SIG_SETMASK, &m, nullptr);
    raise(SIGUSR1);
    stack_t off{};
    off.ss_flags = SS_DISABLE;
    sigaltstack(&off, nullptr);
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    setpgid(0, 0);
    itimerval real{};
    real.it_value.tv_sec = 100;
    setitimer(ITIMER_REAL, &real, nullptr);
    record_state("s",
                 "blocked,pending,ignored,disp:SIGUSR2,flags:SIGUSR2,disp:HUP,disp:15,flags:SIGHUP,altstack,"
                 "subreaper,pdeathsig,no_new_privs,pgrp_leader,session_leader,itimer_real,itimer_virtual,"
                 "exit_signal,tid_is_pid,threads");
  });
  EXPECT_EQ(r.exit_code(), 0) << r.describe();
  EXPECT_EQ(r.all(), obs("s.blocked", "sigset", "\"SIGUSR1\"") + obs("s.pending", "sigset", "\"SIGUSR1\"") +
                         obs("s.ignored", "sigset", "\"SIGHUP\"") + obs("s.disp.sigusr2", "str", "\"handler\"") +
                         obs("s.flags.sigusr2", "str", "\"SA_RESTART\"") + obs("s.disp.sighup", "str", "\"ignore\"") +
                         obs("s.disp.sigterm", "str", "\"default\"") + obs("s.flags.sighup", "str", "\"none\"") +
                         obs("s.altstack", "str", "\"disabled\"") + obs("s.subreaper", "bool", "true") +
                         obs("s.pdeathsig", "sigset", "\"SIGKILL\"") + obs("s.no_new_privs", "bool", "true") +
                         obs("s.pgrp_leader", "bool", "true") + obs("s.session_leader", "bool", "false") +
                         obs("s.itimer_real", "bool", "true") + obs("s.itimer_virtual", "bool", "false") +
                         obs("s.exit_signal", "sigset", "\"SIGCHLD\"") + obs("s.tid_is_pid", "bool", "true") +
                         obs("s.threads", "int", "1"));
}

TEST(RecordState, FdsLeavesOutTheObservationChannel) {
  ChildResult r = run_in_child([] {
    close_all_but(atoi(getenv("KPC_OBS_FD")));
    record_state("p", "fds");
  });
  EXPECT_EQ(r.all(), obs("p.fds", "str", "\"none\"")) << r.describe();
}

TEST(RecordState, EmptyItemsAreSkipped) {
  ChildResult r = run_in_child([] { record_state("e", ",tid_is_pid,,"); });
  EXPECT_EQ(r.all(), obs("e.tid_is_pid", "bool", "true")) << r.describe();
}

TEST(RecordState, UnknownPropertyIsBroken) {
  ChildResult r = run_in_child([] { record_state("x", "blocked,nope"); });
  EXPECT_EQ(r.exit_code(), kExitBroken) << r.describe();
  ASSERT_EQ(r.writes.size(), 2u) << r.describe();
  EXPECT_EQ(r.writes[1], "{\"broken\":\"record_state: unknown property 'nope'\"}\n");
}

TEST(RecordState, UnknownSignalIsBroken) {
  ChildResult r = run_in_child([] { record_state("x", "disp:SIGNOPE"); });
  EXPECT_EQ(r.exit_code(), kExitBroken) << r.describe();
  EXPECT_EQ(r.all(), "{\"broken\":\"record_state: unknown signal in 'disp:SIGNOPE'\"}\n");
}

}  // namespace
}  // namespace kpc
