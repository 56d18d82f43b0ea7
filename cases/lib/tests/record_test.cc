// kpc/record.h: the records a probe sends. With $KPC_OBS_FD they are JSON
// lines on that descriptor, one write() each (the launcher's channel);
// without it, readable lines on stderr. Every test runs in a child of its
// own (in_child.h): where records go is decided once per process, and
// skip()/broken()/finish() end the process.
#include "kpc/record.h"

#include <errno.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <limits.h>
#include <time.h>
#include <unistd.h>

#include <string>

#include "in_child.h"
#include "kpc/signals.h"

namespace kpc {
namespace {

using tests::ChildResult;
constexpr auto obs = tests::obs_line;
using tests::Records;
using tests::run_in_child;

// --- to the launcher: one JSON line per write ----------------------------------

TEST(ObserveToLauncher, Bool) {
  ChildResult r = run_in_child([] {
    observe("a.yes", true);
    observe("a.no", false);
  });
  ASSERT_EQ(r.writes.size(), 2u) << r.describe();
  EXPECT_EQ(r.writes[0], obs("a.yes", "bool", "true"));
  EXPECT_EQ(r.writes[1], obs("a.no", "bool", "false"));
}

TEST(ObserveToLauncher, IntAndInt64) {
  ChildResult r = run_in_child([] {
    observe("n.int", -7);
    observe("n.big", int64_t{1} << 40);
  });
  ASSERT_EQ(r.writes.size(), 2u) << r.describe();
  EXPECT_EQ(r.writes[0], obs("n.int", "int", "-7"));
  EXPECT_EQ(r.writes[1], obs("n.big", "int", "1099511627776"));
}

TEST(ObserveToLauncher, StringsOfEveryFormAreEscaped) {
  ChildResult r = run_in_child([] {
    observe("s.view", std::string_view("a\"b"));
    observe("s.cstr", "line\nnext");
    observe("s.std", std::string("back\\slash"));
  });
  ASSERT_EQ(r.writes.size(), 3u) << r.describe();
  EXPECT_EQ(r.writes[0], obs("s.view", "str", "\"a\\\"b\""));
  EXPECT_EQ(r.writes[1], obs("s.cstr", "str", "\"line\\nnext\""));
  EXPECT_EQ(r.writes[2], obs("s.std", "str", "\"back\\\\slash\""));
}

TEST(ObserveToLauncher, LongStringCutAt1024) {
  ChildResult r = run_in_child([] { observe("s.long", std::string(2000, 'a')); });
  ASSERT_EQ(r.writes.size(), 1u) << r.describe();
  EXPECT_EQ(r.writes[0], obs("s.long", "str", "\"" + std::string(1024, 'a') + "...(truncated)\""));
}

TEST(ObserveToLauncher, ErrnoByName) {
  ChildResult r = run_in_child([] {
    observe("e.enoent", Errno{ENOENT});
    observe("e.none", Errno{0});
    observe("e.unknown", Errno{4000});
  });
  ASSERT_EQ(r.writes.size(), 3u) << r.describe();
  EXPECT_EQ(r.writes[0], obs("e.enoent", "errno", "\"ENOENT\""));
  EXPECT_EQ(r.writes[1], obs("e.none", "errno", "\"0\""));
  EXPECT_EQ(r.writes[2], obs("e.unknown", "errno", "\"E4000\""));
}

TEST(ObserveToLauncher, SigSetInNumberOrder) {
  ChildResult r = run_in_child([] {
    observe("g.set", SigSet::of({SIGTERM, SIGHUP, 34}));
    observe("g.empty", SigSet{});
  });
  ASSERT_EQ(r.writes.size(), 2u) << r.describe();
  EXPECT_EQ(r.writes[0], obs("g.set", "sigset", "\"SIGHUP|SIGTERM|SIG34\""));
  EXPECT_EQ(r.writes[1], obs("g.empty", "sigset", "\"none\""));
}

TEST(ObserveToLauncher, InvalidKeyIsBroken) {
  ChildResult r = run_in_child([] { observe("Bad Key", true); });
  EXPECT_EQ(r.exit_code(), kExitBroken) << r.describe();
  EXPECT_EQ(r.all(), "{\"broken\":\"invalid observation key 'Bad Key' (use [a-z0-9_.-])\"}\n");
}

TEST(ObserveToLauncher, EmptyAndOverlongKeysAreBroken) {
  for (std::string key : {std::string(), std::string(129, 'k')}) {
    ChildResult r = run_in_child([&] { observe(key, 1); });
    EXPECT_EQ(r.exit_code(), kExitBroken) << "key of " << key.size() << " bytes: " << r.describe();
  }
  ChildResult ok = run_in_child([] { observe(std::string(128, 'k'), 1); });
  EXPECT_EQ(ok.exit_code(), 0) << "a key of 128 bytes is allowed: " << ok.describe();
}

TEST(ObserveResult, OkOrTheErrnoName) {
  ChildResult r = run_in_child([] {
    observe_result("r.zero", 0, 0);
    observe_result("r.pid", 1234, EINVAL);  // errno is stale after a success
    observe_result("r.fail", -1, EACCES);
  });
  ASSERT_EQ(r.writes.size(), 3u) << r.describe();
  EXPECT_EQ(r.writes[0], obs("r.zero", "str", "\"ok\""));
  EXPECT_EQ(r.writes[1], obs("r.pid", "str", "\"ok\""));
  EXPECT_EQ(r.writes[2], obs("r.fail", "str", "\"EACCES\""));
}

TEST(ObserveResult, FailureWithoutErrnoIsBroken) {
  ChildResult r = run_in_child([] { observe_result("r.bad", -1, 0); });
  EXPECT_EQ(r.exit_code(), kExitBroken) << r.describe();
  ASSERT_EQ(r.writes.size(), 1u) << r.describe();
  EXPECT_EQ(r.writes[0].rfind("{\"broken\":\"observe_result(\\\"r.bad\\\"): the call failed but errno is 0", 0), 0u)
      << r.describe();
}

TEST(ObserveCall, ReadsErrnoAfterTheCall) {
  ChildResult r = run_in_child([] {
    errno = 0;
    KPC_OBSERVE_CALL("c.badf", close(-1));
    KPC_OBSERVE_CALL("c.ok", getpid());
  });
  ASSERT_EQ(r.writes.size(), 2u) << r.describe();
  EXPECT_EQ(r.writes[0], obs("c.badf", "str", "\"EBADF\""));
  EXPECT_EQ(r.writes[1], obs("c.ok", "str", "\"ok\""));
}

TEST(NoteToLauncher, StringAndInt) {
  ChildResult r = run_in_child([] {
    note("n.text", "some \"words\"");
    note("n.num", int64_t{-42});
  });
  ASSERT_EQ(r.writes.size(), 2u) << r.describe();
  EXPECT_EQ(r.writes[0], "{\"note\":\"n.text\",\"value\":\"some \\\"words\\\"\"}\n");
  EXPECT_EQ(r.writes[1], "{\"note\":\"n.num\",\"value\":-42}\n");
}

TEST(NoteToLauncher, LongTextCutAt3000) {
  ChildResult r = run_in_child([] { note("n.long", std::string(5000, 'b')); });
  ASSERT_EQ(r.writes.size(), 1u) << r.describe();
  EXPECT_EQ(r.writes[0], "{\"note\":\"n.long\",\"value\":\"" + std::string(3000, 'b') + "...(truncated)\"}\n");
}

TEST(NoteToLauncher, InvalidKeyIsBroken) {
  ChildResult r = run_in_child([] { note("n/slash", "x"); });
  EXPECT_EQ(r.exit_code(), kExitBroken) << r.describe();
}

// Escaping can make a record longer than its text; a record past PIPE_BUF
// would not be one atomic write, so it is replaced by a broken record.
TEST(RecordToLauncher, NoWriteIsLongerThanPipeBuf) {
  ChildResult r = run_in_child([] { note("n.ctrl", std::string(3000, '\x01')); });  // 6 bytes each escaped
  ASSERT_EQ(r.writes.size(), 1u) << r.describe();
  EXPECT_LE(r.writes[0].size(), static_cast<size_t>(PIPE_BUF));
  EXPECT_EQ(r.writes[0].rfind("{\"broken\":\"record longer than PIPE_BUF: {\\\"note\\\":\\\"n.ctrl\\\"", 0), 0u)
      << r.writes[0].substr(0, 200);
  EXPECT_EQ(r.writes[0].back(), '\n');
}

TEST(MarkToLauncher, NameAndTheMonotonicClockInNanoseconds) {
  timespec before{};
  clock_gettime(CLOCK_MONOTONIC, &before);
  ChildResult r = run_in_child([] { mark("armed"); });
  timespec after{};
  clock_gettime(CLOCK_MONOTONIC, &after);
  ASSERT_EQ(r.writes.size(), 1u) << r.describe();
  const std::string head = "{\"mark\":\"armed\",\"mono_ns\":";
  ASSERT_EQ(r.writes[0].rfind(head, 0), 0u) << r.writes[0];
  long long ns = std::stoll(r.writes[0].substr(head.size()));
  EXPECT_GE(ns, before.tv_sec * 1000000000LL + before.tv_nsec);
  EXPECT_LE(ns, after.tv_sec * 1000000000LL + after.tv_nsec);
  EXPECT_EQ(r.writes[0].substr(r.writes[0].size() - 2), "}\n");
}

TEST(AnnounceFuseConnection, WithAndWithoutRequestTimeout) {
  ChildResult r = run_in_child([] {
    announce_fuse_connection(41);
    announce_fuse_connection(42, 30);
  });
  ASSERT_EQ(r.writes.size(), 2u) << r.describe();
  EXPECT_EQ(r.writes[0], "{\"fuse_conn\":41}\n");
  EXPECT_EQ(r.writes[1], "{\"fuse_conn\":42,\"request_timeout_s\":30}\n");
}

TEST(EndRecords, SkipExits77) {
  ChildResult r = run_in_child([] { skip("no such flag"); });
  EXPECT_EQ(r.exit_code(), kExitSkip) << r.describe();
  EXPECT_EQ(r.all(), "{\"skip\":\"no such flag\"}\n");
}

TEST(EndRecords, BrokenExits99) {
  ChildResult r = run_in_child([] { broken("setup failed"); });
  EXPECT_EQ(r.exit_code(), kExitBroken) << r.describe();
  EXPECT_EQ(r.all(), "{\"broken\":\"setup failed\"}\n");
}

TEST(EndRecords, FinishRecordsEndAndExitsZero) {
  ChildResult r = run_in_child([] {
    observe("x", 1);
    finish();
  });
  EXPECT_EQ(r.exit_code(), 0) << r.describe();
  ASSERT_EQ(r.writes.size(), 2u) << r.describe();
  EXPECT_EQ(r.writes[1], "{\"end\":\"ok\"}\n");
}

TEST(RecordingToLauncher, TrueWithTheChannelFalseWithout) {
  ChildResult with = run_in_child([] { _exit(recording_to_launcher() ? 0 : 1); });
  EXPECT_EQ(with.exit_code(), 0) << "$KPC_OBS_FD set: " << with.describe();
  ChildResult without = run_in_child([] { _exit(recording_to_launcher() ? 0 : 1); }, Records::kToStderr);
  EXPECT_EQ(without.exit_code(), 1) << "$KPC_OBS_FD unset: " << without.describe();
}

TEST(RecordingToLauncher, MalformedObsFdMeansStderr) {
  ChildResult r = run_in_child(
      [] {
        setenv("KPC_OBS_FD", "3x", 1);
        observe("k", true);
        _exit(recording_to_launcher() ? 1 : 0);
      },
      Records::kToStderr);
  EXPECT_EQ(r.exit_code(), 0) << r.describe();
  EXPECT_EQ(r.all(), "observe k = true\n");
}

// Records go to the channel only: nothing on stdout or stderr.
TEST(RecordingToLauncher, NothingOnStdoutOrStderr) {
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  ChildResult r = run_in_child([&] {
    dup2(p[1], 1);
    dup2(p[1], 2);
    observe("k", 1);
    note("n", "v");
    mark("m");
  });
  close(p[1]);
  char buf[256];
  ssize_t n = read(p[0], buf, sizeof buf);
  close(p[0]);
  EXPECT_EQ(n, 0) << "stdout/stderr got: " << std::string(buf, n > 0 ? n : 0);
  EXPECT_EQ(r.writes.size(), 3u) << r.describe();
}

// --- without a launcher: readable lines on stderr ----------------------------------

TEST(RecordToStderr, ReadableLines) {
  ChildResult r = run_in_child(
      [] {
        observe("b", true);
        observe("i", 12);
        observe("s", "text");
        observe("e", Errno{EPERM});
        observe("g", SigSet::of({SIGINT}));
        observe_result("r", -1, ESRCH);
        note("n", "info");
        note("m", int64_t{5});
        announce_fuse_connection(9, 2);
      },
      Records::kToStderr);
  EXPECT_EQ(r.exit_code(), 0) << r.describe();
  EXPECT_EQ(r.all(),
            "observe b = true\n"
            "observe i = 12\n"
            "observe s = text\n"
            "observe e = EPERM\n"
            "observe g = SIGINT\n"
            "observe r = ESRCH\n"
            "note n = info\n"
            "note m = 5\n"
            "fuse connection 9 (request timeout 2 s)\n");
  EXPECT_EQ(r.writes.size(), 9u) << "one write per record";
}

TEST(RecordToStderr, MarkAndEnds) {
  ChildResult m = run_in_child([] { mark("t0"); }, Records::kToStderr);
  EXPECT_EQ(m.all().rfind("mark t0 at ", 0), 0u) << m.all();
  EXPECT_EQ(m.all().substr(m.all().size() - 4), " ns\n") << m.all();
  ChildResult s = run_in_child([] { skip("why"); }, Records::kToStderr);
  EXPECT_EQ(s.all(), "skip: why\n");
  EXPECT_EQ(s.exit_code(), kExitSkip);
  ChildResult b = run_in_child([] { broken("what"); }, Records::kToStderr);
  EXPECT_EQ(b.all(), "broken: what\n");
  EXPECT_EQ(b.exit_code(), kExitBroken);
  ChildResult f = run_in_child([] { finish(); }, Records::kToStderr);
  EXPECT_EQ(f.all(), "end\n");
  EXPECT_EQ(f.exit_code(), 0);
}

// A probe and its children share the channel: every record of every
// process arrives whole, as one write (records of 900 bytes, four writers).
TEST(RecordToLauncher, ChildrenRecordOnTheSameChannel) {
  ChildResult r = run_in_child([] {
    pid_t kids[4];
    for (int k = 0; k < 4; ++k) {
      kids[k] = fork();
      if (kids[k] == 0) {
        for (int i = 0; i < 50; ++i) observe("kid" + std::to_string(k), std::string(900, static_cast<char>('a' + k)));
        _exit(0);
      }
    }
    for (pid_t kid : kids) waitpid(kid, nullptr, 0);
  });
  ASSERT_EQ(r.writes.size(), 200u) << r.describe().substr(0, 500);
  for (const auto& w : r.writes) {
    char c = w[std::string("{\"obs\":\"kid").size()];
    int k = c - '0';
    ASSERT_TRUE(k >= 0 && k < 4) << w.substr(0, 80);
    EXPECT_EQ(w, obs("kid" + std::to_string(k), "str", "\"" + std::string(900, static_cast<char>('a' + k)) + "\""));
  }
}

}  // namespace
}  // namespace kpc
