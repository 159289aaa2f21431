#include "base/timeouts.h"

#include <gtest/gtest.h>

#include <limits>

namespace hivemesh {
namespace {

using std::chrono::milliseconds;

constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();
constexpr uint64_t kUint64Max = std::numeric_limits<uint64_t>::max();

TEST(ClientTimeoutTest, PositiveTimeoutsUpToTheMaximumAreKept) {
  EXPECT_EQ(*ClientTimeoutMs(int64_t{1}, "t"), milliseconds(1));
  EXPECT_EQ(*ClientTimeoutMs(int64_t{5000}, "t"), milliseconds(5000));
  EXPECT_EQ(*ClientTimeoutMs(kMaxRequestTimeout.count(), "t"), kMaxRequestTimeout);
  EXPECT_EQ(*ClientTimeoutMs(uint64_t{250}, "t"), milliseconds(250));
}

TEST(ClientTimeoutTest, LongerTimeoutsAreCutToTheMaximum) {
  for (int64_t ms : {kMaxRequestTimeout.count() + 1, int64_t{1} << 40, int64_t{1} << 53,
                     kInt64Max - 1, kInt64Max}) {
    EXPECT_EQ(*ClientTimeoutMs(ms, "t"), kMaxRequestTimeout) << ms;
  }
  for (uint64_t ms : {uint64_t{1} << 63, kUint64Max - 1, kUint64Max}) {
    EXPECT_EQ(*ClientTimeoutMs(ms, "t"), kMaxRequestTimeout) << ms;
  }
}

TEST(ClientTimeoutTest, ZeroAndNegativeAreRefusedNamingTheField) {
  for (int64_t ms : {int64_t{0}, int64_t{-1}, std::numeric_limits<int64_t>::min()}) {
    absl::StatusOr<milliseconds> t = ClientTimeoutMs(ms, "request.parameters.timeout");
    ASSERT_FALSE(t.ok()) << ms;
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(t.status().message().find("request.parameters.timeout"), std::string::npos);
  }
  EXPECT_FALSE(ClientTimeoutMs(uint64_t{0}, "t").ok());
}

TEST(ClampedRemainingTest, StaysWithinZeroAndTheMaximum) {
  EXPECT_EQ(ClampedRemaining(0, 0), Nanos(0));
  EXPECT_EQ(ClampedRemaining(-5, 999'999'999), Nanos(0));
  EXPECT_EQ(ClampedRemaining(std::numeric_limits<int64_t>::min(), -1), Nanos(0));
  EXPECT_EQ(ClampedRemaining(0, 1), Nanos(1));
  EXPECT_EQ(ClampedRemaining(2, 500), std::chrono::seconds(2) + Nanos(500));
  EXPECT_EQ(ClampedRemaining(86'399, 999'999'999), kMaxRequestTimeout - Nanos(1));
  EXPECT_EQ(ClampedRemaining(86'400, 0), kMaxRequestTimeout);
  // grpc-timeout's largest value, 99999999 hours, and beyond.
  EXPECT_EQ(ClampedRemaining(int64_t{99'999'999} * 3600, 0), kMaxRequestTimeout);
  EXPECT_EQ(ClampedRemaining(kInt64Max, kInt64Max), kMaxRequestTimeout);
}

TEST(DeadlineAfterTest, AddsWithoutOverflowAtAnyTime) {
  const SteadyTime start{std::chrono::hours(24 * 365 * 50)};  // a steady clock 50 years in
  EXPECT_EQ(DeadlineAfter(start, milliseconds(10)), start + milliseconds(10));
  EXPECT_EQ(DeadlineAfter(start, *ClientTimeoutMs(kInt64Max, "t")), start + kMaxRequestTimeout);
  EXPECT_GT(DeadlineAfter(start, *ClientTimeoutMs(kInt64Max, "t")), start);
  EXPECT_EQ(DeadlineAfter(start, Nanos(-5)), start);
}

}  // namespace
}  // namespace hivemesh
