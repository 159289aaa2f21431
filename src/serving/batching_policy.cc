#include "serving/batching_policy.h"

#include <algorithm>

namespace hivemesh {

BatchingPolicy::BatchingPolicy(const BatchingConfig& config)
    : max_batch_size_(config.max_batch_size),
      preferred_(config.preferred_batch_sizes.begin(), config.preferred_batch_sizes.end()),
      max_queue_delay_(std::chrono::microseconds(config.max_queue_delay_us)) {}

BatchDecision BatchingPolicy::Decide(std::span<const PendingRequest> queue, SteadyTime now,
                                     Nanos compute_estimate) const {
  BatchDecision d;
  std::optional<uint64_t> group;
  int64_t rows = 0;
  bool full = false;         // the batch cannot grow any more
  size_t preferred_end = 0;  // members [0, preferred_end) form the largest preferred prefix
  std::optional<SteadyTime> latest_start;  // the last moment the batch may start
  for (size_t i = 0; i < queue.size(); ++i) {
    const PendingRequest& r = queue[i];
    if (r.deadline && *r.deadline <= now) {
      d.expired.push_back(i);
      continue;
    }
    if (full) continue;  // still scanned for expired requests
    if (group && r.group != *group) continue;
    if (!group) {
      group = r.group;
      latest_start = r.arrival + max_queue_delay_;
    } else if (rows + r.rows > max_batch_size_) {
      full = true;  // the next request of the group does not fit
      continue;
    }
    d.run.push_back(i);
    rows += r.rows;
    if (r.deadline) latest_start = std::min(*latest_start, *r.deadline - compute_estimate);
    if (std::binary_search(preferred_.begin(), preferred_.end(), rows)) {
      preferred_end = d.run.size();
    }
    if (rows >= max_batch_size_) full = true;
  }
  if (d.run.empty()) return d;
  if (full) return d;
  if (preferred_end > 0) {
    d.run.resize(preferred_end);
    return d;
  }
  if (*latest_start <= now) return d;
  d.run.clear();
  d.wake_at = latest_start;
  return d;
}

}  // namespace hivemesh
