// PathEstimate: what the network between this node and one peer costs, learnt from forwarded
// requests. Each sample is a request's end-to-end time minus the time the peer says it spent on
// it (so queueing and compute at the peer are not counted), with the bytes that crossed the
// link both ways. Small exchanges estimate the round-trip time; large ones, once the round trip
// is known, the bandwidth. Both are exponentially weighted (alpha 0.2) and start from defaults
// until observed. Pure: no clock, no I/O.
#pragma once

#include <cstddef>

#include "base/clock.h"

namespace hivemesh::routing {

class PathEstimate {
 public:
  static constexpr size_t kSmallBytes = 16 * 1024;  // below this, transfer time is negligible
  static constexpr double kDefaultRttNs = 200e3;    // a LAN round trip, until measured
  static constexpr double kDefaultBandwidth = 1e9;  // bytes/s, until measured (optimistic)

  // `network`: end-to-end time minus the peer's own time; `bytes`: request plus response.
  void Observe(Nanos network, size_t bytes);

  double rtt_ns() const { return rtt_ns_ > 0 ? rtt_ns_ : kDefaultRttNs; }
  double bandwidth_bytes_per_s() const { return bandwidth_ > 0 ? bandwidth_ : kDefaultBandwidth; }
  bool rtt_known() const { return rtt_ns_ > 0; }
  bool bandwidth_known() const { return bandwidth_ > 0; }

 private:
  double rtt_ns_ = 0;
  double bandwidth_ = 0;
};

}  // namespace hivemesh::routing
