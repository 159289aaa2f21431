// ConnectionLimits: the admission rule, slots given back however they end, source keys, and the
// defaults derived from the descriptor limit.
#include "api/connection_limits.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace hivemesh {
namespace {

std::string V4(int a, int b, int c, int d) {
  const char bytes[4] = {static_cast<char>(a), static_cast<char>(b), static_cast<char>(c),
                         static_cast<char>(d)};
  return SourceKey(std::string_view(bytes, 4));
}

TEST(ConnectionLimitsTest, PerSourceAndTotal) {
  ConnectionLimits limits(/*max_total=*/5, /*max_per_source=*/2);
  Rejection why = Rejection::kCount;
  std::vector<ConnectionLimits::Slot> held;
  for (int i = 0; i < 2; ++i) {
    std::optional<ConnectionLimits::Slot> s = limits.Admit(V4(10, 0, 0, 1), &why);
    ASSERT_TRUE(s.has_value());
    held.push_back(std::move(*s));
  }
  EXPECT_FALSE(limits.Admit(V4(10, 0, 0, 1), &why).has_value());
  EXPECT_EQ(why, Rejection::kSourceConnectionLimit);
  // Other sources still get in, up to the total.
  for (int i = 2; i <= 4; ++i) {
    std::optional<ConnectionLimits::Slot> s = limits.Admit(V4(10, 0, 0, i), &why);
    ASSERT_TRUE(s.has_value()) << i;
    held.push_back(std::move(*s));
  }
  EXPECT_EQ(limits.open(), 5);
  EXPECT_FALSE(limits.Admit(V4(10, 0, 0, 9), &why).has_value());
  EXPECT_EQ(why, Rejection::kConnectionLimit);
  // A slot moved on (a connection that became a mesh link) still holds its place once.
  ConnectionLimits::Slot moved = std::move(held[0]);
  held.erase(held.begin());
  EXPECT_EQ(limits.open(), 5);
  EXPECT_EQ(limits.open_from(V4(10, 0, 0, 1)), 2);
  moved.Release();
  moved.Release();  // once only
  EXPECT_EQ(limits.open(), 4);
  EXPECT_EQ(limits.open_from(V4(10, 0, 0, 1)), 1);
  EXPECT_TRUE(limits.Admit(V4(10, 0, 0, 1), &why).has_value());  // given back at once
  held.clear();
  EXPECT_EQ(limits.open(), 0);
  EXPECT_EQ(limits.open_from(V4(10, 0, 0, 1)), 0);
}

TEST(ConnectionLimitsTest, ManyThreadsAdmitAndRelease) {
  ConnectionLimits limits(64, 64);
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&limits, t] {
      Rejection why;
      for (int i = 0; i < 2000; ++i) {
        std::optional<ConnectionLimits::Slot> s = limits.Admit(V4(10, 0, 0, t % 3), &why);
        if (s) {
          EXPECT_LE(limits.open(), 64);
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(limits.open(), 0);
}

TEST(ConnectionLimitsTest, SourceKeys) {
  char v6[16] = {0x20, 0x01, 0x0d, static_cast<char>(0xb8), 0, 0, 0, 1};
  std::string a(v6, 16);
  v6[15] = 7;
  v6[9] = 3;
  std::string b(v6, 16);
  // One /64: one source, whatever the host part.
  EXPECT_EQ(SourceKey(a), SourceKey(b));
  v6[7] = 2;
  EXPECT_NE(SourceKey(a), SourceKey(std::string(v6, 16)));
  // An IPv4-mapped address is its IPv4 address.
  char mapped[16] = {
      0, 0, 0, 0, 0, 0, 0, 0, 0, 0, static_cast<char>(0xff), static_cast<char>(0xff), 10, 0, 0, 1};
  EXPECT_EQ(SourceKey(std::string_view(mapped, 16)), V4(10, 0, 0, 1));
  EXPECT_NE(V4(10, 0, 0, 1), V4(10, 0, 0, 2));
}

TEST(ConnectionLimitsTest, DefaultsFollowTheDescriptorLimit) {
  EXPECT_EQ(DefaultConnectionLimits(128).max_total, 64);
  EXPECT_EQ(DefaultConnectionLimits(128).max_per_source, 32);
  EXPECT_EQ(DefaultConnectionLimits(1024).max_total, 512);
  EXPECT_EQ(DefaultConnectionLimits(1024).max_per_source, 256);
  EXPECT_EQ(DefaultConnectionLimits(1 << 20).max_total, 1024);
  EXPECT_EQ(DefaultConnectionLimits(1 << 20).max_per_source, 256);
  EXPECT_EQ(DefaultConnectionLimits(1).max_total, 1);
  EXPECT_EQ(DefaultConnectionLimits(1).max_per_source, 1);
  // This process's: within the bounds, and never more than half its descriptors.
  const ConnectionLimitDefaults here = DefaultConnectionLimits();
  EXPECT_GE(here.max_total, 1);
  EXPECT_LE(here.max_total, 1024);
  EXPECT_LE(here.max_per_source, here.max_total);
}

}  // namespace
}  // namespace hivemesh
