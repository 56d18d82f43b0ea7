// JSON lines: escaping and record shape, plus the wait-status and errno
// vocabulary observations use.
#include "kpc/json.h"

#include <errno.h>
#include <gtest/gtest.h>
#include <string.h>
#include <sys/wait.h>

#include "kpc/raii.h"
#include "kpc/record.h"

namespace kpc {
namespace {

TEST(JsonQuote, EscapesControlQuoteAndBackslash) {
  EXPECT_EQ(json_quote("plain"), "\"plain\"");
  EXPECT_EQ(json_quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
  EXPECT_EQ(json_quote("line\nnext\t\x01"), "\"line\\nnext\\t\\u0001\"");
}

TEST(JsonObject, OneLineInInsertionOrder) {
  JsonObject o;
  o.str("obs", "child.blocked").str("type", "sigset").str("value", "SIGUSR1|SIGTERM");
  EXPECT_EQ(o.line(), "{\"obs\":\"child.blocked\",\"type\":\"sigset\",\"value\":\"SIGUSR1|SIGTERM\"}\n");
  JsonObject n;
  n.num("n", -5).boolean("b", true).raw("r", "[1,2]");
  EXPECT_EQ(n.text(), "{\"n\":-5,\"b\":true,\"r\":[1,2]}");
}

TEST(ErrnoName, SymbolicNames) {
  EXPECT_EQ(errno_name(ENOMEM), "ENOMEM");
  EXPECT_EQ(errno_name(EPERM), "EPERM");
  EXPECT_EQ(errno_name(0), "0");
  EXPECT_EQ(errno_name(4000), "E4000");
}

TEST(ErrnoName, OwnTableNamesWhatGlibcNames) {
  // Debian 11's glibc (2.31) has no strerrorname_np: errno_name uses kpc's
  // table there, so it must give glibc's names for every errno.
  EXPECT_STREQ(errno_symbol(EWOULDBLOCK), "EAGAIN");
  EXPECT_STREQ(errno_symbol(ECONNABORTED), "ECONNABORTED");
  EXPECT_EQ(errno_symbol(0), nullptr);
  EXPECT_EQ(errno_symbol(4000), nullptr);
  int named = 0;
  for (int e = 1; e < 200; ++e) {
    if (errno_symbol(e)) ++named;
#if __GLIBC_PREREQ(2, 32)
    // The same names; past 133 a newer glibc knows newer errnos (2.43 of
    // Debian sid: 134 EFTYPE) that glibc 2.31, the table's user, has not.
    const char* glibc = strerrorname_np(e);
    if (e <= 133 || errno_symbol(e)) EXPECT_STREQ(errno_symbol(e), glibc) << "errno " << e;
#endif
  }
  EXPECT_EQ(named, 131);  // 1..133 on x86_64 (EHWPOISON the last), 41 and 58 unused
}

TEST(DescribeWaitStatus, ExitAndSignal) {
  EXPECT_EQ(describe_wait_status(0), "exited 0");
  EXPECT_EQ(describe_wait_status(3 << 8), "exited 3");
  EXPECT_EQ(describe_wait_status(SIGUSR1), "killed SIGUSR1");
  EXPECT_EQ(describe_wait_status(SIGSEGV | 0x80), "killed SIGSEGV (core)");
}

}  // namespace
}  // namespace kpc
