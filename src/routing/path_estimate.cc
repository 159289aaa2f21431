#include "routing/path_estimate.h"

#include <algorithm>

namespace hivemesh::routing {
namespace {

constexpr double kAlpha = 0.2;

double Blend(double previous, double sample) {
  return previous > 0 ? previous + kAlpha * (sample - previous) : sample;
}

}  // namespace

void PathEstimate::Observe(Nanos network, size_t bytes) {
  const double ns = static_cast<double>(std::max<int64_t>(1, network.count()));
  if (bytes < kSmallBytes) {
    rtt_ns_ = Blend(rtt_ns_, ns);
    return;
  }
  // Only the time beyond one round trip carried the bytes; without a round trip measured yet,
  // a large exchange says nothing reliable about either.
  if (rtt_ns_ <= 0) return;
  const double transfer_ns = ns - rtt_ns_;
  if (transfer_ns <= 0) return;  // faster than the usual round trip: no information
  bandwidth_ = Blend(bandwidth_, static_cast<double>(bytes) / (transfer_ns * 1e-9));
}

}  // namespace hivemesh::routing
