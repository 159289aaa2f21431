// Outlier detection for one endpoint, Envoy-style: `consecutive_failures` gateway failures in a
// row, or one refused connection, eject it for base_ejection x times ejected (capped). When the
// ejection ends the endpoint is probed: its next result either restores it or ejects it again,
// for longer. Pure: time is a parameter. Not thread-safe: the owner serializes access.
#pragma once

#include <chrono>

#include "base/clock.h"

namespace hivemesh::routing {

struct OutlierConfig {
  int consecutive_failures = 5;  // Envoy consecutive_5xx / gateway failures
  std::chrono::milliseconds base_ejection{30000};
  std::chrono::milliseconds max_ejection{300000};
  // Of all endpoints, at least one, ejected at a time for soft failures (timeouts, 503s); a
  // refused or reset connection ejects whatever the cap (the caller passes may_eject = true).
  double max_ejection_percent = 10.0;
};

// True if one more endpoint may be ejected when `ejected` of `total` already are.
bool MayEject(int ejected, int total, const OutlierConfig& config);

class OutlierState {
 public:
  explicit OutlierState(OutlierConfig config = {}) : config_(config) {}

  void OnSuccess(SteadyTime now);
  // Records a failure; returns true if the endpoint is now ejected. `refused`: the connection
  // was refused (nothing listens: eject at once). `may_eject`: MayEject() for the pool.
  bool OnFailure(SteadyTime now, bool refused, bool may_eject);

  bool Ejected(SteadyTime now) const { return now < ejected_until_; }
  // The ejection has ended and no result has come back since: send one request to find out.
  bool Probing(SteadyTime now) const { return probation_ && !Ejected(now); }
  int times_ejected() const { return times_ejected_; }

 private:
  void Eject(SteadyTime now);

  OutlierConfig config_;
  int consecutive_ = 0;
  int times_ejected_ = 0;
  bool probation_ = false;
  SteadyTime ejected_until_{};
};

}  // namespace hivemesh::routing
