#include "routing/hedge.h"

#include <gtest/gtest.h>

#include <chrono>
#include <limits>

namespace hivemesh::routing {
namespace {

using namespace std::chrono_literals;

constexpr double kMs = 1e6;

TEST(HedgeTest, ExpectedTimeIsTheLargerOfPredictionAndObservation) {
  EXPECT_EQ(ExpectedTryNanos(10 * kMs, 0), 10 * kMs);
  EXPECT_EQ(ExpectedTryNanos(10 * kMs, 40 * kMs), 40 * kMs);
  EXPECT_EQ(ExpectedTryNanos(-5, -1), 0);
}

TEST(HedgeTest, AMultipleOfTheExpectedTimeBetweenFloorAndCap) {
  HedgeConfig c;  // x3, 50 ms .. 1 s
  EXPECT_EQ(HedgeAfter(100 * kMs, std::nullopt, c), Nanos(300ms));
  // A fast model's peer is not hedged on jitter: the floor.
  EXPECT_EQ(HedgeAfter(2 * kMs, std::nullopt, c), Nanos(50ms));
  EXPECT_EQ(HedgeAfter(0, std::nullopt, c), Nanos(50ms));
  // A hung or overloaded peer holds a request at most the cap.
  EXPECT_EQ(HedgeAfter(10'000 * kMs, std::nullopt, c), Nanos(1s));
  EXPECT_EQ(HedgeAfter(std::numeric_limits<double>::max(), std::nullopt, c), Nanos(1s));
  EXPECT_EQ(HedgeAfter(std::numeric_limits<double>::infinity(), std::nullopt, c), Nanos(1s));
}

TEST(HedgeTest, NoHedgeThatTheDeadlineWouldOvertake) {
  HedgeConfig c;
  EXPECT_EQ(HedgeAfter(100 * kMs, Nanos(301ms), c), Nanos(300ms));
  EXPECT_EQ(HedgeAfter(100 * kMs, Nanos(300ms), c), std::nullopt);
  EXPECT_EQ(HedgeAfter(100 * kMs, Nanos(0), c), std::nullopt);
  EXPECT_EQ(HedgeAfter(1 * kMs, Nanos(40ms), c), std::nullopt);  // the floor does not fit
}

TEST(HedgeTest, ACapBelowTheFloorIsTheFloor) {
  HedgeConfig c;
  c.floor = 80ms;
  c.cap = 20ms;
  EXPECT_EQ(HedgeAfter(100 * kMs, std::nullopt, c), Nanos(80ms));
}

// Property: over a grid of expectations and deadlines, the hedge time is within [floor, cap],
// grows with the expectation, and always comes before the deadline.
TEST(HedgeTest, PropertiesOverAGrid) {
  HedgeConfig c;
  for (double remaining_ms : {-1.0, 10.0, 60.0, 200.0, 900.0, 5000.0}) {
    std::optional<Nanos> remaining;
    if (remaining_ms >= 0) remaining = Nanos(static_cast<int64_t>(remaining_ms * kMs));
    Nanos last(0);
    for (double expected_ms = 0; expected_ms < 2000; expected_ms += 7.5) {
      const std::optional<Nanos> after = HedgeAfter(expected_ms * kMs, remaining, c);
      if (!after) {
        // Once the deadline overtakes, it does so for every larger expectation.
        for (double more = expected_ms; more < 2000; more += 50) {
          EXPECT_EQ(HedgeAfter(more * kMs, remaining, c), std::nullopt);
        }
        break;
      }
      EXPECT_GE(*after, c.floor);
      EXPECT_LE(*after, c.cap);
      EXPECT_GE(*after, last);
      if (remaining) {
        EXPECT_LT(*after, *remaining);
      }
      last = *after;
    }
  }
}

TEST(HedgeTest, HedgeTimesShareTicks) {
  using std::chrono::milliseconds;
  const SteadyTime base(std::chrono::hours(1));
  EXPECT_EQ(RoundUpToTick(base, milliseconds(5)), base);
  EXPECT_EQ(RoundUpToTick(base + Nanos(1), milliseconds(5)), base + milliseconds(5));
  EXPECT_EQ(RoundUpToTick(base + milliseconds(4), milliseconds(5)), base + milliseconds(5));
  EXPECT_EQ(RoundUpToTick(base + milliseconds(5), milliseconds(5)), base + milliseconds(5));
  EXPECT_EQ(RoundUpToTick(base + milliseconds(3), Nanos(0)), base + milliseconds(3));
  // Never earlier than asked, never a whole tick later; before the epoch too.
  for (int64_t ns : {-7'000'001LL, -5'000'000LL, -1LL, 0LL, 1LL, 4'999'999LL, 123'456'789LL}) {
    const SteadyTime at = SteadyTime(Nanos(ns));
    const SteadyTime r = RoundUpToTick(at, milliseconds(5));
    EXPECT_GE(r, at) << ns;
    EXPECT_LT(r - at, Nanos(milliseconds(5))) << ns;
    EXPECT_EQ(std::chrono::duration_cast<Nanos>(r.time_since_epoch()).count() % 5'000'000, 0) << ns;
  }
}

TEST(HedgeTest, TheBudgetKeepsHedgesToATenthOfTheLoadPlusAFloor) {
  HedgeConfig c;
  RetryBudget budget(c.budget);
  ManualClock clock;
  // 1000 requests in one second: 10% of them plus 5/s x 10 s of floor.
  for (int i = 0; i < 1000; ++i) budget.Deposit(clock.Now());
  int hedges = 0;
  while (budget.TryWithdraw(clock.Now())) ++hedges;
  EXPECT_EQ(hedges, 100 + 50);
}

}  // namespace
}  // namespace hivemesh::routing
