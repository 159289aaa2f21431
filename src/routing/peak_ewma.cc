#include "routing/peak_ewma.h"

#include <algorithm>
#include <cmath>

namespace hivemesh::routing {

void PeakEwma::Observe(Nanos rtt, SteadyTime now) {
  const double sample = static_cast<double>(rtt.count());
  const double elapsed = static_cast<double>(std::max<int64_t>(0, (now - stamp_).count()));
  stamp_ = std::max(stamp_, now);
  if (!observed_ || sample > cost_ns_) {
    observed_ = true;
    cost_ns_ = sample;  // peaks count at once
    return;
  }
  const double w = std::exp(-elapsed / tau_ns_);
  cost_ns_ = cost_ns_ * w + sample * (1.0 - w);
}

double PeakEwma::Get(SteadyTime now) const {
  const double elapsed = static_cast<double>(std::max<int64_t>(0, (now - stamp_).count()));
  return cost_ns_ * std::exp(-elapsed / tau_ns_);
}

}  // namespace hivemesh::routing
