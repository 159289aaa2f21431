#include "api/metrics_handler.h"

#include <algorithm>

#include "api/model_insights.h"
#include "base/memory_budget.h"
#include "base/rejections.h"
#include "base/strings.h"
#include "bus/local_bus.h"
#include "bus/mesh_delivery.h"
#include "bus/mqtt_bridge.h"
#include "codec/infer_codec.h"
#include "membership/gossip_node.h"
#include "routing/forwarder.h"
#include "serving/model_repository.h"
#include "telemetry/prometheus_text.h"

namespace hivemesh {
namespace {

using telemetry::HistogramSnapshot;
using telemetry::MetricType;
using telemetry::Registry;
using telemetry::SampleSink;

double Seconds(uint64_t ns) { return static_cast<double>(ns) / 1e9; }

// Emits `value(stats)` for every ready model version.
void ForEachModel(SampleSink& sink, const ModelRepository* repository,
                  double (*value)(const ModelRuntime&)) {
  for (const RuntimePtr& rt : repository->Runtimes()) {
    sink.Add({rt->config().name, rt->version()}, value(*rt));
  }
}

HistogramSnapshot BatchSizes(const BatchSizeStat& b) {
  HistogramSnapshot h;
  uint64_t running = 0;
  for (int i = 0; i < BatchSizeStat::kBuckets - 1; ++i) {
    running += b.counts[static_cast<size_t>(i)].load(std::memory_order_relaxed);
    h.bounds.push_back(static_cast<double>(BatchSizeStat::UpperBound(i)));
    h.cumulative.push_back(running);
  }
  h.count = running + b.counts[BatchSizeStat::kBuckets - 1].load(std::memory_order_relaxed);
  h.sum = static_cast<double>(b.sum.load(std::memory_order_relaxed));
  return h;
}

}  // namespace

std::string_view OutcomeFor(int http_status) {
  if (http_status == 200) return "success";
  if (http_status == 503) return "unavailable";
  if (http_status == 504) return "timeout";
  if (http_status >= 400 && http_status < 500) return "client_error";
  return "error";
}

InferenceMetrics::InferenceMetrics(Registry& registry)
    : requests_(registry.AddCounterFamily(
          "hivemesh_inference_requests_total",
          "Inference requests answered by this node, by model (_unknown: one neither this node "
          "nor a peer serves), route (local: from a client, answered here; offloaded: from a "
          "client, sent to a peer; forwarded_in: from a peer, answered here) and outcome "
          "(success, client_error, unavailable, timeout, error).",
          {"model", "route", "outcome"})),
      duration_(registry.AddHistogramFamily(
          "hivemesh_inference_request_duration_seconds",
          "Time from an inference request's headers being read at this node to its answer being "
          "ready, by model and route.",
          {"model", "route"}, telemetry::LatencyBuckets())) {}

void InferenceMetrics::Record(std::string_view model, ModelKnown known, InferenceRoute route,
                              int http_status, double seconds) {
  const std::string_view r = routing::RouteName(route);
  if (known == ModelKnown::kHere) {
    requests_.WithKnownLabels({model, r, OutcomeFor(http_status)}).Increment();
    duration_.WithKnownLabels({model, r}).Observe(seconds);
    return;
  }
  if (known == ModelKnown::kUnknown) model = kUnknownModelLabel;
  requests_.WithLabels({model, r, OutcomeFor(http_status)}).Increment();
  duration_.WithLabels({model, r}).Observe(seconds);
}

void RegisterServingMetrics(Registry& registry, const ModelRepository* repository) {
  const std::vector<std::string> labels = {"model", "version"};
  registry.AddCollector("hivemesh_model_queue_depth",
                        "Requests waiting in the model version's queue.", MetricType::kGauge,
                        labels, [repository](SampleSink& sink) {
                          ForEachModel(sink, repository, [](const ModelRuntime& rt) {
                            return static_cast<double>(rt.stats().queue_depth.load());
                          });
                        });
  registry.AddCollector("hivemesh_model_in_flight",
                        "Requests being computed by the model version's workers.",
                        MetricType::kGauge, labels, [repository](SampleSink& sink) {
                          ForEachModel(sink, repository, [](const ModelRuntime& rt) {
                            return static_cast<double>(rt.stats().in_flight.load());
                          });
                        });
  registry.AddCollector("hivemesh_model_instances", "Worker instances of the model version.",
                        MetricType::kGauge, labels, [repository](SampleSink& sink) {
                          ForEachModel(sink, repository, [](const ModelRuntime& rt) {
                            return static_cast<double>(rt.config().instances);
                          });
                        });
  registry.AddCollector(
      "hivemesh_model_batch_size",
      "Requests per backend execution of the model version (its _count is the executions).",
      MetricType::kHistogram, labels, [repository](SampleSink& sink) {
        for (const RuntimePtr& rt : repository->Runtimes()) {
          sink.AddHistogram({rt->config().name, rt->version()}, BatchSizes(rt->stats().batch_size));
        }
      });
  registry.AddCollector("hivemesh_model_queue_wait_seconds_total",
                        "Time requests spent waiting in the model version's queue.",
                        MetricType::kCounter, labels, [repository](SampleSink& sink) {
                          ForEachModel(sink, repository, [](const ModelRuntime& rt) {
                            return Seconds(rt.stats().queue.ns.load());
                          });
                        });
  registry.AddCollector("hivemesh_model_compute_seconds_total",
                        "Time the model version's backend spent executing.", MetricType::kCounter,
                        labels, [repository](SampleSink& sink) {
                          ForEachModel(sink, repository, [](const ModelRuntime& rt) {
                            return Seconds(rt.stats().compute_infer.ns.load());
                          });
                        });
  registry.AddCollector(
      "hivemesh_model_rejected_requests_total",
      "Requests the model version refused or dropped without computing them, by reason "
      "(queue_full: shed at admission; deadline: the deadline passed before or while queued; "
      "cancelled: its sender cancelled it while queued).",
      MetricType::kCounter, {"model", "version", "reason"}, [repository](SampleSink& sink) {
        for (const RuntimePtr& rt : repository->Runtimes()) {
          const ModelStats& s = rt->stats();
          sink.Add({rt->config().name, rt->version(), "queue_full"},
                   static_cast<double>(s.rejected_queue_full.load()));
          sink.Add({rt->config().name, rt->version(), "deadline"},
                   static_cast<double>(s.expired_in_queue.load()));
          sink.Add({rt->config().name, rt->version(), "cancelled"},
                   static_cast<double>(s.cancelled_in_queue.load()));
        }
      });
}

void RegisterRejectionMetrics(Registry& registry, std::shared_ptr<const Rejections> rejections) {
  registry.AddCollector(
      "hivemesh_rejected_total",
      "Requests and connections this node refused or cut off because they went over a limit or "
      "looked hostile, by reason (docs/security.md lists the reasons).",
      MetricType::kCounter, {"reason"}, [rejections](SampleSink& sink) {
        for (size_t i = 0; i < static_cast<size_t>(Rejection::kCount); ++i) {
          const auto r = static_cast<Rejection>(i);
          sink.Add({RejectionName(r)}, static_cast<double>(rejections->count(r)));
        }
      });
}

void RegisterInsightMetrics(Registry& registry, std::shared_ptr<const bus::LocalBus> bus,
                            const bus::MeshDelivery* delivery, const bus::MqttBridge* mqtt,
                            const ModelInsights* rules) {
  if (bus != nullptr) {
    registry.AddCollector("hivemesh_insights_published_total", "Insights published at this node.",
                          MetricType::kCounter, {}, [bus](SampleSink& sink) {
                            sink.Add({}, static_cast<double>(bus->stats().published));
                          });
    registry.AddCollector(
        "hivemesh_insights_delivered_total",
        "Insights handed to this node's subscribers (published here or received from another "
        "node), one per subscriber that took it.",
        MetricType::kCounter, {},
        [bus](SampleSink& sink) { sink.Add({}, static_cast<double>(bus->stats().delivered)); });
    registry.AddCollector(
        "hivemesh_insight_subscribers", "Subscribers to this node's insight streams now.",
        MetricType::kGauge, {},
        [bus](SampleSink& sink) { sink.Add({}, static_cast<double>(bus->stats().subscribers)); });
  }
  if (delivery != nullptr) {
    registry.AddCollector(
        "hivemesh_insights_sent_total",
        "Insights published here that another node took (one per node that wanted it).",
        MetricType::kCounter, {}, [delivery](SampleSink& sink) {
          sink.Add({}, static_cast<double>(delivery->stats().sent));
        });
    registry.AddCollector(
        "hivemesh_insights_send_failures_total",
        "Batches of insights another node did not take, sent again after a pause.",
        MetricType::kCounter, {}, [delivery](SampleSink& sink) {
          sink.Add({}, static_cast<double>(delivery->stats().failures));
        });
    registry.AddCollector("hivemesh_insights_queued",
                          "Insights waiting to be sent to other nodes now.", MetricType::kGauge, {},
                          [delivery](SampleSink& sink) {
                            sink.Add({}, static_cast<double>(delivery->stats().queued));
                          });
  }
  if (mqtt != nullptr) {
    registry.AddCollector(
        "hivemesh_insights_mqtt_published_total",
        "Insights the MQTT broker acknowledged (PUBACK), each deleted from the outbox then.",
        MetricType::kCounter, {},
        [mqtt](SampleSink& sink) { sink.Add({}, static_cast<double>(mqtt->stats().published)); });
    registry.AddCollector(
        "hivemesh_insights_mqtt_waiting",
        "Insights in the outbox, not yet acknowledged by the broker.", MetricType::kGauge, {},
        [mqtt](SampleSink& sink) { sink.Add({}, static_cast<double>(mqtt->stats().waiting)); });
    registry.AddCollector("hivemesh_insights_mqtt_waiting_bytes",
                          "Bytes of the insights in the outbox.", MetricType::kGauge, {},
                          [mqtt](SampleSink& sink) {
                            sink.Add({}, static_cast<double>(mqtt->stats().waiting_bytes));
                          });
    registry.AddCollector(
        "hivemesh_insights_mqtt_connected", "1 while the MQTT broker is connected.",
        MetricType::kGauge, {},
        [mqtt](SampleSink& sink) { sink.Add({}, mqtt->stats().connected ? 1 : 0); });
  }
  registry.AddCollector(
      "hivemesh_insights_dropped_total",
      "Insights given up, by reason: subscriber (a subscriber's queue was full), peer (a node's "
      "queue was full, it refused a batch, or it left), outbox (the outbox for the MQTT broker "
      "was full: the oldest dropped), broker (the broker refused one).",
      MetricType::kCounter, {"reason"}, [bus, delivery, mqtt](SampleSink& sink) {
        sink.Add({"subscriber"}, bus != nullptr ? static_cast<double>(bus->stats().dropped) : 0);
        sink.Add({"peer"},
                 delivery != nullptr ? static_cast<double>(delivery->stats().dropped) : 0);
        const bus::MqttBridge::Stats m = mqtt != nullptr ? mqtt->stats() : bus::MqttBridge::Stats{};
        sink.Add({"outbox"}, static_cast<double>(m.dropped));
        sink.Add({"broker"}, static_cast<double>(m.refused));
      });
  if (rules != nullptr) {
    registry.AddCollector(
        "hivemesh_insights_rule_errors_total",
        "Insights a model's rules could not make or publish (an output missing from a result, "
        "more values than an insight carries, a topic the bus refused), by model.",
        MetricType::kCounter, {"model"}, [rules](SampleSink& sink) {
          for (const auto& [model, n] : rules->errors()) {
            sink.Add({model}, static_cast<double>(n));
          }
        });
  }
}

void RegisterMemoryBudgetMetrics(Registry& registry, std::shared_ptr<const MemoryBudget> budget) {
  registry.AddCollector(
      "hivemesh_memory_budget_bytes",
      "The node's memory budget for requests in flight (memory_budget_mb).", MetricType::kGauge, {},
      [budget](SampleSink& sink) { sink.Add({}, static_cast<double>(budget->limit())); });
  registry.AddCollector(
      "hivemesh_memory_budget_used_bytes",
      "Bytes of the memory budget held now by requests in flight (bodies, decoded tensors and "
      "images, answers being written).",
      MetricType::kGauge, {},
      [budget](SampleSink& sink) { sink.Add({}, static_cast<double>(budget->used())); });
}

void RegisterMeshMetrics(Registry& registry, const membership::GossipNode* gossip,
                         const routing::Forwarder* forwarder) {
  registry.AddCollector(
      "hivemesh_members", "Members of the mesh as this node sees them (itself included), by state.",
      MetricType::kGauge, {"state"}, [gossip](SampleSink& sink) {
        double count[4] = {};
        for (const membership::MemberInfo& m : gossip->Members()) {
          const auto s = static_cast<size_t>(m.state);
          if (s < 4) ++count[s];
        }
        for (size_t s = 0; s < 4; ++s) {
          sink.Add({membership::MemberStateName(static_cast<membership::MemberState>(s))},
                   count[s]);
        }
      });
  // One gossip counter read from GossipNode::Stats().
  auto gossip_counter = [&registry, gossip](std::string name, std::string help,
                                            uint64_t (*value)(const membership::GossipStats&)) {
    registry.AddCollector(std::move(name), std::move(help), MetricType::kCounter, {},
                          [gossip, value](SampleSink& sink) {
                            sink.Add({}, static_cast<double>(value(gossip->Stats())));
                          });
  };
  gossip_counter("hivemesh_gossip_packets_received_total",
                 "Gossip UDP datagrams received, dropped ones included.",
                 [](const membership::GossipStats& s) { return s.udp_packets_in; });
  gossip_counter("hivemesh_gossip_packets_sent_total", "Gossip UDP datagrams sent.",
                 [](const membership::GossipStats& s) { return s.udp_packets_out; });
  registry.AddCollector("hivemesh_gossip_bytes_received_total",
                        "Gossip bytes received on the wire (envelope included), by transport.",
                        MetricType::kCounter, {"transport"}, [gossip](SampleSink& sink) {
                          const membership::GossipStats s = gossip->Stats();
                          sink.Add({"udp"}, static_cast<double>(s.udp_bytes_in));
                          sink.Add({"tcp"}, static_cast<double>(s.tcp_bytes_in));
                        });
  registry.AddCollector("hivemesh_gossip_bytes_sent_total",
                        "Gossip bytes sent on the wire (envelope included), by transport.",
                        MetricType::kCounter, {"transport"}, [gossip](SampleSink& sink) {
                          const membership::GossipStats s = gossip->Stats();
                          sink.Add({"udp"}, static_cast<double>(s.udp_bytes_out));
                          sink.Add({"tcp"}, static_cast<double>(s.tcp_bytes_out));
                        });
  registry.AddCollector(
      "hivemesh_gossip_packets_dropped_total",
      "Gossip packets, TCP frames and TCP connections refused, by reason (membership/envelope.h "
      "DropReason: malformed, unauthenticated, replayed, stale, oversized, misdirected, "
      "bad_frame, frame_too_large, connection_limit, source_connection_limit, budget, timeout, "
      "accept_failed).",
      MetricType::kCounter, {"reason"}, [gossip](SampleSink& sink) {
        const membership::GossipStats s = gossip->Stats();
        for (size_t r = 0; r < membership::kDropReasonCount; ++r) {
          const auto reason = static_cast<membership::DropReason>(r);
          uint64_t n = s.drops.of(reason);
          if (reason == membership::DropReason::kMalformed) n += s.swim.malformed_in;
          sink.Add({membership::DropReasonName(reason)}, static_cast<double>(n));
        }
      });
  registry.AddCollector("hivemesh_gossip_tcp_connections",
                        "Gossip TCP connections being served now (gossip_max_connections).",
                        MetricType::kGauge, {}, [gossip](SampleSink& sink) {
                          sink.Add({}, static_cast<double>(gossip->Stats().tcp_connections));
                        });
  registry.AddCollector(
      "hivemesh_gossip_tcp_buffered_bytes",
      "Bytes of gossip TCP frames buffered now, all connections together (gossip_buffer_mb).",
      MetricType::kGauge, {}, [gossip](SampleSink& sink) {
        sink.Add({}, static_cast<double>(gossip->Stats().tcp_buffered_bytes));
      });
  registry.AddCollector(
      "hivemesh_gossip_claims_refused_total",
      "Members' claims (alive, leave) and accusations this node refused, by reason: "
      "bad_signature (unsigned or not verified), name_taken (a known name claimed by another "
      "key), over_budget (not checked: the signature-check budget was spent), table_full (a new "
      "name while the member table is full), accusation_ignored (of this node, at an "
      "incarnation it never signed), revoked (signed by a key the mesh revoked).",
      MetricType::kCounter, {"reason"}, [gossip](SampleSink& sink) {
        const membership::SwimStats s = gossip->Stats().swim;
        sink.Add({"bad_signature"}, static_cast<double>(s.claims_bad_signature));
        sink.Add({"name_taken"}, static_cast<double>(s.claims_name_taken));
        sink.Add({"over_budget"}, static_cast<double>(s.claims_over_budget));
        sink.Add({"table_full"}, static_cast<double>(s.members_refused));
        sink.Add({"accusation_ignored"}, static_cast<double>(s.accusations_ignored));
        sink.Add({"revoked"}, static_cast<double>(s.claims_revoked));
      });
  gossip_counter("hivemesh_gossip_probes_total", "SWIM probes this node started.",
                 [](const membership::GossipStats& s) { return s.swim.probes; });
  gossip_counter("hivemesh_gossip_probe_failures_total",
                 "SWIM probes that got no ack, directly or indirectly.",
                 [](const membership::GossipStats& s) { return s.swim.probe_failures; });
  gossip_counter("hivemesh_gossip_suspicions_total",
                 "Members this node started or joined suspecting.",
                 [](const membership::GossipStats& s) { return s.swim.suspicions; });
  gossip_counter("hivemesh_gossip_refutations_total",
                 "Times this node refuted a suspicion of itself.",
                 [](const membership::GossipStats& s) { return s.swim.refutations; });
  gossip_counter("hivemesh_gossip_push_pulls_total", "Full state exchanges this node started.",
                 [](const membership::GossipStats& s) { return s.swim.push_pulls; });
  gossip_counter("hivemesh_gossip_tcp_exchanges_failed_total",
                 "Gossip TCP exchanges that failed (connect, write or read).",
                 [](const membership::GossipStats& s) { return s.tcp_exchanges_failed; });

  if (forwarder == nullptr) return;
  registry.AddCollector(
      "hivemesh_routing_decisions_total",
      "Where the router sent inferences first: local (run here), forwarded (to a peer), "
      "rejected (no node could take it).",
      MetricType::kCounter, {"decision"}, [forwarder](SampleSink& sink) {
        const routing::RouteStats s = forwarder->Stats();
        sink.Add({"local"}, static_cast<double>(s.local));
        sink.Add({"forwarded"}, static_cast<double>(s.forwarded));
        sink.Add({"rejected"}, static_cast<double>(s.rejected));
      });
  registry.AddCollector("hivemesh_forward_retries_total",
                        "Forwarded requests retried on another peer.", MetricType::kCounter, {},
                        [forwarder](SampleSink& sink) {
                          sink.Add({}, static_cast<double>(forwarder->Stats().retries));
                        });
  registry.AddCollector("hivemesh_forward_hedges_total",
                        "Tries sent to another peer because a try was late (hedges).",
                        MetricType::kCounter, {}, [forwarder](SampleSink& sink) {
                          sink.Add({}, static_cast<double>(forwarder->Stats().hedges));
                        });
  registry.AddCollector("hivemesh_forward_cancelled_total",
                        "Tries given up because another try of the same request answered first.",
                        MetricType::kCounter, {}, [forwarder](SampleSink& sink) {
                          sink.Add({}, static_cast<double>(forwarder->Stats().cancelled));
                        });
  registry.AddCollector(
      "hivemesh_peer_connections_open",
      "Connections this node has open to peers, by kind: link (a mesh link carrying many "
      "requests at once) or http (plain HTTP/1.1, to peers that do not take links).",
      MetricType::kGauge, {"kind"}, [forwarder](SampleSink& sink) {
        const routing::RouteStats s = forwarder->Stats();
        sink.Add({"link"}, static_cast<double>(s.links));
        // The two counts are read one after the other: a link opening or closing in between
        // must not show as a negative.
        sink.Add({"http"}, static_cast<double>(std::max(0, s.connections - s.links)));
      });
  // Per peer, from the forwarder's table (peers this node has sent to).
  auto per_peer = [&registry, forwarder](std::string name, std::string help, MetricType type,
                                         double (*value)(const routing::PeerStats&)) {
    registry.AddCollector(std::move(name), std::move(help), type, {"peer"},
                          [forwarder, value](SampleSink& sink) {
                            for (const routing::PeerStats& p : forwarder->Stats().peers) {
                              sink.Add({p.node}, value(p));
                            }
                          });
  };
  per_peer("hivemesh_forward_attempts_total",
           "Forwarding attempts sent to the peer (first attempts, retries and hedges).",
           MetricType::kCounter,
           [](const routing::PeerStats& p) { return static_cast<double>(p.sent); });
  per_peer("hivemesh_forward_failures_total",
           "Forwarding attempts to the peer that failed (transport failure or 503).",
           MetricType::kCounter,
           [](const routing::PeerStats& p) { return static_cast<double>(p.failures); });
  per_peer("hivemesh_forward_late_total",
           "Forwarding attempts to the peer still unanswered at their hedge time.",
           MetricType::kCounter,
           [](const routing::PeerStats& p) { return static_cast<double>(p.late); });
  per_peer("hivemesh_peer_ejections_total", "Times the peer was ejected as an outlier.",
           MetricType::kCounter,
           [](const routing::PeerStats& p) { return static_cast<double>(p.times_ejected); });
  per_peer("hivemesh_peer_ejected", "1 while the peer is ejected as an outlier, else 0.",
           MetricType::kGauge, [](const routing::PeerStats& p) { return p.ejected ? 1.0 : 0.0; });
  per_peer("hivemesh_peer_latency_seconds",
           "Peak-EWMA of forwarded requests' end-to-end latency to the peer.", MetricType::kGauge,
           [](const routing::PeerStats& p) { return p.latency_ns / 1e9; });
}

void RegisterBuildInfo(Registry& registry, std::string_view version, std::string_view node) {
  registry
      .AddGaugeFamily("hivemesh_build_info",
                      "Always 1; the labels say which hivemesh version runs on which node.",
                      {"version", "node"})
      .WithLabels({version, node})
      .Set(1);
}

bool MetricsHandler::Handle(const HttpRequest& request, HttpResponder& respond) {
  std::string_view path = request.target();
  path = path.substr(0, path.find('?'));
  if (path != "/metrics") return false;
  HttpResponse r;
  if (request.method() != "GET") {
    r.status = 405;
    r.body =
        EncodeError(StrCat("method ", request.method(), " is not allowed on ", path, "; use GET"));
    r.headers.emplace_back("Allow", "GET");
    respond(std::move(r));
    return true;
  }
  r.content_type = std::string(telemetry::kPrometheusContentType);
  r.body = registry_->Render();
  respond(std::move(r));
  return true;
}

}  // namespace hivemesh
