// KServeHandler: the KServe v2 REST API (Open Inference Protocol) of one node, with the binary
// tensor data, statistics and model repository (index) extensions. It routes paths and writes
// the JSON of the metadata endpoints; an inference goes through the REST front end
// (api/rest_infer.h) to the node's routing::Dispatcher, which serves it here or on a peer that
// hosts the model; the response names the node that served it (header Hivemesh-Served-By and the
// response parameter "served_by").
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
// Errors are {"error": "..."} with the status mapped from the absl code (codec/status_codes.h).
//
// Every inference gets a trace id: the trace-id of a W3C `traceparent` header, else the
// Hivemesh-Trace header, else a new one (telemetry/trace.h). It goes on with the request when it
// is forwarded and comes back in the response's Hivemesh-Trace header. Each answer is counted
// and logged by the dispatcher's observer (api/inference_observer.h).
//
// Thread safety: Handle() may be called concurrently from any I/O thread.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "api/admin_access.h"
#include "api/authorization_policy.h"
#include "base/rejections.h"
#include "codec/rest_path.h"
#include "identity/client_token.h"
#include "serving/model_repository.h"
#include "transport/http_server.h"

namespace hivemesh {

struct ServerIdentity {
  std::string name = "hivemesh";
  std::string version;
  std::string node_name;
  // Whether the node's gossip is encrypted (--gossip-keys); GET /v2 says so, with a warning
  // when it is not (docs/security.md).
  bool gossip_encrypted = false;
  // The node's mesh certificate (docs/identity.md); mesh_id empty: it has none.
  std::string mesh_id;
  std::string ca_digest;
  std::string role;
  // When the certificate ends (unix seconds); asked at each GET /v2, as renewals move it.
  std::function<int64_t()> certificate_expires;
  bool issuer = false;
  // Started with --insecure: no certificates, no mutual TLS between nodes. GET /v2 says so.
  bool insecure = false;
};

namespace routing {
class Dispatcher;
}  // namespace routing
class MemberCheck;

class KServeHandler {
 public:
  // `dispatcher` serves the node's inferences (null: the handler makes one of its own that serves
  // only this node's models, with nothing observed); it and `repository` outlive the handler.
  // `memory_budget` (may be null: nothing reserved) is what decoded tensors and answers are
  // reserved from (api/infer_answer.h); `rejections` counts what is refused (null: a Rejections
  // of the handler's own, until SetAdmin gives one).
  KServeHandler(ServerIdentity identity, ModelRepository* repository,
                routing::Dispatcher* dispatcher = nullptr,
                std::shared_ptr<MemoryBudget> memory_budget = nullptr,
                std::shared_ptr<Rejections> rejections = nullptr);
  ~KServeHandler();

  void Handle(const HttpRequest& request, HttpResponder respond);

  const ServerIdentity& identity() const { return identity_; }
  // False once SetReady(false) was called (the node is draining).
  bool ready() const { return ready_.load(); }
  ModelRepository* repository() const { return repository_; }
  // What the handler reserves from (null when it was given none) and counts refusals in.
  MemoryBudget* memory_budget() const { return memory_budget_.get(); }
  Rejections* rejections() const { return rejections_.get(); }

  // After this, /v2/health/ready answers not ready (the node is draining).
  void SetReady(bool ready) { ready_.store(ready); }
  // The node's inference path, for every front end (REST here, gRPC through grpc_server.cc).
  routing::Dispatcher* dispatcher() const { return dispatcher_; }

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
  // The mesh's authorization policy in force (api/authorization_policy.h), and how a client's
  // bearer token (identity/client_token.h) is checked (null: such tokens are not taken). Without
  // a policy, every caller may read and infer every model. REQUIRES: `policy` is not null;
  // called before the handler serves.
  using ClientTokenCheck =
      std::function<absl::StatusOr<identity::ClientToken>(std::string_view token)>;
  void SetPolicy(std::shared_ptr<const PolicyHolder> policy, ClientTokenCheck client_tokens) {
    policy_ = std::move(policy);
    client_tokens_ = std::move(client_tokens);
  }
  // OK if the caller may `verb` `model`; else PERMISSION_DENIED naming the rule, counted
  // (policy_denied). The caller is the TLS peer (`tls_peer`, HttpRequest::tls_peer()) or, for a
  // caller without a certificate, the client a bearer token in `authorization` names (a token
  // that is refused, or does not cover `model`, is refused); else anyone. For every front end
  // (REST here, gRPC).
  absl::Status Authorize(std::string_view tls_peer, std::string_view authorization,
                         std::string_view address, std::string_view model, PolicyVerb verb) const;
  // For listings (the repository index, every model's statistics): whether the same caller may
  // read each model, so that a listing shows only those; or the refusal of its bearer token.
  // Models left out are not counted as refusals.
  using ReadFilter = std::function<bool(std::string_view model)>;
  absl::StatusOr<ReadFilter> Readable(std::string_view tls_peer, std::string_view authorization,
                                      std::string_view address) const;
  // Loads or unloads `model` for `caller`. Checked first, in this order, each refusal counted:
  // the model name (INVALID_ARGUMENT naming the rule; nothing is looked up), then the caller
  // (PERMISSION_DENIED saying what to do); then the repository does it on its control thread.
  // `done` is called exactly once: on this thread for a refusal, else on the control thread.
  void ControlRepository(RepositoryAction action, std::string_view model, const AdminCaller& caller,
                         std::function<void(absl::Status)> done);

 private:
  void HandleModel(const HttpRequest& request, std::string_view rest, HttpResponder& respond);
  // POST /v2/repository/models/<m>/load|unload.
  void HandleRepository(const HttpRequest& request, std::string_view rest, HttpResponder& respond);

  const ServerIdentity identity_;
  ModelRepository* const repository_;
  // When given no dispatcher: one of the handler's own, and the Rejections it counts in.
  const std::shared_ptr<Rejections> own_dispatcher_rejections_;
  const std::unique_ptr<routing::Dispatcher> own_dispatcher_;
  routing::Dispatcher* const dispatcher_;
  const std::shared_ptr<MemoryBudget> memory_budget_;  // null: nothing reserved
  std::atomic<bool> ready_{true};

  // The repository's mutating calls (SetAdmin; fixed once serving).
  AdminAccess admin_;
  // Where refusals are counted: the constructor's, else one of the handler's own; SetAdmin may
  // replace it before the handler serves.
  std::shared_ptr<Rejections> rejections_;
  std::shared_ptr<const MemberCheck> member_check_;
  // No policy until SetPolicy gives the mesh's.
  std::shared_ptr<const PolicyHolder> policy_ = std::make_shared<const PolicyHolder>();
  ClientTokenCheck client_tokens_;
  // Who calls, its bearer token checked (a refusal is counted): the certificate's caller, the
  // token's client, or anyone.
  struct Who {
    Caller::Kind kind = Caller::Kind::kAnyone;
    std::string name;
    std::optional<identity::ClientToken> token;
    Caller caller() const { return Caller{kind, name}; }
  };
  absl::StatusOr<Who> Identify(std::string_view tls_peer, std::string_view authorization,
                               std::string_view address) const;
  // The policy's and the token's answer for `who`, counting nothing.
  absl::Status Allowed(const Who& who, const Policy& policy, std::string_view model,
                       PolicyVerb verb) const;
};

}  // namespace hivemesh
