// Signal names and sets: the vocabulary of every signal observation.
#include "kpc/signals.h"

#include <gtest/gtest.h>

namespace kpc {
namespace {

TEST(SignalName, StandardSignalsByName) {
  EXPECT_EQ(signal_name(SIGHUP), "SIGHUP");
  EXPECT_EQ(signal_name(SIGTERM), "SIGTERM");
  EXPECT_EQ(signal_name(SIGCHLD), "SIGCHLD");
  EXPECT_EQ(signal_name(SIGSYS), "SIGSYS");
}

TEST(SignalName, RealtimeSignalsByNumber) {
  // SIGRTMIN is 32 to the kernel, 34 to glibc, 35 to musl: numbers only.
  EXPECT_EQ(signal_name(32), "SIG32");
  EXPECT_EQ(signal_name(34), "SIG34");
  EXPECT_EQ(signal_name(64), "SIG64");
}

TEST(SignalName, OutOfRangeIsEmpty) {
  EXPECT_EQ(signal_name(0), "");
  EXPECT_EQ(signal_name(65), "");
  EXPECT_EQ(signal_name(-1), "");
}

TEST(SignalNumber, AcceptsEveryForm) {
  EXPECT_EQ(signal_number("SIGTERM"), SIGTERM);
  EXPECT_EQ(signal_number("TERM"), SIGTERM);
  EXPECT_EQ(signal_number("SIG34"), 34);
  EXPECT_EQ(signal_number("34"), 34);
  EXPECT_EQ(signal_number("SIGNOPE"), std::nullopt);
  EXPECT_EQ(signal_number("65"), std::nullopt);
  EXPECT_EQ(signal_number(""), std::nullopt);
}

TEST(SigSet, BitNMinusOneIsSignalN) {
  SigSet s = SigSet::of({SIGHUP, SIGTERM});
  EXPECT_EQ(s.bits, (uint64_t{1} << 0) | (uint64_t{1} << 14));
  EXPECT_TRUE(s.has(SIGTERM));
  EXPECT_FALSE(s.has(SIGINT));
  s.remove(SIGTERM);
  EXPECT_EQ(s.bits, 1u);
}

TEST(FormatSigset, NumberOrderJoinedByBar) {
  EXPECT_EQ(format_sigset(SigSet::of({SIGTERM, SIGCHLD, SIGINT})), "SIGINT|SIGTERM|SIGCHLD");
  EXPECT_EQ(format_sigset(SigSet{}), "none");
  EXPECT_EQ(format_sigset(SigSet::of({SIGKILL, 34, 64})), "SIGKILL|SIG34|SIG64");
}

TEST(FormatSigset, MatchesProcStatusMask) {
  // catatonit's TSTP/TTIN/TTOU as the kernel prints them in SigBlk.
  SigSet s{0x0000000000380000};
  EXPECT_EQ(format_sigset(s), "SIGTSTP|SIGTTIN|SIGTTOU");
}

TEST(ParseSigset, RoundTripsAndAcceptsAnyOrder) {
  EXPECT_EQ(parse_sigset("SIGTERM|SIGINT"), SigSet::of({SIGINT, SIGTERM}));
  EXPECT_EQ(parse_sigset("none"), SigSet{});
  EXPECT_EQ(parse_sigset("SIG34|SIGUSR1"), SigSet::of({SIGUSR1, 34}));
  for (uint64_t bits : {uint64_t{0}, uint64_t{0x1}, uint64_t{0xfffffffe7ffbfeff}, ~uint64_t{0}}) {
    SigSet s{bits};
    EXPECT_EQ(parse_sigset(format_sigset(s)), s) << format_sigset(s);
  }
}

TEST(ParseSigset, RejectsUnknownNames) {
  EXPECT_EQ(parse_sigset("SIGTERM|SIGBOGUS"), std::nullopt);
  EXPECT_EQ(parse_sigset("SIGTERM||SIGINT"), std::nullopt);
}

TEST(SigSet, ConvertsToAndFromSigsetT) {
  SigSet s = SigSet::of({SIGUSR1, SIGCHLD, 40});
  sigset_t raw = s.to_sigset();
  EXPECT_TRUE(sigismember(&raw, SIGUSR1));
  EXPECT_TRUE(sigismember(&raw, 40));
  EXPECT_FALSE(sigismember(&raw, SIGUSR2));
  EXPECT_EQ(SigSet::from(raw), s);
}

}  // namespace
}  // namespace kpc
