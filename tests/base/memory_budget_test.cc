#include "base/memory_budget.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace hivemesh {
namespace {

constexpr uint64_t kMiB = 1024 * 1024;

TEST(MemoryBudgetTest, ReservesUntilTheLargeLimitAndGivesBackOnDestruction) {
  auto budget = MemoryBudget::Create(64 * kMiB);
  EXPECT_EQ(budget->large_limit(), 56 * kMiB);  // 1/8 kept for small reservations
  {
    absl::StatusOr<MemoryBudget::Reservation> a = budget->Reserve(40 * kMiB);
    ASSERT_TRUE(a.ok());
    EXPECT_EQ(budget->used(), 40 * kMiB);
    absl::StatusOr<MemoryBudget::Reservation> b = budget->Reserve(20 * kMiB);
    ASSERT_FALSE(b.ok());
    EXPECT_EQ(b.status().code(), absl::StatusCode::kResourceExhausted);
    EXPECT_NE(b.status().message().find("memory budget"), std::string::npos);
    EXPECT_NE(b.status().message().find("64 MiB"), std::string::npos);
    EXPECT_EQ(budget->used(), 40 * kMiB);  // a refusal takes nothing
    EXPECT_EQ(budget->refusals(), 1u);
  }
  EXPECT_EQ(budget->used(), 0u);
}

TEST(MemoryBudgetTest, SmallReservationsStillFitWhenLargeOnesHaveSpentTheirShare) {
  auto budget = MemoryBudget::Create(8 * kMiB);
  absl::StatusOr<MemoryBudget::Reservation> large = budget->Reserve(budget->large_limit());
  ASSERT_TRUE(large.ok());
  EXPECT_FALSE(budget->Reserve(budget->small_bytes() + 1).ok());
  std::vector<MemoryBudget::Reservation> small;
  for (int i = 0; i < 16; ++i) {
    absl::StatusOr<MemoryBudget::Reservation> r = budget->Reserve(budget->small_bytes());
    ASSERT_TRUE(r.ok()) << i;
    small.push_back(std::move(*r));
  }
  // The whole limit is now held; nothing more fits, however small.
  EXPECT_EQ(budget->used(), budget->limit());
  EXPECT_FALSE(budget->Reserve(1).ok());
  EXPECT_TRUE(budget->Reserve(0).ok());
}

TEST(MemoryBudgetTest, GrowingPastTheSmallSizeMustFitTheLargeLimit) {
  auto budget = MemoryBudget::Create(1 * kMiB, 64 * 1024);
  absl::StatusOr<MemoryBudget::Reservation> r = budget->Reserve(1000);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->Grow(63 * 1024 - 1000).ok());
  EXPECT_FALSE(r->Grow(1 * kMiB).ok());  // over the large limit: left as it was
  EXPECT_EQ(r->bytes(), 63u * 1024);
  EXPECT_TRUE(r->Grow(500 * 1024).ok());
  EXPECT_EQ(budget->used(), 563u * 1024);
  r->Release();
  EXPECT_EQ(budget->used(), 0u);
}

TEST(MemoryBudgetTest, HeldBytesCountUntilTheLastViewIsGone) {
  auto budget = MemoryBudget::Create(4 * kMiB);
  absl::StatusOr<MemoryBudget::Reservation> r = budget->Reserve(1000);
  ASSERT_TRUE(r.ok());
  std::shared_ptr<const std::string> body =
      MemoryBudget::Hold(std::string(1000, 'x'), std::move(*r));
  std::shared_ptr<const std::string> view = body;
  body.reset();
  EXPECT_EQ(budget->used(), 1000u);
  EXPECT_EQ(view->size(), 1000u);
  view.reset();
  EXPECT_EQ(budget->used(), 0u);
}

TEST(MemoryBudgetTest, AnEmptyReservationCountsNothing) {
  MemoryBudget::Reservation none;
  EXPECT_TRUE(none.Grow(1ull << 40).ok());
  EXPECT_EQ(none.bytes(), 0u);
}

TEST(MemoryBudgetTest, ConcurrentReservationsNeverExceedTheLimit) {
  auto budget = MemoryBudget::Create(1 * kMiB, 1024);
  std::atomic<uint64_t> granted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 20000; ++i) {
        absl::StatusOr<MemoryBudget::Reservation> r = budget->Reserve(4096);
        if (!r.ok()) continue;
        granted.fetch_add(1);
        EXPECT_LE(budget->used(), budget->large_limit());
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_GT(granted.load(), 0u);
  EXPECT_EQ(budget->used(), 0u);
}

}  // namespace
}  // namespace hivemesh
