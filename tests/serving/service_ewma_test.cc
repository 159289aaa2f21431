#include "serving/service_ewma.h"

#include <gtest/gtest.h>

#include <random>

namespace hivemesh {
namespace {

TEST(ServiceEwmaTest, TheFirstSampleIsTakenAsItIs) {
  EXPECT_EQ(NextServiceEwma(0, 12345), 12345u);
  EXPECT_EQ(NextServiceEwma(0, 0), 0u);
}

TEST(ServiceEwmaTest, TheNewestSampleWeighsOneFifthRoundingDown) {
  EXPECT_EQ(NextServiceEwma(1000, 2000), 1200u);
  EXPECT_EQ(NextServiceEwma(1000, 0), 800u);
  EXPECT_EQ(NextServiceEwma(7, 9), 7u) << "(28 + 9) / 5 = 7.4";
  static_assert(NextServiceEwma(5, 10) == 6);
}

TEST(ServiceEwmaTest, StaysBetweenTheAverageAndTheSampleAndConverges) {
  std::mt19937_64 gen(5);
  for (int i = 0; i < 10000; ++i) {
    const uint64_t prev = 1 + gen() % 1'000'000'000, sample = gen() % 1'000'000'000;
    const uint64_t next = NextServiceEwma(prev, sample);
    ASSERT_LE(next, std::max(prev, sample));
    ASSERT_GE(next + 1, std::min(prev, sample)) << "at most one below, from rounding down";
  }
  uint64_t avg = 0;
  for (int i = 0; i < 200; ++i) avg = NextServiceEwma(avg, 5'000'000);
  EXPECT_EQ(avg, 5'000'000u);
  for (int i = 0; i < 200; ++i) avg = NextServiceEwma(avg, 1'000'000);
  EXPECT_NEAR(static_cast<double>(avg), 1e6, 5.0);
}

}  // namespace
}  // namespace hivemesh
