// RetryBudget: retries allowed as a fraction of recent requests plus a floor per second
// (Linkerd: 20% extra load plus 10 retries/s; Envoy: 20% of active requests, at least 3), so a
// failing peer cannot turn every request into several. Pure: time is a parameter.
//
// Each request deposits one token, decaying over a `window`; a retry withdraws 1/ratio tokens
// from that deposit, or else spends from the floor's per-second allowance.
#pragma once

#include <chrono>
#include <deque>

#include "base/clock.h"

namespace hivemesh::routing {

struct RetryBudgetConfig {
  double ratio = 0.2;                       // retries per request
  double min_per_second = 10.0;             // retries allowed regardless of traffic
  std::chrono::milliseconds window{10000};  // how long a request's deposit counts
};

class RetryBudget {
 public:
  explicit RetryBudget(RetryBudgetConfig config = {}) : config_(config) {}

  void Deposit(SteadyTime now);
  // True if a retry may be sent now (and counts it).
  bool TryWithdraw(SteadyTime now);

 private:
  void Expire(SteadyTime now);

  RetryBudgetConfig config_;
  std::deque<SteadyTime> requests_;  // deposits within the window
  std::deque<SteadyTime> retries_;   // retries within the window
};

// Full-jitter exponential backoff: uniform in [0, min(cap, base x 2^attempt)). `unit` is a
// uniform random number in [0, 1). Envoy / AWS: base 25 ms.
Nanos FullJitterBackoff(int attempt, Nanos base, Nanos cap, double unit);

}  // namespace hivemesh::routing
