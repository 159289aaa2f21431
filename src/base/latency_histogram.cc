#include "base/latency_histogram.h"

#include <bit>

namespace hivemesh {

// Values are kept in units of 128 ns; below 32 units each unit has its own bucket, above that each
// power of two is split into kSubBuckets linear buckets.
int LatencyHistogram::BucketOf(uint64_t nanos) {
  const uint64_t v = nanos >> 7;
  if (v < kSubBuckets) return static_cast<int>(v);
  const int msb = 63 - std::countl_zero(v);  // >= 5
  const int shift = msb - 5;                 // keep the 5 bits below the most significant one
  const uint64_t sub = (v >> shift) & (kSubBuckets - 1);
  const int bucket = (shift + 1) * kSubBuckets + static_cast<int>(sub);
  return bucket < kBuckets ? bucket : kBuckets - 1;
}

uint64_t LatencyHistogram::UpperBound(int bucket) {
  if (bucket < kSubBuckets) return (static_cast<uint64_t>(bucket) + 1) << 7;
  const int shift = bucket / kSubBuckets - 1;
  const uint64_t sub = static_cast<uint64_t>(bucket % kSubBuckets);
  const uint64_t low = (kSubBuckets + sub) << shift;
  return (low + (uint64_t{1} << shift)) << 7;
}

void LatencyHistogram::Record(uint64_t nanos) {
  counts_[BucketOf(nanos)].fetch_add(1, std::memory_order_relaxed);
  sum_ns_.fetch_add(nanos, std::memory_order_relaxed);
}

uint64_t LatencyHistogram::Count() const {
  uint64_t n = 0;
  for (const auto& c : counts_) n += c.load(std::memory_order_relaxed);
  return n;
}

uint64_t LatencyHistogram::Percentile(double q) const {
  const uint64_t total = Count();
  if (total == 0) return 0;
  uint64_t rank = static_cast<uint64_t>(q * static_cast<double>(total));
  if (rank == 0) rank = 1;
  uint64_t seen = 0;
  for (int b = 0; b < kBuckets; ++b) {
    seen += counts_[b].load(std::memory_order_relaxed);
    if (seen >= rank) return UpperBound(b);
  }
  return UpperBound(kBuckets - 1);
}

}  // namespace hivemesh
