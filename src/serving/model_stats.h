// Per model version counters for the KServe statistics extension, plus the live load figures
// (queue depth, in-flight) that the mesh will gossip.
//
// Thread safety: every field is an atomic written by the runtime's workers and expirer and read
// by anyone; readers see a consistent-enough snapshot, not a transaction. BatchStats, written
// once per execution, takes its own lock.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "base/latency_histogram.h"

namespace hivemesh {

struct DurationStat {
  std::atomic<uint64_t> count{0};
  std::atomic<uint64_t> ns{0};
  void Add(uint64_t duration_ns) {
    count.fetch_add(1, std::memory_order_relaxed);
    ns.fetch_add(duration_ns, std::memory_order_relaxed);
  }
};

// Sizes of the batches the backend executed (requests per execution), counted where executions
// are. Bucket i holds sizes in (2^(i-1), 2^i] for i < kBuckets - 1 (bucket 0: size 1); the last
// holds everything above 2^(kBuckets - 2). Not cumulative.
struct BatchSizeStat {
  static constexpr int kBuckets = 9;  // 1, 2, 4, ..., 128, more
  std::array<std::atomic<uint64_t>, kBuckets> counts{};
  std::atomic<uint64_t> sum{0};
  static uint64_t UpperBound(int bucket) { return uint64_t{1} << bucket; }  // bucket < kBuckets-1
  void Add(uint64_t size) {
    int b = 0;
    while (b < kBuckets - 1 && size > UpperBound(b)) ++b;
    counts[static_cast<size_t>(b)].fetch_add(1, std::memory_order_relaxed);
    sum.fetch_add(size, std::memory_order_relaxed);
  }
};

// The statistics extension's batch_stats: per batch size (the rows one execution ran; 1 for a
// model that does not batch), how many executions and their input, compute and output time.
class BatchStats {
 public:
  struct Durations {
    uint64_t count = 0;
    uint64_t input_ns = 0, infer_ns = 0, output_ns = 0;
  };
  void Add(uint64_t batch_size, uint64_t input_ns, uint64_t infer_ns, uint64_t output_ns) {
    absl::MutexLock lock(&mu_);
    Durations& d = by_size_[batch_size];
    ++d.count;
    d.input_ns += input_ns;
    d.infer_ns += infer_ns;
    d.output_ns += output_ns;
  }
  std::map<uint64_t, Durations> Snapshot() const {
    absl::MutexLock lock(&mu_);
    return by_size_;
  }

 private:
  mutable absl::Mutex mu_;
  std::map<uint64_t, Durations> by_size_ ABSL_GUARDED_BY(mu_);
};

struct ModelStats {
  std::atomic<uint64_t> inference_count{0};    // requests computed successfully (batch items)
  std::atomic<uint64_t> execution_count{0};    // backend executions
  BatchSizeStat batch_size;                    // requests per execution (dynamic batching)
  BatchStats batch_stats;                      // executions by rows per execution
  std::atomic<uint64_t> last_inference_ms{0};  // wall-clock ms since the epoch
  DurationStat success;                        // end to end inside the runtime: queue + compute
  DurationStat fail;                           // requests that failed after being queued
  DurationStat queue;                          // time spent waiting in the queue
  DurationStat compute_input;                  // preparing inputs for the backend
  DurationStat compute_infer;                  // the backend's own work
  DurationStat compute_output;                 // selecting and packaging outputs
  std::atomic<uint64_t> rejected_queue_full{0};
  std::atomic<uint64_t> expired_in_queue{0};
  std::atomic<uint64_t> cancelled_in_queue{0};  // cancelled by their sender before they ran
  std::atomic<int64_t> queue_depth{0};
  // Taken by a worker and not yet answered (a request stops counting just before its callback
  // runs, so the callback and whatever it triggers see it gone).
  std::atomic<int64_t> in_flight{0};
  // Exponentially weighted mean of the backend's service time per execution
  // (serving/service_ewma.h), for the load reports the mesh routes by. Workers update it without
  // a lock: a rare lost update between two workers only delays the average by one sample.
  std::atomic<uint64_t> ewma_service_ns{0};
  // Filled by the front end: time a request spent in the node (from its headers being read to its
  // response being handed to the socket) minus the model's compute time.
  mutable LatencyHistogram overhead;
};

}  // namespace hivemesh
