// Whether a replica of a workload is an endpoint (docs/services.md, "Readiness"): a pure kernel,
// the times passed in.
//
// A replica enters after one successful check and leaves after `failure_threshold` failed
// checks in a row, or at once when its process is down. A check is the workload's
// readinessProbe.httpGet (a 2xx or 3xx answer), or, without a probe, whether its process runs.
//
// Flap damping: a replica that had left before and leaves again less than a minute after it
// entered flaps; it must then pass checks for a while before it enters again: twice the probe
// period the first time, doubling at each further flap, at most a minute. A minute of being
// ready forgets the flaps.
#pragma once

#include <chrono>
#include <optional>

#include "base/clock.h"

namespace hivemesh::services {

class Readiness {
 public:
  using Duration = std::chrono::milliseconds;
  static constexpr Duration kFlapWindow{60000};
  static constexpr Duration kMaxHold{60000};

  Readiness(Duration period, int failure_threshold)
      : period_(period), threshold_(failure_threshold < 1 ? 1 : failure_threshold) {}

  // A check's result at `now`.
  void Observe(bool ok, SteadyTime now);
  // The process is down (exited, stopped): not ready from now.
  void Down(SteadyTime now);

  bool ready() const { return ready_; }
  // How long checks must pass before the replica enters again (0: one success).
  Duration hold() const { return hold_; }

 private:
  void Leave(SteadyTime now);

  const Duration period_;
  const int threshold_;
  bool ready_ = false;
  int failures_ = 0;
  std::optional<SteadyTime> passing_since_;  // the first success of the current run of them
  bool left_before_ = false;
  SteadyTime entered_{};
  Duration hold_{0};
};

}  // namespace hivemesh::services
