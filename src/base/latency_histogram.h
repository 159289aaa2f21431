// LatencyHistogram: a fixed-size log-linear histogram of durations (1 µs .. ~1 hour, about 3%
// relative error), with lock-free recording and percentile queries.
//
// Thread safety: Record() and Percentile() may be called concurrently from any thread.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

namespace hivemesh {

class LatencyHistogram {
 public:
  void Record(uint64_t nanos);
  // The q-quantile (0 < q <= 1) in nanoseconds, as the upper bound of its bucket; 0 if empty.
  uint64_t Percentile(double q) const;
  uint64_t Count() const;
  uint64_t SumNanos() const { return sum_ns_.load(std::memory_order_relaxed); }

  static constexpr int kSubBuckets = 32;  // per power of two
  static constexpr int kBuckets = 32 * kSubBuckets;

  static int BucketOf(uint64_t nanos);
  static uint64_t UpperBound(int bucket);

 private:
  std::array<std::atomic<uint64_t>, kBuckets> counts_{};
  std::atomic<uint64_t> sum_ns_{0};
};

}  // namespace hivemesh
