#include "base/rejections.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

namespace hivemesh {
namespace {

TEST(RejectionsTest, EveryReasonHasItsOwnSnakeCaseName) {
  std::set<std::string> names;
  for (size_t i = 0; i < static_cast<size_t>(Rejection::kCount); ++i) {
    const std::string name(RejectionName(static_cast<Rejection>(i)));
    EXPECT_NE(name, "unknown") << i;
    EXPECT_EQ(name.find_first_not_of("abcdefghijklmnopqrstuvwxyz_"), std::string::npos) << name;
    EXPECT_TRUE(names.insert(name).second) << name;
  }
}

TEST(RejectionsTest, CountsEveryRejectionByReason) {
  ManualClock clock;
  Rejections r(clock);
  for (int i = 0; i < 1000; ++i) r.Note(Rejection::kBodyTooLarge, "10.0.0.9:4000", "too big");
  r.Note(Rejection::kMemoryBudget, "", "");
  EXPECT_EQ(r.count(Rejection::kBodyTooLarge), 1000u);
  EXPECT_EQ(r.count(Rejection::kMemoryBudget), 1u);
  EXPECT_EQ(r.count(Rejection::kAdminDenied), 0u);
}

TEST(RateLimitedLogTest, WritesOneLinePerIntervalPerKeyAndCountsTheRest) {
  ManualClock clock;
  RateLimitedLog log(clock, std::chrono::seconds(1));
  int built = 0;
  auto line = [&] {
    ++built;
    return std::string("flood");
  };
  EXPECT_TRUE(log.Warn(3, line));
  for (int i = 0; i < 10000; ++i) EXPECT_FALSE(log.Warn(3, line));
  // Another key has its own interval.
  EXPECT_TRUE(log.Warn(4, line));
  clock.Advance(std::chrono::milliseconds(999));
  EXPECT_FALSE(log.Warn(3, line));
  clock.Advance(std::chrono::milliseconds(1));
  EXPECT_TRUE(log.Warn(3, line));
  // The line is built only when it is written.
  EXPECT_EQ(built, 3);
}

}  // namespace
}  // namespace hivemesh
