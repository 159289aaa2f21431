#include "routing/decision.h"

#include <vector>

#include "base/strings.h"

namespace hivemesh::routing {

double PredictedNanos(const Candidate& c, size_t payload_bytes) {
  const double queue_wait = c.queue_depth * c.service_ns;
  if (c.local) return queue_wait + c.service_ns;
  const double transfer = c.bandwidth_bytes_per_s > 0
                              ? static_cast<double>(payload_bytes) / c.bandwidth_bytes_per_s * 1e9
                              : 0.0;
  return queue_wait + c.service_ns + c.rtt_ns + transfer;
}

Decision Decide(std::span<const Candidate> candidates, const RouteRequest& request,
                const RoutingPolicy& policy, std::mt19937_64& rng) {
  Decision d;
  if (candidates.empty()) {
    d.reason = absl::NotFoundError("no node in the mesh serves this model");
    return d;
  }
  const double budget = request.remaining ? static_cast<double>(request.remaining->count()) : -1.0;
  auto meets_deadline = [&](double predicted) { return budget < 0 || predicted <= budget; };

  // In local mode a node never offloads a model it hosts, even when it cannot take it right now.
  bool hosted_here = false;
  for (const Candidate& c : candidates) hosted_here = hosted_here || c.local;
  const bool mode_blocked = policy.mode == RoutingMode::kLocal && hosted_here;
  const bool offload = request.may_forward && !mode_blocked;

  int local = -1;
  double local_predicted = 0;
  std::vector<int> peers;
  bool any_ready = false, policy_blocked = false, deadline_blocked = false, hop_blocked = false;
  for (int i = 0; i < static_cast<int>(candidates.size()); ++i) {
    const Candidate& c = candidates[static_cast<size_t>(i)];
    if (!c.ready) continue;
    any_ready = true;
    const double predicted = PredictedNanos(c, request.payload_bytes);
    if (c.local) {
      if (meets_deadline(predicted)) {
        local = i;
        local_predicted = predicted;
      } else {
        deadline_blocked = true;
      }
      continue;
    }
    if (!request.may_forward) hop_blocked = true;
    if (c.ejected || !offload) continue;
    if (request.policy == DataPolicy::kLocalOnly ||
        (request.policy == DataPolicy::kZone &&
         (request.local_zone.empty() || c.zone != request.local_zone))) {
      policy_blocked = true;
      continue;
    }
    if (!meets_deadline(predicted)) {
      deadline_blocked = true;
      continue;
    }
    peers.push_back(i);
  }

  if (policy.mode == RoutingMode::kRandom && (local >= 0 || !peers.empty())) {
    std::uniform_int_distribution<size_t> pick(0, peers.size() - (local >= 0 ? 0 : 1));
    const size_t i = pick(rng);
    d.kind = i < peers.size() ? Decision::kForward : Decision::kLocal;
    d.index = i < peers.size() ? peers[i] : local;
    d.predicted_ns =
        PredictedNanos(candidates[static_cast<size_t>(d.index)], request.payload_bytes);
    return d;
  }

  // Power of two choices among the eligible peers, on peak-EWMA x (pending + 1).
  int peer = -1;
  if (!peers.empty()) {
    auto cost = [&](int i) {
      const Candidate& c = candidates[static_cast<size_t>(i)];
      const double latency =
          c.peak_ewma_ns > 0 ? c.peak_ewma_ns : PredictedNanos(c, request.payload_bytes);
      return latency * (c.pending + 1);
    };
    if (peers.size() == 1) {
      peer = peers[0];
    } else {
      std::uniform_int_distribution<size_t> pick(0, peers.size() - 1);
      const size_t a = pick(rng);
      size_t b = pick(rng);
      while (b == a) b = pick(rng);
      peer = cost(peers[a]) <= cost(peers[b]) ? peers[a] : peers[b];
    }
  }

  if (local >= 0) {
    const double peer_predicted =
        peer >= 0 ? PredictedNanos(candidates[static_cast<size_t>(peer)], request.payload_bytes)
                  : 0.0;
    if (peer < 0 || local_predicted <= peer_predicted * (1.0 + policy.local_margin) +
                                           static_cast<double>(policy.local_margin_abs.count())) {
      d.kind = Decision::kLocal;
      d.index = local;
      d.predicted_ns = local_predicted;
      return d;
    }
  }
  if (peer >= 0) {
    d.kind = Decision::kForward;
    d.index = peer;
    d.predicted_ns = PredictedNanos(candidates[static_cast<size_t>(peer)], request.payload_bytes);
    return d;
  }
  if (!any_ready) {
    d.reason = absl::UnavailableError("no node hosting this model is ready");
  } else if (deadline_blocked) {
    d.reason =
        absl::DeadlineExceededError("no node can serve this model before the request's deadline");
  } else if (mode_blocked && local < 0) {
    d.reason = absl::UnavailableError(
        "this node serves the models it hosts itself (routing mode local) and cannot now");
  } else if (hop_blocked && local < 0) {
    d.reason = absl::UnavailableError(
        "the request reached its hop limit on a node that cannot serve the model");
  } else if (policy_blocked) {
    d.reason = absl::UnavailableError(
        request.policy == DataPolicy::kLocalOnly
            ? "this node cannot serve the model and its data policy (local-only) forbids offload"
            : "no node in this zone can serve the model and its data policy (zone) forbids "
              "sending the data elsewhere");
  } else {
    d.reason = absl::UnavailableError("every node hosting this model is unavailable");
  }
  return d;
}

}  // namespace hivemesh::routing
