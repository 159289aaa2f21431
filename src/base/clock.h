// Clocks. Every component that needs the time takes a `Clock&` so that tests can drive it with a
// ManualClock instead of sleeping.
//
// Thread safety: SystemClock is stateless. ManualClock is safe to read and advance from any
// thread (the time is one atomic).
#pragma once

#include <atomic>
#include <chrono>

namespace hivemesh {

using SteadyTime = std::chrono::steady_clock::time_point;
using Nanos = std::chrono::nanoseconds;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual SteadyTime Now() const = 0;
};

// The process's monotonic clock.
class SystemClock final : public Clock {
 public:
  SteadyTime Now() const override { return std::chrono::steady_clock::now(); }
  static SystemClock& Get();
};

// A clock that only moves when told to.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(SteadyTime start = SteadyTime{})
      : now_ns_(start.time_since_epoch().count()) {}
  SteadyTime Now() const override { return SteadyTime(Nanos(now_ns_.load())); }
  void Advance(Nanos d) { now_ns_.fetch_add(d.count()); }
  void Set(SteadyTime t) { now_ns_.store(t.time_since_epoch().count()); }

 private:
  std::atomic<int64_t> now_ns_;
};

}  // namespace hivemesh
