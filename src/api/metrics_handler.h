// The node's metrics: `GET /metrics` in the Prometheus text format 0.0.4, and the metrics the
// API declares (docs/telemetry.md lists them all):
//
//  - InferenceMetrics: every inference request this node answers, by model, route and outcome,
//    and its duration; updated when the answer is ready (api/inference_observer.h).
//  - Collected at scrape time from statistics that exist anyway: per model version queue depth,
//    in flight, batch sizes and shed requests (serving/model_stats.h); members by state, gossip
//    traffic and drops (GossipNode::Stats); routing decisions, retries and per-peer attempts,
//    failures and ejections (Forwarder::Stats); build info.
//
// Thread safety: Handle() and InferenceMetrics::Record() may be called from any thread. What the
// collectors read (repository, gossip node, forwarder) must outlive every scrape.
#pragma once

#include <memory>
#include <string_view>

#include "routing/dispatcher.h"
#include "telemetry/metrics.h"
#include "transport/http_server.h"

namespace hivemesh {

class ModelInsights;

class ModelRepository;
class MemoryBudget;
class Rejections;
namespace bus {
class LocalBus;
class MeshDelivery;
class MqttBridge;
}  // namespace bus
namespace membership {
class GossipNode;
}
namespace routing {
class Forwarder;
}

// Where an inference was served, as the `route` label says (routing::InferenceRoute):
//   local         received from a client and answered here without a peer (served here, or
//                 refused here: bad input, no node hosts the model, ...)
//   offloaded     received from a client and sent to a peer (the answer is the peer's, or the
//                 error of the last peer tried)
//   forwarded_in  received from a peer (it carries Hivemesh-Hops) and answered here
using routing::InferenceRoute;

// The `outcome` label of an answer's HTTP status: success (200), unavailable (503), timeout
// (504), client_error (other 4xx), error (anything else).
std::string_view OutcomeFor(int http_status);

// Who serves the model a request named, which decides its `model` label (routing::ModelKnown):
//   kHere     this node (or it has the model but could not serve it): the name, in a series
//             that is always kept (a node's models are bounded by its repository)
//   kMesh     a peer, to which the request was sent: the name, in a series of the family's
//             bounded set (kMaxSeriesPerFamily; beyond it, `_overflow`)
//   kUnknown  nobody: kUnknownModelLabel, so that names clients make up cannot make series
using routing::ModelKnown;
inline constexpr std::string_view kUnknownModelLabel = "_unknown";

class InferenceMetrics {
 public:
  // Declares hivemesh_inference_requests_total and hivemesh_inference_request_duration_seconds.
  explicit InferenceMetrics(telemetry::Registry& registry);

  // One answered request; `seconds` from its headers being read to its answer being ready.
  void Record(std::string_view model, ModelKnown known, InferenceRoute route, int http_status,
              double seconds);

 private:
  telemetry::Family<telemetry::Counter>& requests_;
  telemetry::Family<telemetry::Histogram>& duration_;
};

// Per model version gauges and counters read from each runtime's ModelStats.
void RegisterServingMetrics(telemetry::Registry& registry, const ModelRepository* repository);
// hivemesh_rejected_total{reason}: what the node refused or cut off (base/rejections.h).
void RegisterRejectionMetrics(telemetry::Registry& registry,
                              std::shared_ptr<const Rejections> rejections);
// hivemesh_memory_budget_bytes (the limit) and hivemesh_memory_budget_used_bytes: the node's
// memory budget for requests in flight (base/memory_budget.h).
void RegisterMemoryBudgetMetrics(telemetry::Registry& registry,
                                 std::shared_ptr<const MemoryBudget> budget);
// Membership, gossip and (if `forwarder` is not null) forwarding metrics.
// The insight bus (docs/insights.md): what this node published, handed to its subscribers, sent
// to other nodes and to the MQTT broker, and dropped (by reason), and the models' insight rules
// that failed. Any may be null (no metric of it then).
void RegisterInsightMetrics(telemetry::Registry& registry, std::shared_ptr<const bus::LocalBus> bus,
                            const bus::MeshDelivery* delivery, const bus::MqttBridge* mqtt,
                            const ModelInsights* rules);
void RegisterMeshMetrics(telemetry::Registry& registry, const membership::GossipNode* gossip,
                         const routing::Forwarder* forwarder);
// hivemesh_build_info{version,node} 1.
void RegisterBuildInfo(telemetry::Registry& registry, std::string_view version,
                       std::string_view node);

class MetricsHandler {
 public:
  explicit MetricsHandler(const telemetry::Registry* registry) : registry_(registry) {}
  // True if the path is /metrics (and it has answered).
  bool Handle(const HttpRequest& request, HttpResponder& respond);

 private:
  const telemetry::Registry* const registry_;
};

}  // namespace hivemesh
