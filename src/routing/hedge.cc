#include "routing/hedge.h"

#include <algorithm>
#include <cmath>

namespace hivemesh::routing {

double ExpectedTryNanos(double predicted_ns, double peak_ewma_ns) {
  return std::max({predicted_ns, peak_ewma_ns, 0.0});
}

std::optional<Nanos> HedgeAfter(double expected_ns, std::optional<Nanos> remaining,
                                const HedgeConfig& config) {
  const double scaled = std::max(0.0, expected_ns) * std::max(0.0, config.multiplier);
  // Clamp in double first: a huge expectation must not overflow the integer count.
  const double bounded =
      std::clamp(scaled, static_cast<double>(config.floor.count()),
                 static_cast<double>(std::max(config.floor, config.cap).count()));
  const Nanos after(static_cast<Nanos::rep>(std::llround(bounded)));
  if (remaining && after >= *remaining) return std::nullopt;
  return after;
}

SteadyTime RoundUpToTick(SteadyTime at, Nanos tick) {
  if (tick <= Nanos(0)) return at;
  const Nanos since = std::chrono::duration_cast<Nanos>(at.time_since_epoch());
  Nanos rest = since % tick;
  if (rest < Nanos(0)) rest += tick;  // before the epoch: % keeps the sign
  if (rest == Nanos(0)) return at;
  return at + (tick - rest);
}

}  // namespace hivemesh::routing
