// Where a request runs: a pure function over the candidates for one model (Decide), composed of
// small policies that each have their own contract below:
//
//   1. Eligibility: which candidates may take the request at all (ready; the local node if it
//      would meet the deadline; peers that are not ejected, that the hop limit, the routing mode
//      and the data policy allow and that would meet the deadline), and what blocked the others.
//   2. kRandom mode: a uniform pick among the eligible nodes.
//   3. Power of two choices among the eligible peers, on peak-EWMA x (pending + 1). When no peer
//      is eligible but ejected ones otherwise would be, and the local node cannot serve, among
//      those (panic: a 503 while a host may be healthy is the worse answer).
//   4. Local preference: the local node serves while its prediction is within a margin of the
//      chosen peer's.
//   5. No candidate left: an error saying what blocked them (RejectReason).
//
// Predicted completion time for a candidate = queue wait + the model's service time there
// (EWMA) + round-trip time + payload bytes / link bandwidth; the local node has no network terms.
//
// Thread safety: pure functions; the random source is the caller's.
#pragma once

#include <optional>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

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
  // Its ejection just ended, or it just restarted, and nothing of it is known since: the next
  // request that goes to a peer goes to it, to find out (its estimates say nothing yet).
  bool probe = false;
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

// The decision for one request among `candidates` (at most one of them local). Draws from `rng`
// only in kRandom mode and when two or more peers are eligible.
Decision Decide(std::span<const Candidate> candidates, const RouteRequest& request,
                const RoutingPolicy& policy, std::mt19937_64& rng);

// --- The policies Decide is made of ---

// Which candidates may take a request, and why the others may not.
struct Eligibility {
  int local = -1;  // index of the local candidate if it is ready and meets the deadline
  double local_predicted = 0;
  std::vector<int> peers;  // indices of the eligible peers, ascending
  // Peers that would be eligible but are ejected: tried only when nothing else can take the
  // request (panic).
  std::vector<int> ejected_peers;
  bool any_ready = false;  // some candidate is ready
  // Something blocked a ready candidate: the routing mode (a hosted model in kLocal mode), the
  // data policy, the deadline, the hop limit.
  bool mode_blocked = false, policy_blocked = false, deadline_blocked = false, hop_blocked = false;
};
Eligibility FindEligible(std::span<const Candidate> candidates, const RouteRequest& request,
                         RoutingMode mode);

// True if a peer with data policy `policy` may receive the request's data: kMesh always, kZone
// only a peer in the (non-empty) local zone, kLocalOnly never.
bool PolicyAllows(DataPolicy policy, const std::string& local_zone, const Candidate& peer);

// The power-of-two-choices cost of a peer: its peak-EWMA latency (the prediction until it has
// one) x (requests in flight to it + 1). Lower is better.
double P2CCost(const Candidate& c, size_t payload_bytes);

// Power of two choices over `costs` (one per eligible peer): with one entry, 0; otherwise two
// distinct indices drawn uniformly from `rng` (P2CSample), and the cheaper of the two (P2CPick).
// Deterministic for a given state of `rng`. REQUIRES: !costs.empty().
size_t PowerOfTwoChoices(std::span<const double> costs, std::mt19937_64& rng);
// Two distinct indices in [0, n), drawn uniformly. REQUIRES: n >= 2.
std::pair<size_t, size_t> P2CSample(size_t n, std::mt19937_64& rng);
// Of `a` and `b`, the index with the lower cost; `a` on a tie. REQUIRES: both index `costs`.
size_t P2CPick(std::span<const double> costs, size_t a, size_t b);

// True if the local node should serve: its prediction is within `policy`'s margin of the chosen
// peer's (relative, then absolute).
bool PreferLocal(double local_predicted, double peer_predicted, const RoutingPolicy& policy);

// Why no candidate could take the request (kReject's reason), from what blocked them, most
// telling first: none ready (UNAVAILABLE), the deadline (DEADLINE_EXCEEDED), the routing mode,
// the hop limit, the data policy (UNAVAILABLE saying which), else every node unavailable.
absl::Status RejectReason(const Eligibility& e, DataPolicy policy);

}  // namespace hivemesh::routing
