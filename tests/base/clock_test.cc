#include "base/clock.h"

#include <gtest/gtest.h>

#include <thread>

namespace hivemesh {
namespace {

using std::chrono::milliseconds;

TEST(ManualClockTest, MovesOnlyWhenTold) {
  ManualClock clock;
  const SteadyTime start = clock.Now();
  EXPECT_EQ(clock.Now(), start);
  clock.Advance(milliseconds(5));
  EXPECT_EQ(clock.Now() - start, milliseconds(5));
  clock.Set(start + milliseconds(100));
  EXPECT_EQ(clock.Now() - start, milliseconds(100));
}

TEST(ManualClockTest, AWaitEndsOnlyOnceTheClockPassesItsDeadline) {
  ManualClock clock;
  absl::Mutex mu;
  absl::CondVar cv;
  bool done = false;
  const SteadyTime deadline = clock.Now() + milliseconds(50);
  std::thread waiter([&] {
    absl::MutexLock l(&mu);
    while (!clock.WaitUntil(cv, mu, deadline)) {
    }
    done = true;
  });
  // However long the test thread dawdles in real time, the waiter stays in its wait until the
  // manual time reaches the deadline.
  while (clock.waiters() == 0) std::this_thread::yield();
  clock.Advance(milliseconds(49));
  std::this_thread::sleep_for(milliseconds(20));
  {
    absl::MutexLock l(&mu);
    EXPECT_FALSE(done);
  }
  clock.Advance(milliseconds(1));
  waiter.join();
  EXPECT_TRUE(done);
}

TEST(ManualClockTest, ASignalEndsAWaitBeforeItsDeadline) {
  ManualClock clock;
  absl::Mutex mu;
  absl::CondVar cv;
  bool ready = false;
  bool timed_out = true;
  std::thread waiter([&] {
    absl::MutexLock l(&mu);
    while (!ready) {
      if (clock.WaitUntil(cv, mu, clock.Now() + std::chrono::hours(1))) return;
    }
    timed_out = false;
  });
  {
    absl::MutexLock l(&mu);
    ready = true;
    cv.Signal();
  }
  waiter.join();
  EXPECT_FALSE(timed_out);
}

TEST(SystemClockTest, AWaitEndsAtItsDeadline) {
  SystemClock& clock = SystemClock::Get();
  absl::Mutex mu;
  absl::CondVar cv;
  absl::MutexLock l(&mu);
  const SteadyTime deadline = clock.Now() + milliseconds(10);
  while (!clock.WaitUntil(cv, mu, deadline)) {
  }
  EXPECT_GE(clock.Now(), deadline);
  EXPECT_TRUE(clock.WaitUntil(cv, mu, deadline));  // already past: returns at once
}

}  // namespace
}  // namespace hivemesh
