// Outlier detection for one endpoint, Envoy-style: `consecutive_failures` gateway failures in a
// row, or one reset connection, eject it for base_ejection x times ejected (capped). A refused
// connection (nothing listens: the process is gone, or restarting) ejects it at once for
// `refused_ejection` only, however often: a restarted peer is probed within that time and gets
// traffic again as soon as it listens. When the ejection ends the endpoint is probed: its next
// result either restores it or ejects it again. Pure: time is a parameter. Not thread-safe: the
// owner serializes access.
#pragma once

#include <chrono>
#include <cstdint>

#include "base/clock.h"

namespace hivemesh::routing {

struct OutlierConfig {
  int consecutive_failures = 5;  // Envoy consecutive_5xx / gateway failures
  std::chrono::milliseconds base_ejection{30000};
  std::chrono::milliseconds max_ejection{300000};
  // Of all endpoints, at least one, ejected at a time for soft failures (timeouts, 503s); a
  // refused or reset connection ejects whatever the cap (the caller passes may_eject = true).
  double max_ejection_percent = 10.0;
  std::chrono::milliseconds refused_ejection{1000};
};

enum class FailureKind : uint8_t {
  kSoft,     // a timeout, a late try, a 503: counts towards consecutive_failures
  kReset,    // the connection failed or was reset: ejects at once, for growing times
  kRefused,  // the connection was refused: ejects at once, for refused_ejection
};

// True if one more endpoint may be ejected when `ejected` of `total` already are.
bool MayEject(int ejected, int total, const OutlierConfig& config);

class OutlierState {
 public:
  explicit OutlierState(OutlierConfig config = {}) : config_(config) {}

  void OnSuccess(SteadyTime now);
  // Records a failure; returns true if the endpoint is now ejected. `may_eject`: MayEject() for
  // the pool (the caller passes true for kReset and kRefused, which eject whatever the cap).
  bool OnFailure(SteadyTime now, FailureKind kind, bool may_eject);

  // The endpoint is new to what this node knew (a restart): its next result decides, as after
  // an ejection, but it is not ejected now.
  void Probe() { probation_ = true; }
  bool Ejected(SteadyTime now) const { return now < ejected_until_; }
  // The ejection has ended and no result has come back since: send one request to find out.
  bool Probing(SteadyTime now) const { return probation_ && !Ejected(now); }
  int times_ejected() const { return times_ejected_; }

 private:
  void Eject(SteadyTime now, FailureKind kind);

  OutlierConfig config_;
  int consecutive_ = 0;
  int times_ejected_ = 0;
  int growing_ = 0;  // ejections for other than a refused connection: the time's multiplier
  bool probation_ = false;
  SteadyTime ejected_until_{};
};

}  // namespace hivemesh::routing
