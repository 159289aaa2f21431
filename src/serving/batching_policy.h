// BatchingPolicy: the dynamic batcher's decision, as a pure function of the queue and `now`
// (Triton's dynamic batcher rules). The runtime calls Decide() whenever a worker is free or the
// queue changes, and either runs the batch it names or sleeps until `wake_at` or the next
// arrival, whichever comes first.
//
// Rules, in the order Decide applies them:
//   1. A request whose deadline is at or before `now` is never batched: it is listed in
//      `expired` (the runtime answers it DEADLINE_EXCEEDED, as for any request expired in queue).
//   2. The batch is built from the oldest live request and the live requests after it that have
//      the same `group` (same inputs and same shape after the first dimension: only such requests
//      can be concatenated), in arrival order. It stops at the first one that would take the
//      total rows past max_batch_size: requests never overtake each other within a group.
//      A request that is larger than max_batch_size on its own is refused at admission; if one
//      is queued anyway it runs alone.
//   3. Run now when the batch is full: it holds max_batch_size rows, or the next request of the
//      group does not fit.
//   4. Run now when a prefix of the batch is one of the preferred sizes: the largest such prefix
//      runs (the rest waits for the next batch).
//   5. Run now when the oldest request has waited max_queue_delay, or when waiting any longer
//      would let a batch member's deadline pass (deadline - compute_estimate <= now).
//   6. Otherwise wait until the earliest of those two times.
//
// Thread safety: a const value; Decide may be called from any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "base/clock.h"
#include "serving/model_config.h"

namespace hivemesh {

// What the policy needs to know about one queued request.
struct PendingRequest {
  SteadyTime arrival;
  int64_t rows = 1;                    // the request's batch size: its inputs' first dimension
  std::optional<SteadyTime> deadline;  // none: no deadline
  uint64_t group = 0;                  // only requests of one group batch together
};

struct BatchDecision {
  // Indices into the queue, ascending (arrival order): run these as one batch now. Empty: wait.
  std::vector<size_t> run;
  // Indices of requests whose deadline has passed; they must be answered, not computed.
  std::vector<size_t> expired;
  // When `run` is empty: decide again at this time (or at the next arrival, if sooner). None:
  // nothing to wait for but arrivals.
  std::optional<SteadyTime> wake_at;
};

class BatchingPolicy {
 public:
  // REQUIRES: config.enabled(); preferred sizes ascending (ParseModelConfig sorts them).
  explicit BatchingPolicy(const BatchingConfig& config);

  // `queue` in arrival order. `compute_estimate` is how long one execution is expected to take:
  // a batch holding a request with a deadline starts no later than that deadline minus this.
  // Callers add some slack for their own wake-up delay: a request still queued at its deadline
  // is expired, so with an estimate of 0 a waiting batch would lose that request.
  BatchDecision Decide(std::span<const PendingRequest> queue, SteadyTime now,
                       Nanos compute_estimate = Nanos(0)) const;

  int64_t max_batch_size() const { return max_batch_size_; }
  Nanos max_queue_delay() const { return max_queue_delay_; }

 private:
  int64_t max_batch_size_;
  std::vector<int64_t> preferred_;  // ascending
  Nanos max_queue_delay_;
};

}  // namespace hivemesh
