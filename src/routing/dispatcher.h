// Dispatcher: the one path an inference takes through a node, whatever protocol it came in on.
// A front end (the REST API, the gRPC service, a mesh link) decodes what it can, gives the
// request to Infer, and answers with what Infer hands back; everything in between is here:
//
//   resolve the model here ──▶ served here? ──no──▶ forward to a peer that serves it (Forwarder)
//                                   │ yes
//                                   ▼
//   routing decision (decision.h): here, or a peer with more room ──▶ submit to the model's
//   runtime (a retired version's request is looked up again), or forward; overloaded here after
//   all ──▶ a peer with room, if the model's data policy allows
//
// and one observer for every answer (InferObserver: metrics and the log line).
//
// Thread safety: every method may be called from any thread. `done` runs exactly once, on the
// calling thread (an error found at once), the model's worker thread (served here), or the
// thread the peer's answer arrives on (forwarded).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "base/clock.h"
#include "serving/model_repository.h"
#include "tensor/inference.h"

namespace hivemesh {
class Rejections;
}

namespace hivemesh::routing {

class Forwarder;

// Where an answer came from, for the `route` label of hivemesh_inference_requests_total.
enum class InferenceRoute : uint8_t { kLocal, kOffloaded, kForwardedIn };
std::string_view RouteName(InferenceRoute route);

// Whether the model of an answered request is known: served or known here, served by a peer, or
// unknown to the mesh (metrics give unknown models no series of their own).
enum class ModelKnown : uint8_t { kHere, kMesh, kUnknown };

// The front end a request came in through (a field of its log line).
enum class Protocol : uint8_t { kRest, kGrpc };
std::string_view ProtocolName(Protocol protocol);

// One inference on its way through the node. The front end makes it when the request arrives
// (Dispatcher::NewCall), the dispatcher notes where the request went, and the front end finishes
// it once, when the answer is known (Dispatcher::Finish).
struct InferCall {
  std::string model;
  std::string trace;  // telemetry::TraceIdFor
  SteadyTime received;
  std::string source;  // the client's address, for refusals' log lines
  Protocol protocol = Protocol::kRest;
  // > 0: a peer forwarded the request here, after this many hops (the front end has checked
  // that the peer is a member).
  int hops = 0;
  // kOffloaded once the forwarder sends the request to a peer (on the sending thread).
  std::atomic<InferenceRoute> route{InferenceRoute::kLocal};
  // This node knows the model (it serves it, or failed to load it). Set before the request is
  // routed, read when it is answered.
  bool known_here = false;

  ModelKnown known() const {
    if (known_here) return ModelKnown::kHere;
    return route.load() == InferenceRoute::kOffloaded ? ModelKnown::kMesh : ModelKnown::kUnknown;
  }
};

// What is told of every answered inference: the metrics and the log line (api implements it).
class InferObserver {
 public:
  virtual ~InferObserver() = default;
  // `http_status`: the answer's status (a gRPC answer's error mapped like REST's:
  // codec/status_codes.h); `served_by`: the node that served it, empty if none did.
  // Called on the answering thread.
  virtual void Answered(const InferCall& call, int http_status, std::string_view served_by,
                        double seconds) = 0;
  // A result this node computed (`served`: the model version that did), before its answer is
  // sent: the model's insight rules read it. Called on the model's worker thread; must not
  // block.
  virtual void Served(const InferCall& /*call*/, const ModelRuntime& /*served*/,
                      const InferResponse& /*response*/) {}
};

// A request as its front end decoded it, knowing what this node knows of the model.
struct DecodedInfer {
  InferRequest request;
  // The request's only input is the whole raw body of a request for a model this node cannot
  // interpret: it goes to a peer as it came (RouteOptions::raw_body).
  bool raw_body = false;
};

class Dispatcher {
 public:
  // `repository` and `rejections` must outlive the dispatcher; `forwarder` may be null (a node
  // outside any mesh serves only its models); `observer` may be null (nothing is told).
  Dispatcher(std::string node_name, ModelRepository* repository, Forwarder* forwarder,
             Rejections* rejections, InferObserver* observer, Clock& clock = SystemClock::Get());

  // A call for `model` arriving now (the caller fills in the rest).
  std::shared_ptr<InferCall> NewCall(std::string model, std::string trace, SteadyTime received,
                                     Protocol protocol) const;

  // Decodes the request for what serves it here: `config` is the config of the model version
  // that serves it here (`version`: that version's name), or null when the request goes to a
  // peer (then `version` is the version the client asked for, maybe empty).
  using Decode = std::function<absl::StatusOr<DecodedInfer>(const ModelConfig* config,
                                                            const std::string& version)>;
  // The answer: the response (served_by set) or why there is none. `served_here` is the runtime
  // that computed it when this node served it, null otherwise.
  using Done =
      std::function<void(absl::StatusOr<InferResponse> result, const RuntimePtr& served_here)>;

  // Serves `call`'s model at `version` (empty: the default) here or on a peer. `decode` is
  // called at most once, before Infer returns and before anything is submitted or sent (so it
  // may refer to the caller's locals); its error is the answer.
  // REQUIRES: `call` was made by NewCall and lives until `done` runs (front ends hold it in
  // `done`, to finish it); call->hops > 0 only for a request a member forwarded.
  void Infer(const std::shared_ptr<InferCall>& call, const std::string& version,
             const Decode& decode, Done done);

  // Finishes `call`: tells the observer. REQUIRES: called once per call, when it is answered.
  void Finish(const InferCall& call, int http_status, std::string_view served_by) const;

  // Records in `served`'s statistics the time this node spent on a request it served, beyond
  // its compute: from `received` to `answered` (when the answer was sent, or handed over).
  static void RecordOverhead(const ModelRuntime& served, SteadyTime received, SteadyTime answered,
                             uint64_t compute_ns);
  // The load header (routing/forwarder.h: kLoadHeader) of an answer `served` gave to a request a
  // peer forwarded here, received at `received`.
  std::string LoadReport(const ModelRuntime& served, SteadyTime received) const;

  // After this, requests forwarded by peers are refused with UNAVAILABLE (their origins retry
  // elsewhere): the node is draining.
  void RefuseForwarded() { refuse_forwarded_.store(true); }
  // This node's `zone` label, for data policies (empty: no zone).
  void SetZone(std::string zone);

  const std::string& node_name() const { return node_; }
  Clock& clock() const { return clock_; }

 private:
  // The runtime serving `model` at `version` here, or null and `*why` this node does not serve
  // it (left OK when the node has a forwarder and does not know the model at all, so that no
  // message is built on the forwarding path). Sets call.known_here.
  RuntimePtr Resolve(InferCall& call, std::string_view version, absl::Status* why) const;
  // Submits `request` to `rt`. If `rt` was retired (its version unloaded) after the request
  // looked it up, the model is looked up again (`requested_version`: what the client asked for)
  // and the request goes to what serves now, so a version change drops no request.
  absl::Status SubmitLocal(RuntimePtr rt, const std::string& requested_version,
                           InferRequest&& request, const InferCall& call, const Done& done) const;
  // A model hosted here (`rt`): served here or sent to a peer by the routing decision.
  void RouteHosted(RuntimePtr rt, const std::string& requested_version, InferRequest&& request,
                   const std::shared_ptr<InferCall>& call, Done done);
  // A model this node does not serve (`local_error`: why, or OK if it does not know the model;
  // the answer if no peer has it): the forwarder finds a peer, or answers why none.
  void Forward(InferRequest& request, bool raw_body, const absl::Status& local_error,
               const std::shared_ptr<InferCall>& call, Done done);
  std::string zone() const;

  const std::string node_;
  ModelRepository* const repository_;
  Forwarder* const forwarder_;
  Rejections* const rejections_;
  InferObserver* const observer_;
  Clock& clock_;
  std::atomic<bool> refuse_forwarded_{false};
  mutable absl::Mutex zone_mu_;
  std::string zone_ ABSL_GUARDED_BY(zone_mu_);
};

}  // namespace hivemesh::routing
