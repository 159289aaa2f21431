#include "base/latency_histogram.h"

#include <gtest/gtest.h>

#include "base/strings.h"

namespace hivemesh {
namespace {

TEST(LatencyHistogramTest, BucketsCoverValuesWithSmallRelativeError) {
  for (uint64_t ns : {0ull, 100ull, 1000ull, 12345ull, 1000000ull, 987654321ull, 60000000000ull}) {
    const int b = LatencyHistogram::BucketOf(ns);
    const uint64_t upper = LatencyHistogram::UpperBound(b);
    EXPECT_GE(upper, ns) << ns;
    EXPECT_LE(static_cast<double>(upper), std::max(1.04 * static_cast<double>(ns), 256.0)) << ns;
    if (b > 0) {
      EXPECT_LT(LatencyHistogram::UpperBound(b - 1), upper);
    }
  }
}

TEST(LatencyHistogramTest, Percentiles) {
  LatencyHistogram h;
  EXPECT_EQ(h.Percentile(0.5), 0u);
  for (int i = 1; i <= 100; ++i) h.Record(static_cast<uint64_t>(i) * 1000);
  EXPECT_EQ(h.Count(), 100u);
  EXPECT_NEAR(static_cast<double>(h.Percentile(0.5)), 50000, 2000);
  EXPECT_NEAR(static_cast<double>(h.Percentile(0.99)), 99000, 4000);
}

TEST(StringsTest, StrCatAndSplit) {
  EXPECT_EQ(StrCat("a", std::string_view("b"), 3, '-', int64_t{-4}, std::string("x")), "ab3--4x");
  EXPECT_EQ(Split("a//b", '/'), (std::vector<std::string_view>{"a", "", "b"}));
}

}  // namespace
}  // namespace hivemesh
