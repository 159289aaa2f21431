// KServeHandler: the KServe v2 REST API (Open Inference Protocol) of one node, with the binary
// tensor data, statistics and model repository (index) extensions. An inference for a model this
// node does not host goes to a peer that does (routing::Forwarder); the response names the node
// that served it (header Hivemesh-Served-By and the response parameter "served_by").
//
//   GET  /v2/health/live | /v2/health/ready | /v2
//   GET  /v2/models/<m>[/versions/<v>] | .../ready | .../stats | /v2/models/stats
//   POST /v2/models/<m>[/versions/<v>]/infer
//   POST /v2/repository/index
//   POST /v2/repository/models/<m>/load | /v2/repository/models/<m>/unload   (model_control_mode:
//        explicit; answered once the model serves, or once its requests have been answered)
//
// Model and version names in paths follow codec/model_name.h: a path that names an invalid one
// is answered 400 naming the rule before anything is looked up (codec/rest_path.h). Load and
// unload change the node and need admin access (api/admin_access.h): 403 otherwise. Both
// refusals are counted in the node's Rejections (bad_model_name, admin_denied).
//
// Errors are {"error": "..."} with the status mapped from the absl code (see HttpStatusFor).
//
// Every inference gets a trace id: the trace-id of a W3C `traceparent` header, else the
// Hivemesh-Trace header, else a new one (telemetry/trace.h). It goes on with the request when it
// is forwarded and comes back in the response's Hivemesh-Trace header. Each answer is counted
// (InferenceMetrics: model, route, outcome, duration) and logged at debug level with the same
// fields and the trace id.
//
// Thread safety: Handle() may be called concurrently from any I/O thread.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/status.h"
#include "api/admin_access.h"
#include "api/infer_answer.h"
#include "base/rejections.h"
#include "codec/rest_path.h"
#include "serving/model_repository.h"
#include "tensor/inference.h"
#include "transport/http_server.h"

namespace hivemesh {

struct ServerIdentity {
  std::string name = "hivemesh";
  std::string version;
  std::string node_name;
  // Whether the node's gossip is encrypted (--gossip-keys); GET /v2 says so, with a warning
  // when it is not (docs/security.md).
  bool gossip_encrypted = false;
};

// INVALID_ARGUMENT 400, PERMISSION_DENIED 403, NOT_FOUND 404, RESOURCE_EXHAUSTED / UNAVAILABLE
// 503, DEADLINE_EXCEEDED 504, UNIMPLEMENTED 501, FAILED_PRECONDITION 400, anything else 500.
int HttpStatusFor(const absl::Status& status);

namespace routing {
class Forwarder;
}  // namespace routing
namespace telemetry {
class Registry;
}
class InferenceMetrics;
class MemberCheck;

class KServeHandler {
 public:
  // `forwarder` may be null (a node outside any mesh serves only its models);
  // `metrics` may be null (nothing is counted), else the handler declares its metrics in it.
  // `memory_budget` (may be null: nothing reserved) is what decoded tensors and answers are
  // reserved from (api/infer_answer.h); `rejections` counts what is refused (null: a Rejections
  // of the handler's own, until SetAdmin gives one).
  KServeHandler(ServerIdentity identity, ModelRepository* repository,
                routing::Forwarder* forwarder = nullptr, telemetry::Registry* metrics = nullptr,
                std::shared_ptr<MemoryBudget> memory_budget = nullptr,
                std::shared_ptr<Rejections> rejections = nullptr);
  ~KServeHandler();

  void Handle(const HttpRequest& request, HttpResponder respond);

  // The protocol-neutral inference entry point, for front ends other than REST (the gRPC
  // service). `request` is decoded (model_name set; model_version empty for the default) and
  // comes from a client, never from a peer: it is served here or sent to a peer by the same
  // decision as a REST inference, and counted and logged the same way. `received` is when it
  // arrived; `trace` is its trace id (telemetry::TraceIdFor). `done` is called exactly once, on
  // any thread, with the response (served_by set) or the error.
  using InferDone = std::function<void(absl::StatusOr<InferResponse>)>;
  void InferDecoded(InferRequest request, std::string trace, SteadyTime received, InferDone done);

  const ServerIdentity& identity() const { return identity_; }
  // False once SetReady(false) was called (the node is draining).
  bool ready() const { return ready_.load(); }
  ModelRepository* repository() const { return repository_; }
  // What the handler reserves from (null when it was given none) and counts refusals in.
  MemoryBudget* memory_budget() const { return memory_budget_.get(); }
  Rejections* rejections() const { return rejections_.get(); }

  // After this, /v2/health/ready answers not ready (the node is draining).
  void SetReady(bool ready) { ready_.store(ready); }
  // After this, requests forwarded by peers are refused with 503 (their origins retry elsewhere).
  void RefuseForwarded() { refuse_forwarded_.store(true); }
  // This node's `zone` label, for data policies (empty: no zone).
  void SetZone(std::string zone);

  // The repository's mutating calls (load, unload), for every front end (REST here, gRPC through
  // grpc_server.cc): who may make them and where refusals are counted. Before this is called,
  // admin access is loopback and refusals are counted in a Rejections of the handler's own.
  // REQUIRES: called before the handler serves its first request.
  void SetAdmin(AdminAccess access, std::shared_ptr<Rejections> rejections);
  // How requests forwarded by peers prove their origin (api/member_check.h). Without one, every
  // forwarded request is refused. REQUIRES: called before the handler serves its first request.
  void SetMemberCheck(std::shared_ptr<const MemberCheck> check) {
    member_check_ = std::move(check);
  }
  // Loads or unloads `model` for `caller`. Checked first, in this order, each refusal counted:
  // the model name (INVALID_ARGUMENT naming the rule; nothing is looked up), then the caller
  // (PERMISSION_DENIED saying what to do); then the repository does it on its control thread.
  // `done` is called exactly once: on this thread for a refusal, else on the control thread.
  void ControlRepository(RepositoryAction action, std::string_view model, const AdminCaller& caller,
                         std::function<void(absl::Status)> done);

 private:
  void HandleModel(const HttpRequest& request, std::string_view rest, HttpResponder& respond);
  void Infer(const HttpRequest& request, const std::string& model, const std::string& version,
             HttpResponder& respond);

  // What the answer to one inference is observed with (its trace id, route, start).
  struct InferRecord;
  // Where the answer to `record`'s request takes its memory from.
  AnswerBudget AnswerBudgetFor(const InferRecord& record) const;
  // Wraps `respond` so that the answer carries the trace id and is counted and logged.
  HttpResponder Observed(std::shared_ptr<InferRecord> record, HttpResponder&& respond) const;

  // A model this node does not serve (`local_error`: why, or OK if it does not know the model;
  // the answer if no peer has it): the forwarder finds a peer, or answers why none.
  void Forward(const HttpRequest& request, const std::string& model, const std::string& version,
               int hops, const absl::Status& local_error,
               const std::shared_ptr<InferRecord>& record, HttpResponder& respond);
  // The same for a decoded request (`raw_body`: its one input is an opaque body sent on as is).
  // Callbacks here are routing::ForwardCallback, the same type as InferCallback.
  void ForwardDecoded(InferRequest& request, bool raw_body, int hops,
                      const absl::Status& local_error, const std::shared_ptr<InferRecord>& record,
                      InferCallback done);
  // The runtime serving `model` at `version` here, or null and `*why` this node does not serve it
  // (left OK when the node has a forwarder and does not know the model at all, so that no
  // message is built on the forwarding path). `*known_here`: the node knows the model (serves
  // it, or has it in its repository but cannot serve it).
  RuntimePtr Resolve(std::string_view model, std::string_view version, absl::Status* why,
                     bool* known_here) const;
  // Answers to a request served here, with the runtime that served it.
  using LocalDone = std::function<void(absl::StatusOr<InferResponse>, const RuntimePtr& served)>;
  // Submits `request` to `rt`. If `rt` was retired (its version unloaded) after the request looked
  // it up, the model is looked up again (`requested_version`: what the client asked for) and the
  // request goes to what serves now, so a version change drops no request.
  absl::Status SubmitLocal(RuntimePtr rt, const std::string& requested_version,
                           InferRequest&& request, const LocalDone& done);
  // A model hosted here (`rt`): served here (`local` answers) or sent to a peer by the routing
  // decision (`remote` answers, and every error before the model accepts the request).
  void RouteHosted(RuntimePtr rt, const std::string& requested_version, InferRequest&& request,
                   int hops, const std::shared_ptr<InferRecord>& record, LocalDone local,
                   InferCallback remote);
  // POST /v2/repository/models/<m>/load|unload.
  void HandleRepository(const HttpRequest& request, std::string_view rest, HttpResponder& respond);
  std::string zone() const;

  const ServerIdentity identity_;
  ModelRepository* const repository_;
  routing::Forwarder* const forwarder_;
  const std::unique_ptr<InferenceMetrics> metrics_;    // null: not counted
  const std::shared_ptr<MemoryBudget> memory_budget_;  // null: nothing reserved
  std::atomic<bool> ready_{true};
  std::atomic<bool> refuse_forwarded_{false};
  mutable std::mutex zone_mu_;
  std::string zone_;  // guarded by zone_mu_

  // The repository's mutating calls (SetAdmin; fixed once serving).
  AdminAccess admin_;
  // Where refusals are counted: the constructor's, else one of the handler's own; SetAdmin may
  // replace it before the handler serves.
  std::shared_ptr<Rejections> rejections_;
  std::shared_ptr<const MemberCheck> member_check_;
};

}  // namespace hivemesh
