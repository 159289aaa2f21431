// PeakEwma: a latency estimate that jumps up to any slower observation at once and decays back
// toward faster ones with time constant tau (Finagle / linkerd2-proxy's peak-EWMA). Read
// without new observations, it decays toward 0, so an endpoint that once was slow is tried
// again eventually.
//
// A value type; pure (time is a parameter). Not thread-safe: the owner serializes access.
#pragma once

#include <chrono>

#include "base/clock.h"

namespace hivemesh::routing {

class PeakEwma {
 public:
  // `initial` is the estimate before any observation (linkerd2-proxy uses 30 ms).
  PeakEwma(Nanos tau, Nanos initial, SteadyTime now)
      : tau_ns_(static_cast<double>(tau.count())),
        cost_ns_(static_cast<double>(initial.count())),
        stamp_(now) {}

  // Records one observed round trip (or service time) at `now`. The first observation replaces
  // the initial guess: a new endpoint is judged by what it did, not by the guess decaying.
  void Observe(Nanos rtt, SteadyTime now);
  // The estimate at `now`, in nanoseconds (decayed since the last observation).
  double Get(SteadyTime now) const;

 private:
  double tau_ns_;
  double cost_ns_;
  bool observed_ = false;
  SteadyTime stamp_;
};

}  // namespace hivemesh::routing
