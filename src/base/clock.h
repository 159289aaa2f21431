// Clocks. Every component that needs the time, or needs to wait for a time, takes a `Clock&` so
// that tests can drive it with a ManualClock instead of sleeping.
//
// A thread that waits for "a signal or a time, whichever comes first" calls
// `clock.WaitUntil(cv, mu, deadline)` instead of `cv.WaitWithDeadline(...)`: on the system clock
// it is that wait; on a ManualClock the wait ends when the test advances the clock past the
// deadline (or the condition variable is signalled), so a component's timeouts, batching delays
// and poll periods run on simulated time.
//
// Thread safety: SystemClock is stateless. ManualClock is safe to read, wait on and advance from
// any thread.
#pragma once

#include <atomic>
#include <chrono>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace hivemesh {

using SteadyTime = std::chrono::steady_clock::time_point;
using Nanos = std::chrono::nanoseconds;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual SteadyTime Now() const = 0;

  // Waits on `cv` until it is signalled or Now() >= deadline, whichever comes first; may also
  // return early for no reason (callers re-check their condition in a loop). Returns true if the
  // deadline has passed.
  // REQUIRES: `mu` is held; it is held again on return.
  virtual bool WaitUntil(absl::CondVar& cv, absl::Mutex& mu, SteadyTime deadline) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) = 0;
};

// The process's monotonic clock.
class SystemClock final : public Clock {
 public:
  SteadyTime Now() const override { return std::chrono::steady_clock::now(); }
  bool WaitUntil(absl::CondVar& cv, absl::Mutex& mu, SteadyTime deadline) const override
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  static SystemClock& Get();
};

// A clock that only moves when told to. A thread in WaitUntil returns when its condition variable
// is signalled, or within a few milliseconds of real time after Advance or Set moved the time
// past its deadline (it re-checks the time that often; waking it from Advance would need the
// waiter's mutex, which Advance cannot take safely).
class ManualClock final : public Clock {
 public:
  explicit ManualClock(SteadyTime start = SteadyTime{})
      : now_ns_(start.time_since_epoch().count()) {}
  SteadyTime Now() const override { return SteadyTime(Nanos(now_ns_.load())); }
  bool WaitUntil(absl::CondVar& cv, absl::Mutex& mu, SteadyTime deadline) const override
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);

  void Advance(Nanos d) { now_ns_.fetch_add(d.count()); }
  void Set(SteadyTime t) { now_ns_.store(t.time_since_epoch().count()); }
  // How many threads are in WaitUntil now (tests wait for a component to go to sleep before they
  // advance the clock).
  int waiters() const { return waiters_.load(); }

 private:
  std::atomic<int64_t> now_ns_;
  mutable std::atomic<int> waiters_{0};
};

}  // namespace hivemesh
