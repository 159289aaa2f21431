#include "api/kserve_handler.h"

#include <optional>
#include <utility>

#include "absl/strings/str_join.h"

#include "api/member_check.h"
#include "api/model_json.h"
#include "api/rest_infer.h"
#include "base/rejections.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "codec/infer_codec.h"
#include "codec/json_writer.h"
#include "codec/model_name.h"
#include "codec/repository_codec.h"
#include "routing/dispatcher.h"
#include "routing/forwarder.h"

namespace hivemesh {

KServeHandler::KServeHandler(ServerIdentity identity, ModelRepository* repository,
                             routing::Dispatcher* dispatcher,
                             std::shared_ptr<MemoryBudget> memory_budget,
                             std::shared_ptr<Rejections> rejections)
    : identity_(std::move(identity)),
      repository_(repository),
      own_dispatcher_rejections_(dispatcher == nullptr ? std::make_shared<Rejections>() : nullptr),
      own_dispatcher_(dispatcher == nullptr
                          ? std::make_unique<routing::Dispatcher>(
                                identity_.node_name, repository, /*forwarder=*/nullptr,
                                own_dispatcher_rejections_.get(), /*observer=*/nullptr)
                          : nullptr),
      dispatcher_(dispatcher != nullptr ? dispatcher : own_dispatcher_.get()),
      memory_budget_(std::move(memory_budget)),
      rejections_(rejections != nullptr ? std::move(rejections) : std::make_shared<Rejections>()) {}

KServeHandler::~KServeHandler() = default;

void KServeHandler::Handle(const HttpRequest& request, HttpResponder respond) {
  std::string_view path = request.target();
  path = path.substr(0, path.find('?'));
  const std::string_view method = request.method();
  const bool get = method == "GET";

  if (path == "/v2/health/live") {
    if (!get) return respond(MethodNotAllowed(method, path, "GET"));
    return respond(JsonResponse(200, "{\"live\":true}"));
  }
  if (path == "/v2/health/ready") {
    if (!get) return respond(MethodNotAllowed(method, path, "GET"));
    return respond(ready_.load() ? JsonResponse(200, "{\"ready\":true}")
                                 : JsonResponse(400, "{\"ready\":false}"));
  }
  if (path == "/v2" || path == "/v2/") {
    if (!get) return respond(MethodNotAllowed(method, path, "GET"));
    std::string out;
    JsonWriter w(out);
    w.BeginObject();
    w.Key("name").String(identity_.name);
    w.Key("version").String(identity_.version);
    w.Key("extensions").BeginArray();
    w.String("binary_tensor_data").String("statistics").String("model_repository");
    w.EndArray();
    w.Key("node").String(identity_.node_name);
    w.Key("gossip").BeginObject();
    w.Key("encrypted").Bool(identity_.gossip_encrypted);
    if (!identity_.gossip_encrypted) {
      w.Key("warning").String(
          "gossip is plaintext: anyone on the network can read the membership and add members; "
          "start every node with --gossip-keys (docs/security.md)");
    }
    w.EndObject();
    w.Key("insecure").Bool(identity_.insecure);
    if (identity_.insecure) {
      w.Key("insecure_warning")
          .String(
              "this node runs with --insecure: connections between nodes are not encrypted and "
              "members are not authenticated by certificates (docs/identity.md)");
    }
    w.Key("mesh");
    if (identity_.mesh_id.empty()) {
      w.Raw("null");
    } else {
      w.BeginObject();
      w.Key("id").String(identity_.mesh_id);
      w.Key("ca_digest").String(identity_.ca_digest);
      w.Key("role").String(identity_.role);
      w.Key("certificate_expires")
          .Int(identity_.certificate_expires ? identity_.certificate_expires() : 0);
      w.Key("issuer").Bool(identity_.issuer);
      w.EndObject();
    }
    w.EndObject();
    return respond(JsonResponse(200, std::move(out)));
  }
  if (path == "/v2/repository/index") {
    if (method != "POST") return respond(MethodNotAllowed(method, path, "POST"));
    const std::shared_ptr<const std::string> body = request.body();
    absl::StatusOr<RepositoryIndexRequest> index =
        DecodeRepositoryIndexRequest(body ? std::string_view(*body) : std::string_view());
    if (!index.ok()) return respond(ErrorResponse(index.status()));
    absl::StatusOr<ReadFilter> readable =
        Readable(request.tls_peer(), request.header("Authorization"), request.remote_address());
    if (!readable.ok()) return respond(ErrorResponse(readable.status()));
    std::string out;
    JsonWriter w(out);
    w.BeginArray();
    for (const ModelEntry& e : repository_->Index()) {
      if (index->ready_only && e.state != "READY") continue;
      if (!(*readable)(e.name)) continue;
      w.BeginObject();
      w.Key("name").String(e.name);
      if (!e.version.empty()) w.Key("version").String(e.version);
      w.Key("state").String(e.state);
      w.Key("reason").String(e.reason);
      w.EndObject();
    }
    w.EndArray();
    return respond(JsonResponse(200, std::move(out)));
  }
  if (path == "/v2/models/stats") {
    if (!get) return respond(MethodNotAllowed(method, path, "GET"));
    absl::StatusOr<ReadFilter> readable =
        Readable(request.tls_peer(), request.header("Authorization"), request.remote_address());
    if (!readable.ok()) return respond(ErrorResponse(readable.status()));
    std::string out;
    JsonWriter w(out);
    w.BeginObject().Key("model_stats").BeginArray();
    for (const RuntimePtr& rt : repository_->Runtimes()) {
      if ((*readable)(rt->config().name)) WriteStats(w, *rt);
    }
    w.EndArray().EndObject();
    return respond(JsonResponse(200, std::move(out)));
  }
  constexpr std::string_view kRepositoryModels = "/v2/repository/models/";
  if (path.starts_with(kRepositoryModels)) {
    return HandleRepository(request, path.substr(kRepositoryModels.size()), respond);
  }
  constexpr std::string_view kModels = "/v2/models/";
  if (path.starts_with(kModels)) {
    return HandleModel(request, path.substr(kModels.size()), respond);
  }
  respond(JsonResponse(404, EncodeError(StrCat("no such endpoint: ", path))));
}

void KServeHandler::HandleModel(const HttpRequest& request, std::string_view rest,
                                HttpResponder& respond) {
  const std::string_view method = request.method();
  const std::string_view path = request.target().substr(0, request.target().find('?'));
  absl::StatusOr<ModelPath> parsed = ParseModelPath(rest);
  if (!parsed.ok()) {
    if (parsed.status().code() == absl::StatusCode::kNotFound) {
      return respond(JsonResponse(404, EncodeError(StrCat("no such endpoint: ", path))));
    }
    rejections_->Note(Rejection::kBadModelName, request.remote_address(),
                      MessageOf(parsed.status()));
    return respond(ErrorResponse(parsed.status()));
  }
  const ModelAction action = parsed->action;
  const std::string name(parsed->model);
  const std::string version(parsed->version);

  const std::string_view allowed = action == ModelAction::kInfer ? "POST" : "GET";
  if (method != allowed) return respond(MethodNotAllowed(method, path, allowed));
  // Forwarded inferences are checked as coming from members (ServeRestInfer); the node where a
  // request entered the mesh checked its caller against the policy.
  if (action != ModelAction::kInfer || !request.has_header(routing::kHopsHeader)) {
    absl::Status authorized =
        Authorize(request.tls_peer(), request.header("Authorization"), request.remote_address(),
                  name, action == ModelAction::kInfer ? PolicyVerb::kInfer : PolicyVerb::kRead);
    if (!authorized.ok()) return respond(ErrorResponse(authorized));
  }

  if (action == ModelAction::kInfer) {
    const RestInferNode node{dispatcher_, member_check_.get(), memory_budget_.get(),
                             rejections_.get()};
    return ServeRestInfer(node, request, name, version, std::move(respond));
  }

  absl::StatusOr<RuntimePtr> rt = repository_->Find(name, version);
  if (action == ModelAction::kReady) {
    if (!rt.ok() && rt.status().code() == absl::StatusCode::kNotFound) {
      return respond(ErrorResponse(rt.status()));
    }
    const bool ready = rt.ok() && ready_.load();
    return respond(ready ? JsonResponse(200, "{\"ready\":true}")
                         : JsonResponse(400, "{\"ready\":false}"));
  }
  if (!rt.ok()) return respond(ErrorResponse(rt.status()));
  std::string out;
  JsonWriter w(out);
  if (action == ModelAction::kStats) {
    w.BeginObject().Key("model_stats").BeginArray();
    if (version.empty()) {
      for (const std::string& v : repository_->Versions(name)) {
        absl::StatusOr<RuntimePtr> vr = repository_->Find(name, v);
        if (vr.ok()) WriteStats(w, **vr);
      }
    } else {
      WriteStats(w, **rt);
    }
    w.EndArray().EndObject();
    return respond(JsonResponse(200, std::move(out)));
  }
  const ModelConfig& c = (*rt)->config();
  w.BeginObject();
  w.Key("name").String(c.name);
  w.Key("versions").BeginArray();
  if (version.empty()) {
    for (const std::string& v : repository_->Versions(name)) w.String(v);
  } else {
    w.String(version);
  }
  w.EndArray();
  w.Key("platform").String(c.platform);
  w.Key("inputs");
  WriteTensorMetadata(w, c.inputs);
  w.Key("outputs");
  WriteTensorMetadata(w, c.outputs);
  w.EndObject();
  respond(JsonResponse(200, std::move(out)));
}

void KServeHandler::HandleRepository(const HttpRequest& request, std::string_view rest,
                                     HttpResponder& respond) {
  const std::string_view path = request.target().substr(0, request.target().find('?'));
  absl::StatusOr<RepositoryPath> route = ParseRepositoryPath(rest);
  if (!route.ok()) {
    if (route.status().code() == absl::StatusCode::kNotFound) {
      return respond(JsonResponse(404, EncodeError(StrCat("no such endpoint: ", path))));
    }
    rejections_->Note(Rejection::kBadModelName, request.remote_address(),
                      MessageOf(route.status()));
    return respond(ErrorResponse(route.status()));
  }
  if (request.method() != "POST") return respond(MethodNotAllowed(request.method(), path, "POST"));
  // A body, if any, may carry parameters (Triton's config and file overrides); the model is
  // always read from its folder.
  const std::shared_ptr<const std::string> body = request.body();
  absl::StatusOr<std::vector<std::string>> params =
      DecodeRepositoryControlParameters(body ? std::string_view(*body) : std::string_view());
  if (!params.ok()) return respond(ErrorResponse(params.status()));
  if (!params->empty()) {
    return respond(ErrorResponse(absl::InvalidArgumentError(
        StrCat("parameter '", params->front(),
               "' is not supported; the model is read from its folder in the model repository"))));
  }
  const AdminCaller caller{request.remote_address(), request.header("Authorization"),
                           request.tls_peer()};
  ControlRepository(route->action, route->model, caller, [respond](absl::Status status) {
    respond(status.ok() ? JsonResponse(200, "{}") : ErrorResponse(status));
  });
}

absl::StatusOr<KServeHandler::Who> KServeHandler::Identify(std::string_view tls_peer,
                                                           std::string_view authorization,
                                                           std::string_view address) const {
  const Caller peer = CallerOfTlsPeer(tls_peer);
  Who who{peer.kind, std::string(peer.name), std::nullopt};
  const std::string_view bearer = BearerToken(authorization);
  if (peer.kind != Caller::Kind::kAnyone || client_tokens_ == nullptr ||
      !bearer.starts_with(identity::kClientTokenPrefix)) {
    return who;
  }
  absl::StatusOr<identity::ClientToken> checked = client_tokens_(bearer);
  if (!checked.ok()) {
    rejections_->Note(Rejection::kPolicyDenied, address, MessageOf(checked.status()));
    return checked.status();
  }
  who.kind = Caller::Kind::kClient;
  who.name = checked->subject;
  who.token = *std::move(checked);
  return who;
}

absl::Status KServeHandler::Allowed(const Who& who, const Policy& policy, std::string_view model,
                                    PolicyVerb verb) const {
  if (who.token && !who.token->Covers(model)) {
    return absl::PermissionDeniedError(StrCat("the bearer token of client '", who.name,
                                              "' does not cover model '", model, "' (it covers ",
                                              absl::StrJoin(who.token->models, ", "), ")"));
  }
  return policy.Check(who.caller(), model, verb);
}

absl::Status KServeHandler::Authorize(std::string_view tls_peer, std::string_view authorization,
                                      std::string_view address, std::string_view model,
                                      PolicyVerb verb) const {
  HM_ASSIGN_OR_RETURN(const Who who, Identify(tls_peer, authorization, address));
  absl::Status allowed = Allowed(who, *policy_->Get(), model, verb);
  if (!allowed.ok()) rejections_->Note(Rejection::kPolicyDenied, address, MessageOf(allowed));
  return allowed;
}

absl::StatusOr<KServeHandler::ReadFilter> KServeHandler::Readable(std::string_view tls_peer,
                                                                  std::string_view authorization,
                                                                  std::string_view address) const {
  HM_ASSIGN_OR_RETURN(Who who, Identify(tls_peer, authorization, address));
  std::shared_ptr<const Policy> policy = policy_->Get();
  return ReadFilter(
      [this, who = std::move(who), policy = std::move(policy)](std::string_view model) {
        return Allowed(who, *policy, model, PolicyVerb::kRead).ok();
      });
}

void KServeHandler::SetAdmin(AdminAccess access, std::shared_ptr<Rejections> rejections) {
  admin_ = access;
  if (rejections != nullptr) rejections_ = std::move(rejections);
}

void KServeHandler::ControlRepository(RepositoryAction action, std::string_view model,
                                      const AdminCaller& caller,
                                      std::function<void(absl::Status)> done) {
  if (absl::Status name = CheckModelName(model); !name.ok()) {
    rejections_->Note(Rejection::kBadModelName, caller.address, MessageOf(name));
    return done(name);
  }
  if (absl::Status allowed = admin_.Check(caller); !allowed.ok()) {
    rejections_->Note(Rejection::kAdminDenied, caller.address,
                      StrCat(RepositoryActionName(action), " of model '", model,
                             "' (admin_access: ", AdminAccessModeName(admin_.mode()), ")"));
    return done(allowed);
  }
  if (action == RepositoryAction::kLoad) {
    repository_->LoadModelAsync(std::string(model), std::move(done));
  } else {
    repository_->UnloadModelAsync(std::string(model), std::move(done));
  }
}

}  // namespace hivemesh
