#include "services/readiness.h"

#include <gtest/gtest.h>

namespace hivemesh::services {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

TEST(ReadinessTest, EntersAfterOneSuccessAndLeavesAfterTheThresholdInARow) {
  SteadyTime t{};
  Readiness r(seconds(2), 3);
  EXPECT_FALSE(r.ready());
  r.Observe(false, t);
  EXPECT_FALSE(r.ready());
  r.Observe(true, t += seconds(2));
  EXPECT_TRUE(r.ready());
  r.Observe(false, t += seconds(2));
  r.Observe(false, t += seconds(2));
  r.Observe(true, t += seconds(2));  // a success resets the count
  r.Observe(false, t += seconds(2));
  r.Observe(false, t += seconds(2));
  EXPECT_TRUE(r.ready());
  r.Observe(false, t += seconds(2));
  EXPECT_FALSE(r.ready());
  EXPECT_EQ(r.hold(), milliseconds(0)) << "a first leave is no flap";
  r.Observe(true, t += seconds(2));
  EXPECT_TRUE(r.ready());
}

TEST(ReadinessTest, AProcessDownLeavesAtOnce) {
  SteadyTime t{};
  Readiness r(seconds(2), 3);
  r.Observe(true, t);
  r.Down(t += seconds(1));
  EXPECT_FALSE(r.ready());
}

TEST(ReadinessTest, FlapsWaitLongerEachTimeUpToAMinuteAndAQuietMinuteForgets) {
  SteadyTime t{};
  Readiness r(seconds(2), 1);
  r.Observe(true, t);
  r.Down(t += seconds(1));  // first leave
  r.Observe(true, t += seconds(1));
  ASSERT_TRUE(r.ready());
  r.Down(t += seconds(1));  // second leave within a minute: a flap
  EXPECT_EQ(r.hold(), seconds(4));
  r.Observe(true, t += seconds(1));
  r.Observe(true, t += seconds(3));
  EXPECT_FALSE(r.ready()) << "3 s of passing checks, 4 s needed";
  r.Observe(false, t += seconds(1));
  r.Observe(true, t += seconds(1));
  r.Observe(true, t += seconds(3));
  EXPECT_FALSE(r.ready()) << "a failed check starts the wait anew";
  r.Observe(true, t += seconds(1));
  EXPECT_TRUE(r.ready());
  for (seconds expected : {seconds(8), seconds(16), seconds(32), seconds(60), seconds(60)}) {
    r.Down(t += seconds(1));
    EXPECT_EQ(r.hold(), expected);
    r.Observe(true, t += seconds(1));
    r.Observe(true, t += expected);
    ASSERT_TRUE(r.ready());
  }
  t += seconds(60);
  r.Down(t);
  EXPECT_EQ(r.hold(), milliseconds(0)) << "a minute of being ready forgets the flaps";
}

}  // namespace
}  // namespace hivemesh::services
