// Suspicion (Lifeguard) on manual time: the timeout curve from max to min, which confirmations
// count, and that counting (and so re-gossiping) stops after k.
#include "membership/suspicion.h"

#include <gtest/gtest.h>

#include <string>

namespace hivemesh::membership {
namespace {

using std::chrono::milliseconds;

SteadyTime T0() { return SteadyTime(std::chrono::hours(1)); }

TEST(SuspicionTimeoutTest, RunsFromMaxAtNoConfirmationToMinAtK) {
  const Millis min(4000), max(24000);
  EXPECT_EQ(SuspicionTimeout(min, max, 0, 2), max);
  EXPECT_EQ(SuspicionTimeout(min, max, 1, 2), Millis(11381));  // 24 - ln 2 / ln 3 x 20 s
  EXPECT_EQ(SuspicionTimeout(min, max, 2, 2), min);
  EXPECT_EQ(SuspicionTimeout(min, max, 5, 2), min) << "never below min";
  EXPECT_EQ(SuspicionTimeout(min, max, 0, 0), min) << "k = 0: nothing to wait for";
  // Strictly decreasing from max to min for every k, and log-scaled: the first confirmation
  // takes off more than any later one.
  for (int k = 1; k <= 8; ++k) {
    Millis prev = SuspicionTimeout(min, max, 0, k);
    Millis prev_step = Millis::max();
    EXPECT_EQ(prev, max) << "k=" << k;
    for (int c = 1; c <= k; ++c) {
      const Millis t = SuspicionTimeout(min, max, c, k);
      EXPECT_LT(t, prev) << "k=" << k << " c=" << c;
      EXPECT_LE(prev - t, prev_step) << "k=" << k << " c=" << c;
      prev_step = prev - t;
      prev = t;
    }
    EXPECT_EQ(prev, min) << "k=" << k;
  }
}

TEST(SuspicionTest, StartsAtMaxAndReachesMinAfterKConfirmations) {
  Suspicion s("accuser", 3, Millis(4000), Millis(24000), T0());
  EXPECT_EQ(s.k(), 3);
  EXPECT_EQ(s.confirmations(), 0);
  EXPECT_EQ(s.Timeout(), Millis(24000));
  EXPECT_EQ(s.Deadline(), T0() + Millis(24000));
  Millis prev = s.Timeout();
  for (const char* from : {"b", "c", "d"}) {
    EXPECT_TRUE(s.Confirm(from)) << from;
    EXPECT_LT(s.Timeout(), prev) << from;
    prev = s.Timeout();
  }
  EXPECT_EQ(s.confirmations(), 3);
  EXPECT_EQ(s.Timeout(), Millis(4000));
  EXPECT_EQ(s.Deadline(), T0() + Millis(4000));
}

TEST(SuspicionTest, RemainingAndExpiryFollowTheInjectedTime) {
  Suspicion s("a", 2, Millis(4000), Millis(24000), T0());
  EXPECT_EQ(s.Remaining(T0()), milliseconds(24000));
  EXPECT_EQ(s.Remaining(T0() + milliseconds(10000)), milliseconds(14000));
  EXPECT_FALSE(s.Expired(T0() + milliseconds(10000)));
  // Two confirmations at 10 s: the deadline moves to start + 4 s, already passed.
  ASSERT_TRUE(s.Confirm("b"));
  EXPECT_EQ(s.Remaining(T0() + milliseconds(10000)), milliseconds(1381));
  ASSERT_TRUE(s.Confirm("c"));
  EXPECT_EQ(s.Remaining(T0() + milliseconds(10000)), milliseconds(0));
  EXPECT_TRUE(s.Expired(T0() + milliseconds(10000)));
  EXPECT_FALSE(s.Expired(T0() + milliseconds(3999)));
  EXPECT_TRUE(s.Expired(T0() + milliseconds(4000)));
}

TEST(SuspicionTest, ARepeatedConfirmerOrTheAccuserCountsOnce) {
  Suspicion s("a", 3, Millis(4000), Millis(24000), T0());
  EXPECT_FALSE(s.Confirm("a")) << "the accuser does not confirm itself";
  EXPECT_EQ(s.confirmations(), 0);
  EXPECT_EQ(s.Timeout(), Millis(24000));
  EXPECT_TRUE(s.Confirm("b"));
  const Millis after_one = s.Timeout();
  for (int i = 0; i < 5; ++i) EXPECT_FALSE(s.Confirm("b"));
  EXPECT_EQ(s.confirmations(), 1);
  EXPECT_EQ(s.Timeout(), after_one);
}

TEST(SuspicionTest, NothingCountsAfterK) {
  // Every confirmation after the k-th is refused, even from members never heard: so a suspect
  // message about an already-suspected member is re-gossiped at most k times.
  Suspicion s("a", 2, Millis(4000), Millis(24000), T0());
  EXPECT_TRUE(s.Confirm("b"));
  EXPECT_TRUE(s.Confirm("c"));
  for (const char* from : {"d", "e", "f", "b"}) EXPECT_FALSE(s.Confirm(from)) << from;
  EXPECT_EQ(s.confirmations(), 2);
  EXPECT_EQ(s.Timeout(), Millis(4000));
}

TEST(SuspicionTest, WithKZeroTheMinimumAppliesAndNothingCounts) {
  // A mesh too small for independent confirmations (SuspicionConfirmations gives 0).
  Suspicion s("a", 0, Millis(4000), Millis(24000), T0());
  EXPECT_EQ(s.Timeout(), Millis(4000));
  EXPECT_FALSE(s.Confirm("b"));
  EXPECT_EQ(s.confirmations(), 0);
}

}  // namespace
}  // namespace hivemesh::membership
