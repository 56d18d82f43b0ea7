// The launcher's pure pieces (launcher.h, "pieces, exposed for the unit
// tests"): reading a plan line and the "may be stuck" rule of the hang scan.
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

#include "launcher.h"

namespace kpcl {
namespace {

json plan(const std::string& text) { return json::parse(text); }

TEST(SpecFromJson, ReadsEveryField) {
  RunSpec s = spec_from_json(plan(R"({"run": "r1", "case": "c", "variant": "v", "flavor": "userns",
      "argv": ["/p", "a"], "env": {"K": "V"}, "timeout_ms": 7, "hang_ms": 3, "exclusive": true,
      "caller": {"blocked": [10], "ignored": [1, 13]}, "supervisor_channel": true, "cleanup": ["/c", "x"]})"));
  EXPECT_EQ(s.run, "r1");
  EXPECT_EQ(s.case_id, "c");
  EXPECT_EQ(s.variant, "v");
  EXPECT_EQ(s.flavor, Flavor::userns);
  EXPECT_EQ(s.argv, (std::vector<std::string>{"/p", "a"}));
  EXPECT_EQ(s.env.at("K"), "V");
  EXPECT_EQ(s.timeout_ms, 7);
  EXPECT_EQ(s.hang_ms, 3);
  EXPECT_TRUE(s.exclusive);
  EXPECT_EQ(s.caller_blocked, std::vector<int>{10});
  EXPECT_EQ(s.caller_ignored, (std::vector<int>{1, 13}));
  EXPECT_TRUE(s.supervisor_channel);
  EXPECT_EQ(s.cleanup, (std::vector<std::string>{"/c", "x"}));
}

TEST(SpecFromJson, DefaultsAreAHostRunNamedAfterItsCase) {
  RunSpec s = spec_from_json(plan(R"({"run": "r", "argv": ["/p"]})"));
  EXPECT_EQ(s.case_id, "r");
  EXPECT_EQ(s.flavor, Flavor::host);
  EXPECT_EQ(s.timeout_ms, 10000);
  EXPECT_EQ(s.hang_ms, 1000);
  EXPECT_FALSE(s.exclusive);
  EXPECT_FALSE(s.supervisor_channel);
  EXPECT_TRUE(s.caller_blocked.empty() && s.cleanup.empty());
}

TEST(SpecFromJson, RefusesWhatCannotRun) {
  for (const char* bad :
       {R"([1])", R"({"argv": ["/p"]})", R"({"run": "r"})", R"({"run": "r", "argv": []})",
        R"({"run": "r", "argv": ["p"]})", R"({"run": "r", "argv": ["/p"], "flavor": "vm"})",
        R"({"run": "r", "argv": ["/p"], "timeout_ms": 0})", R"({"run": "r", "argv": ["/p"], "hang_ms": -1})",
        R"({"run": "r", "argv": ["/p"], "caller": {"blocked": [0]}})",
        R"({"run": "r", "argv": ["/p"], "caller": {"ignored": [65]}})",
        R"({"run": "r", "argv": ["/p"], "cleanup": ["rm"]})"})
    EXPECT_ANY_THROW(spec_from_json(plan(bad))) << bad;
}

TEST(MayBeStuck, UninterruptibleOrAsleepWithNothingToWakeIt) {
  TaskInfo t;
  t.state = 'D';
  EXPECT_TRUE(may_be_stuck(t));
  t.state = 'S';
  EXPECT_FALSE(may_be_stuck(t));  // an ordinary sleep: a signal or an event wakes it
  t.exiting = true;
  EXPECT_TRUE(may_be_stuck(t));
  t.exiting = false;
  t.sigkill_pending = true;
  EXPECT_TRUE(may_be_stuck(t));
  for (char running : {'R', 'T', 'Z'}) {
    t.state = running;
    EXPECT_FALSE(may_be_stuck(t)) << running;
  }
}

}  // namespace
}  // namespace kpcl
