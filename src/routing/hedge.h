// Hedging: how long a forwarded try may go unanswered before the same request is also sent to
// another candidate. Pure: every input is a parameter.
//
// A try's timeout follows what this peer should take now, not one static number: a multiple of
// its expected time (the larger of the predicted completion time, from its load and the path,
// and its observed peak-EWMA latency), never below a floor (so jitter does not hedge a healthy
// peer) nor above a cap (so a hung peer holds a request at most that long), and never past the
// request's deadline (a try that would outlive it is simply the last one). Hedges are paid for
// from a budget of their own (RetryBudget with a smaller ratio), so they cannot double the load.
#pragma once

#include <chrono>
#include <optional>

#include "base/clock.h"
#include "routing/retry_budget.h"

namespace hivemesh::routing {

struct HedgeConfig {
  double multiplier = 3.0;  // of the expected time
  Nanos floor{std::chrono::milliseconds(50)};
  Nanos cap{std::chrono::seconds(1)};
  // Hedges allowed: 10% of recent requests plus 5 per second (RetryBudget's rule).
  RetryBudgetConfig budget{0.1, 5.0, std::chrono::milliseconds(10000)};
  // Hedge times are rounded up to this tick, so that one wakeup of the timer serves every try due
  // within it (a timer per request, at thousands of requests per second, would wake it for each).
  Nanos tick{std::chrono::milliseconds(5)};
};

// `at` rounded up to the next multiple of `tick` (of the clock's epoch); `at` if tick <= 0.
SteadyTime RoundUpToTick(SteadyTime at, Nanos tick);

// The expected time of a try at a peer: the larger of its predicted completion time and its
// observed latency (peak-EWMA; 0 when none observed yet).
double ExpectedTryNanos(double predicted_ns, double peak_ewma_ns);

// When a try expected to take `expected_ns` is hedged, measured from when it was sent; nullopt
// when it should not be: the request's `remaining` time would run out first (the try then waits
// for the deadline, as the request's last).
std::optional<Nanos> HedgeAfter(double expected_ns, std::optional<Nanos> remaining,
                                const HedgeConfig& config);

}  // namespace hivemesh::routing
