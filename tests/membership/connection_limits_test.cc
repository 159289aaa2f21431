#include "membership/connection_limits.h"

#include <gtest/gtest.h>

#include <vector>

namespace hivemesh::membership {
namespace {

TEST(ConnectionLimitsTest, OneSourceCannotTakeEveryPlace) {
  ConnectionLimits limits(/*max_total=*/5, /*max_per_source=*/2);
  std::vector<ConnectionLimits::Slot> held;
  DropReason why = DropReason::kMalformed;
  for (int i = 0; i < 2; ++i) {
    absl::StatusOr<ConnectionLimits::Slot> s = limits.Admit("10.0.0.9", &why);
    ASSERT_TRUE(s.ok()) << s.status();
    held.push_back(*std::move(s));
  }
  absl::StatusOr<ConnectionLimits::Slot> third = limits.Admit("10.0.0.9", &why);
  ASSERT_FALSE(third.ok());
  EXPECT_EQ(why, DropReason::kSourceConnectionLimit);
  EXPECT_NE(third.status().message().find("gossip_max_connections_per_source"), std::string::npos);
  EXPECT_EQ(limits.open_from("10.0.0.9"), 2u);
  // Others still get in, up to the total.
  for (const char* source : {"10.0.0.1", "10.0.0.2", "10.0.0.3"}) {
    absl::StatusOr<ConnectionLimits::Slot> s = limits.Admit(source, &why);
    ASSERT_TRUE(s.ok()) << source;
    held.push_back(*std::move(s));
  }
  EXPECT_EQ(limits.open(), 5u);
  absl::StatusOr<ConnectionLimits::Slot> over = limits.Admit("10.0.0.4", &why);
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(why, DropReason::kConnectionLimit);
  EXPECT_NE(over.status().message().find("gossip_max_connections"), std::string::npos);
}

TEST(ConnectionLimitsTest, ReleasedPlacesAreFreeAgain) {
  ConnectionLimits limits(2, 1);
  DropReason why = DropReason::kMalformed;
  {
    absl::StatusOr<ConnectionLimits::Slot> a = limits.Admit("a", &why);
    ASSERT_TRUE(a.ok());
    EXPECT_FALSE(limits.Admit("a", &why).ok());
    ConnectionLimits::Slot moved = *std::move(a);  // moving keeps one place
    EXPECT_EQ(limits.open(), 1u);
    moved.Release();
    EXPECT_EQ(limits.open(), 0u);
    moved.Release();  // twice is harmless
    EXPECT_EQ(limits.open(), 0u);
  }
  absl::StatusOr<ConnectionLimits::Slot> again = limits.Admit("a", &why);
  ASSERT_TRUE(again.ok());
  ConnectionLimits::Slot other;
  other = *std::move(again);
  EXPECT_EQ(limits.open_from("a"), 1u);
  other = ConnectionLimits::Slot();  // assigning releases what it held
  EXPECT_EQ(limits.open_from("a"), 0u);
  EXPECT_EQ(limits.open(), 0u);
}

TEST(ConnectionLimitsTest, SlotsMayOutliveTheLimits) {
  ConnectionLimits::Slot slot;
  {
    ConnectionLimits limits(1, 1);
    absl::StatusOr<ConnectionLimits::Slot> s = limits.Admit("a", nullptr);
    ASSERT_TRUE(s.ok());
    slot = *std::move(s);
  }
  slot.Release();  // no use after free (ASan would say)
}

}  // namespace
}  // namespace hivemesh::membership
