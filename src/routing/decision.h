// Where a request runs: a pure function over the candidates for one model.
//
// Predicted completion time for a candidate = queue wait + the model's service time there
// (EWMA) + round-trip time + payload bytes / link bandwidth; the local node has no network terms.
// The local node serves when it can and its prediction is within a margin of the best peer's.
// Otherwise, among peers that may receive the data and would meet the deadline, power of two
// choices picks the lower of peak-EWMA x (pending + 1). No candidate left: an explicit error.
#pragma once

#include <optional>
#include <random>
#include <span>
#include <string>

#include "absl/status/status.h"
#include "base/clock.h"
#include "serving/data_policy.h"

namespace hivemesh::routing {

using ::hivemesh::DataPolicy;  // a model's data policy: where its raw inputs may go

struct Candidate {
  std::string node;
  bool local = false;
  std::string zone;  // the node's `zone` label; empty if none
  bool ready = true;
  bool ejected = false;
  // Load as last known (local: live; peers: gossip or the latest forwarded response).
  double queue_depth = 0;
  double service_ns = 0;  // EWMA of the model's service time on that node
  // The path to it (peers only).
  double rtt_ns = 0;
  double bandwidth_bytes_per_s = 1e9;
  double peak_ewma_ns = 0;  // observed end-to-end latency of requests forwarded to it
  int pending = 0;          // requests this node has in flight to it
};

struct RouteRequest {
  size_t payload_bytes = 0;
  std::optional<Nanos> remaining;  // time left before the deadline
  DataPolicy policy = DataPolicy::kMesh;
  std::string local_zone;
  bool may_forward = true;  // false once the hop limit is reached
};

// kHivemesh: the load-aware decision above. kLocal: a node serves the models it hosts (a local
// candidate, ready or not) and forwards only those it does not (no offloading). kRandom: uniform
// among the eligible nodes.
enum class RoutingMode { kHivemesh, kLocal, kRandom };

struct RoutingPolicy {
  RoutingMode mode = RoutingMode::kHivemesh;
  // Local serves if its prediction <= best peer's x (1 + local_margin) + local_margin_abs.
  double local_margin = 0.25;
  Nanos local_margin_abs{std::chrono::milliseconds(2)};
};

struct Decision {
  enum Kind { kLocal, kForward, kReject } kind = kReject;
  int index = -1;           // into the candidates, for kLocal and kForward
  double predicted_ns = 0;  // of the chosen candidate
  absl::Status reason;      // for kReject: NOT_FOUND, DEADLINE_EXCEEDED or UNAVAILABLE
};

// Predicted completion time of `c` for a request of `payload_bytes`, in nanoseconds.
double PredictedNanos(const Candidate& c, size_t payload_bytes);

Decision Decide(std::span<const Candidate> candidates, const RouteRequest& request,
                const RoutingPolicy& policy, std::mt19937_64& rng);

}  // namespace hivemesh::routing
