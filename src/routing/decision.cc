#include "routing/decision.h"

#include "absl/container/inlined_vector.h"

namespace hivemesh::routing {

double PredictedNanos(const Candidate& c, size_t payload_bytes) {
  const double queue_wait = c.queue_depth * c.service_ns;
  if (c.local) return queue_wait + c.service_ns;
  const double transfer = c.bandwidth_bytes_per_s > 0
                              ? static_cast<double>(payload_bytes) / c.bandwidth_bytes_per_s * 1e9
                              : 0.0;
  return queue_wait + c.service_ns + c.rtt_ns + transfer;
}

bool PolicyAllows(DataPolicy policy, const std::string& local_zone, const Candidate& peer) {
  if (policy == DataPolicy::kLocalOnly) return false;
  if (policy == DataPolicy::kZone) return !local_zone.empty() && peer.zone == local_zone;
  return true;
}

Eligibility FindEligible(std::span<const Candidate> candidates, const RouteRequest& request,
                         RoutingMode mode) {
  Eligibility e;
  const double budget = request.remaining ? static_cast<double>(request.remaining->count()) : -1.0;
  auto meets_deadline = [&](double predicted) { return budget < 0 || predicted <= budget; };

  // In local mode a node never offloads a model it hosts, even when it cannot take it right now.
  bool hosted_here = false;
  for (const Candidate& c : candidates) hosted_here = hosted_here || c.local;
  e.mode_blocked = mode == RoutingMode::kLocal && hosted_here;
  const bool offload = request.may_forward && !e.mode_blocked;

  for (int i = 0; i < static_cast<int>(candidates.size()); ++i) {
    const Candidate& c = candidates[static_cast<size_t>(i)];
    if (!c.ready) continue;
    e.any_ready = true;
    const double predicted = PredictedNanos(c, request.payload_bytes);
    if (c.local) {
      if (meets_deadline(predicted)) {
        e.local = i;
        e.local_predicted = predicted;
      } else {
        e.deadline_blocked = true;
      }
      continue;
    }
    if (!request.may_forward) e.hop_blocked = true;
    if (!offload) continue;
    if (!PolicyAllows(request.policy, request.local_zone, c)) {
      e.policy_blocked = true;
      continue;
    }
    if (!meets_deadline(predicted)) {
      e.deadline_blocked = true;
      continue;
    }
    (c.ejected ? e.ejected_peers : e.peers).push_back(i);
  }
  return e;
}

double P2CCost(const Candidate& c, size_t payload_bytes) {
  const double latency = c.peak_ewma_ns > 0 ? c.peak_ewma_ns : PredictedNanos(c, payload_bytes);
  return latency * (c.pending + 1);
}

std::pair<size_t, size_t> P2CSample(size_t n, std::mt19937_64& rng) {
  std::uniform_int_distribution<size_t> pick(0, n - 1);
  const size_t a = pick(rng);
  size_t b = pick(rng);
  while (b == a) b = pick(rng);
  return {a, b};
}

size_t P2CPick(std::span<const double> costs, size_t a, size_t b) {
  return costs[a] <= costs[b] ? a : b;
}

size_t PowerOfTwoChoices(std::span<const double> costs, std::mt19937_64& rng) {
  if (costs.size() == 1) return 0;
  const auto [a, b] = P2CSample(costs.size(), rng);
  return P2CPick(costs, a, b);
}

bool PreferLocal(double local_predicted, double peer_predicted, const RoutingPolicy& policy) {
  return local_predicted <= peer_predicted * (1.0 + policy.local_margin) +
                                static_cast<double>(policy.local_margin_abs.count());
}

absl::Status RejectReason(const Eligibility& e, DataPolicy policy) {
  if (!e.any_ready) return absl::UnavailableError("no node hosting this model is ready");
  if (e.deadline_blocked) {
    return absl::DeadlineExceededError(
        "no node can serve this model before the request's deadline");
  }
  if (e.mode_blocked && e.local < 0) {
    return absl::UnavailableError(
        "this node serves the models it hosts itself (routing mode local) and cannot now");
  }
  if (e.hop_blocked && e.local < 0) {
    return absl::UnavailableError(
        "the request reached its hop limit on a node that cannot serve the model");
  }
  if (e.policy_blocked) {
    return absl::UnavailableError(
        policy == DataPolicy::kLocalOnly
            ? "this node cannot serve the model and its data policy (local-only) forbids offload"
            : "no node in this zone can serve the model and its data policy (zone) forbids "
              "sending the data elsewhere");
  }
  return absl::UnavailableError("every node hosting this model is unavailable");
}

namespace {

Decision Chosen(Decision::Kind kind, int index, double predicted_ns) {
  Decision d;
  d.kind = kind;
  d.index = index;
  d.predicted_ns = predicted_ns;
  return d;
}

}  // namespace

Decision Decide(std::span<const Candidate> candidates, const RouteRequest& request,
                const RoutingPolicy& policy, std::mt19937_64& rng) {
  if (candidates.empty()) {
    Decision d;
    d.reason = absl::NotFoundError("no node in the mesh serves this model");
    return d;
  }
  const Eligibility e = FindEligible(candidates, request, policy.mode);
  auto predicted = [&](int i) {
    return PredictedNanos(candidates[static_cast<size_t>(i)], request.payload_bytes);
  };

  if (policy.mode == RoutingMode::kRandom && (e.local >= 0 || !e.peers.empty())) {
    // Uniform over the eligible peers and the local node (last).
    std::uniform_int_distribution<size_t> pick(0, e.peers.size() - (e.local >= 0 ? 0 : 1));
    const size_t i = pick(rng);
    if (i < e.peers.size()) return Chosen(Decision::kForward, e.peers[i], predicted(e.peers[i]));
    return Chosen(Decision::kLocal, e.local, predicted(e.local));
  }

  // Panic (Envoy's panic threshold): when every peer that could take the request is ejected
  // and this node cannot, the ejected ones are tried rather than none; an ejection may be wrong
  // (soft failures), and a 503 while a host may be healthy is the worse answer.
  const std::vector<int>& pool = !e.peers.empty() || e.local >= 0 ? e.peers : e.ejected_peers;
  int peer = -1;
  for (int i : pool) {
    if (candidates[static_cast<size_t>(i)].probe) {
      peer = i;
      break;
    }
  }
  if (peer < 0 && !pool.empty()) {
    absl::InlinedVector<double, 8> costs;  // no allocation for a mesh of a few peers
    for (int i : pool) {
      costs.push_back(P2CCost(candidates[static_cast<size_t>(i)], request.payload_bytes));
    }
    peer = pool[PowerOfTwoChoices(costs, rng)];
  }
  if (e.local >= 0 && (peer < 0 || PreferLocal(e.local_predicted, predicted(peer), policy))) {
    return Chosen(Decision::kLocal, e.local, e.local_predicted);
  }
  if (peer >= 0) return Chosen(Decision::kForward, peer, predicted(peer));
  Decision d;
  d.reason = RejectReason(e, request.policy);
  return d;
}

}  // namespace hivemesh::routing
