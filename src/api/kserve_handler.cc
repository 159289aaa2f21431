#include "api/kserve_handler.h"

#include <spdlog/spdlog.h>

#include <array>
#include <span>

#include "base/strings.h"

#include "api/infer_answer.h"
#include "api/member_check.h"
#include "api/metrics_handler.h"
#include "base/memory_budget.h"
#include "base/rejections.h"
#include "base/timeouts.h"
#include "codec/infer_codec.h"
#include "codec/json_writer.h"
#include "codec/mesh_tensors.h"
#include "codec/model_name.h"
#include "codec/repository_codec.h"
#include "routing/decision.h"
#include "routing/forwarder.h"
#include "telemetry/log.h"
#include "telemetry/trace.h"

namespace hivemesh {
namespace {

HttpResponse Json(int status, std::string body) {
  HttpResponse r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

HttpResponse Error(const absl::Status& status) {
  HttpResponse r = Json(HttpStatusFor(status), EncodeError(MessageOf(status)));
  if (status.code() == absl::StatusCode::kResourceExhausted) {
    r.headers.emplace_back("Retry-After", "1");
  }
  return r;
}

HttpResponse MethodNotAllowed(std::string_view method, std::string_view path,
                              std::string_view allowed) {
  HttpResponse r = Json(
      405, EncodeError(StrCat("method ", method, " is not allowed on ", path, "; use ", allowed)));
  r.headers.emplace_back("Allow", std::string(allowed));
  return r;
}

void WriteTensorMetadata(JsonWriter& w, const std::vector<TensorConfig>& tensors) {
  w.BeginArray();
  for (const TensorConfig& t : tensors) {
    w.BeginObject();
    w.Key("name").String(t.name);
    w.Key("datatype").String(DataTypeName(t.type));
    w.Key("shape").BeginArray();
    for (int64_t d : t.dims) w.Int(d);
    w.EndArray();
    if (t.optional) w.Key("optional").Bool(true);
    w.EndObject();
  }
  w.EndArray();
}

void WriteDuration(JsonWriter& w, std::string_view key, const DurationStat& d) {
  w.Key(key).BeginObject();
  w.Key("count").Uint(d.count.load(std::memory_order_relaxed));
  w.Key("ns").Uint(d.ns.load(std::memory_order_relaxed));
  w.EndObject();
}

void WriteStats(JsonWriter& w, const ModelRuntime& rt) {
  const ModelStats& s = rt.stats();
  w.BeginObject();
  w.Key("name").String(rt.config().name);
  w.Key("version").String(rt.version());
  w.Key("last_inference").Uint(s.last_inference_ms.load());
  w.Key("inference_count").Uint(s.inference_count.load());
  w.Key("execution_count").Uint(s.execution_count.load());
  w.Key("inference_stats").BeginObject();
  WriteDuration(w, "success", s.success);
  WriteDuration(w, "fail", s.fail);
  WriteDuration(w, "queue", s.queue);
  WriteDuration(w, "compute_input", s.compute_input);
  WriteDuration(w, "compute_infer", s.compute_infer);
  WriteDuration(w, "compute_output", s.compute_output);
  w.EndObject();
  w.Key("batch_stats").BeginArray();
  for (const auto& [size, d] : s.batch_stats.Snapshot()) {
    auto duration = [&](std::string_view key, uint64_t ns) {
      w.Key(key).BeginObject().Key("count").Uint(d.count).Key("ns").Uint(ns).EndObject();
    };
    w.BeginObject().Key("batch_size").Uint(size);
    duration("compute_input", d.input_ns);
    duration("compute_infer", d.infer_ns);
    duration("compute_output", d.output_ns);
    w.EndObject();
  }
  w.EndArray();
  // Extensions beyond the KServe statistics schema.
  w.Key("queue_depth").Int(s.queue_depth.load());
  w.Key("in_flight").Int(s.in_flight.load());
  w.Key("rejected_queue_full").Uint(s.rejected_queue_full.load());
  w.Key("expired_in_queue").Uint(s.expired_in_queue.load());
  w.Key("server_overhead").BeginObject();
  w.Key("count").Uint(s.overhead.Count());
  w.Key("p50_ns").Uint(s.overhead.Percentile(0.50));
  w.Key("p99_ns").Uint(s.overhead.Percentile(0.99));
  w.EndObject();
  w.EndObject();
}

// True if the request's body is in the mesh tensor form (a peer forwarded it).
bool InMeshForm(const HttpRequest& request) {
  return request.header("Content-Type") == kMeshTensorsType;
}

// The Inference-Timeout-Ms header, if any, lowers `timeout` to its value (cut to
// kMaxRequestTimeout, like every timeout a client gives: base/timeouts.h).
absl::Status ApplyTimeoutHeader(const HttpRequest& request,
                                std::optional<std::chrono::milliseconds>* timeout) {
  if (!request.has_header("Inference-Timeout-Ms")) return absl::OkStatus();
  constexpr std::string_view kField = "Inference-Timeout-Ms";
  std::optional<uint64_t> ms = ParseUint(request.header(kField));
  if (!ms) {
    return absl::InvalidArgumentError(
        StrCat(kField, ": must be a positive whole number of milliseconds"));
  }
  absl::StatusOr<std::chrono::milliseconds> t = ClientTimeoutMs(*ms, kField);
  if (!t.ok()) return t.status();
  if (!*timeout || *t < **timeout) *timeout = *t;
  return absl::OkStatus();
}

// A raw request (Inference-Header-Content-Length: 0) for a model this node cannot interpret:
// its whole body as one opaque input, viewed, not copied, and its deadline from the header.
absl::StatusOr<InferRequest> RawHttpInfer(const HttpRequest& request, const std::string& model,
                                          const std::string& version) {
  std::optional<std::chrono::milliseconds> timeout;
  absl::Status header_timeout = ApplyTimeoutHeader(request, &timeout);
  if (!header_timeout.ok()) return header_timeout;
  std::shared_ptr<const std::string> body = request.body();
  if (body->empty()) return absl::InvalidArgumentError("a raw request needs a body");
  InferRequest req;
  req.model_name = model;
  req.model_version = version;
  req.inputs.push_back(
      Tensor::View("raw", DataType::kUint8, {static_cast<int64_t>(body->size())}, body, *body));
  if (timeout) req.deadline = DeadlineAfter(request.received(), *timeout);
  return req;
}

// A successful inference as an HTTP response, in the form the request came in (the mesh tensor
// form: a peer sent it on here), within the memory budget; or why not.
HttpResponse Encoded(const InferResponse& result, bool mesh_form, const AnswerBudget& budget) {
  absl::StatusOr<HttpResponse> r =
      mesh_form ? EncodeAnswerForMesh(result, budget) : EncodeAnswer(result, budget);
  return r.ok() ? *std::move(r) : Error(r.status());
}

// Answers a routed request: the response a peer gave, or the error saying why none could.
// `budget.source` must stay valid until the answer (the record holding it does).
routing::ForwardCallback AnswerWith(const HttpResponder& respond, bool mesh_form,
                                    const AnswerBudget& budget) {
  return [respond, mesh_form, budget](absl::StatusOr<InferResponse> result) {
    if (!result.ok()) return respond(Error(result.status()));
    respond(Encoded(*result, mesh_form, budget));
  };
}

// Counts a request refused because decoding it would take more memory than the budget gives.
void NoteDecodeRefusal(Rejections* rejections, const absl::Status& status,
                       std::string_view source) {
  if (rejections == nullptr) return;
  if (status.code() == absl::StatusCode::kResourceExhausted ||
      status.code() == absl::StatusCode::kOutOfRange) {
    rejections->Note(Rejection::kMemoryBudget, source, MessageOf(status));
  }
}

// An infer request from its HTTP form: the body (KServe v2 JSON, JSON + binary data, raw, or,
// if `mesh_form`, the mesh tensor form), and the deadline (the smaller of the `timeout`
// parameter and the Inference-Timeout-Ms header).
absl::StatusOr<InferRequest> DecodeHttpInfer(const HttpRequest& request, bool mesh_form,
                                             const TensorConfig* raw_input,
                                             const std::string& model, const std::string& version,
                                             MemoryBudget* budget) {
  InferRequest req;
  std::optional<std::chrono::milliseconds> timeout;  // the body's `timeout` parameter
  if (mesh_form) {
    absl::StatusOr<InferRequest> decoded = DecodeMeshRequest(request.body());
    if (!decoded.ok()) return decoded.status();
    req = *std::move(decoded);
  } else {
    std::optional<uint64_t> header_length;
    if (request.has_header("Inference-Header-Content-Length")) {
      header_length = ParseUint(request.header("Inference-Header-Content-Length"));
      if (!header_length) {
        return absl::InvalidArgumentError(
            "Inference-Header-Content-Length must be a non-negative integer");
      }
    }
    absl::StatusOr<DecodedInferRequest> decoded =
        DecodeInferRequest(request.body(), header_length, raw_input, budget);
    if (!decoded.ok()) return decoded.status();
    req = std::move(decoded->request);
    timeout = decoded->timeout;
  }
  absl::Status header_timeout = ApplyTimeoutHeader(request, &timeout);
  if (!header_timeout.ok()) return header_timeout;
  req.model_name = model;
  req.model_version = version;
  if (timeout) req.deadline = DeadlineAfter(request.received(), *timeout);
  return req;
}

}  // namespace

int HttpStatusFor(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return 200;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
      return 400;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kUnavailable:
      return 503;
    case absl::StatusCode::kDeadlineExceeded:
      return 504;
    case absl::StatusCode::kUnimplemented:
      return 501;
    default:
      return 500;
  }
}

struct KServeHandler::InferRecord {
  std::string model;
  std::string trace;
  SteadyTime received;
  // kOffloaded once the forwarder sends the request to a peer (on the sending thread).
  std::atomic<InferenceRoute> route{InferenceRoute::kLocal};
  // True if this node knows the model (it serves it, or failed to load it). Set before the
  // request is routed, read when it is answered.
  bool known_here = false;
  std::string source;                  // the client's address, for refusals' log lines
  const void* request_body = nullptr;  // for telling outputs that view it (never read)
  uint64_t request_bytes = 0;          // the body's size

  // The model as hivemesh_inference_requests_total labels it: a model neither this node nor a
  // peer serves gets no series of its own.
  ModelKnown known() const {
    if (known_here) return ModelKnown::kHere;
    return route.load() == InferenceRoute::kOffloaded ? ModelKnown::kMesh : ModelKnown::kUnknown;
  }
};

KServeHandler::KServeHandler(ServerIdentity identity, ModelRepository* repository,
                             routing::Forwarder* forwarder, telemetry::Registry* metrics,
                             std::shared_ptr<MemoryBudget> memory_budget,
                             std::shared_ptr<Rejections> rejections)
    : identity_(std::move(identity)),
      repository_(repository),
      forwarder_(forwarder),
      metrics_(metrics != nullptr ? std::make_unique<InferenceMetrics>(*metrics) : nullptr),
      memory_budget_(std::move(memory_budget)),
      rejections_(rejections != nullptr ? std::move(rejections) : std::make_shared<Rejections>()) {}

AnswerBudget KServeHandler::AnswerBudgetFor(const InferRecord& record) const {
  return AnswerBudget{memory_budget_.get(), rejections_.get(), record.request_body,
                      record.request_bytes, record.source};
}

KServeHandler::~KServeHandler() = default;

HttpResponder KServeHandler::Observed(std::shared_ptr<InferRecord> record,
                                      HttpResponder&& respond) const {
  return [record = std::move(record), respond = std::move(respond),
          metrics = metrics_.get()](HttpResponse r) {
    const InferenceRoute route = record->route.load();
    // The node that forwarded a request here knows its trace id already.
    if (route != InferenceRoute::kForwardedIn) {
      r.headers.emplace_back(routing::kTraceHeader, record->trace);
    }
    const double seconds =
        std::chrono::duration<double>(SystemClock::Get().Now() - record->received).count();
    if (metrics != nullptr) {
      metrics->Record(record->model, record->known(), route, r.status, seconds);
    }
    if (spdlog::should_log(spdlog::level::debug)) {
      telemetry::LogFields fields;
      fields.Add("model", record->model)
          .Add("route", RouteName(route))
          .Add("status", int64_t{r.status})
          .Add("duration_ms", seconds * 1e3)
          .Add("trace_id", record->trace);
      for (const auto& [name, value] : r.headers) {
        if (name == routing::kServedByHeader) fields.Add("served_by", value);
      }
      spdlog::debug("inference");
    }
    respond(std::move(r));
  };
}

void KServeHandler::Handle(const HttpRequest& request, HttpResponder respond) {
  std::string_view path = request.target();
  path = path.substr(0, path.find('?'));
  const std::string_view method = request.method();
  const bool get = method == "GET";

  if (path == "/v2/health/live") {
    if (!get) return respond(MethodNotAllowed(method, path, "GET"));
    return respond(Json(200, "{\"live\":true}"));
  }
  if (path == "/v2/health/ready") {
    if (!get) return respond(MethodNotAllowed(method, path, "GET"));
    return respond(ready_.load() ? Json(200, "{\"ready\":true}") : Json(400, "{\"ready\":false}"));
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
    w.EndObject();
    return respond(Json(200, std::move(out)));
  }
  if (path == "/v2/repository/index") {
    if (method != "POST") return respond(MethodNotAllowed(method, path, "POST"));
    const std::shared_ptr<const std::string> body = request.body();
    absl::StatusOr<RepositoryIndexRequest> index =
        DecodeRepositoryIndexRequest(body ? std::string_view(*body) : std::string_view());
    if (!index.ok()) return respond(Error(index.status()));
    std::string out;
    JsonWriter w(out);
    w.BeginArray();
    for (const ModelEntry& e : repository_->Index()) {
      if (index->ready_only && e.state != "READY") continue;
      w.BeginObject();
      w.Key("name").String(e.name);
      if (!e.version.empty()) w.Key("version").String(e.version);
      w.Key("state").String(e.state);
      w.Key("reason").String(e.reason);
      w.EndObject();
    }
    w.EndArray();
    return respond(Json(200, std::move(out)));
  }
  if (path == "/v2/models/stats") {
    if (!get) return respond(MethodNotAllowed(method, path, "GET"));
    std::string out;
    JsonWriter w(out);
    w.BeginObject().Key("model_stats").BeginArray();
    for (const RuntimePtr& rt : repository_->Runtimes()) WriteStats(w, *rt);
    w.EndArray().EndObject();
    return respond(Json(200, std::move(out)));
  }
  constexpr std::string_view kRepositoryModels = "/v2/repository/models/";
  if (path.starts_with(kRepositoryModels)) {
    return HandleRepository(request, path.substr(kRepositoryModels.size()), respond);
  }
  constexpr std::string_view kModels = "/v2/models/";
  if (path.starts_with(kModels)) {
    return HandleModel(request, path.substr(kModels.size()), respond);
  }
  respond(Json(404, EncodeError(StrCat("no such endpoint: ", path))));
}

void KServeHandler::HandleModel(const HttpRequest& request, std::string_view rest,
                                HttpResponder& respond) {
  const std::string_view method = request.method();
  const std::string_view path = request.target().substr(0, request.target().find('?'));
  absl::StatusOr<ModelPath> parsed = ParseModelPath(rest);
  if (!parsed.ok()) {
    if (parsed.status().code() == absl::StatusCode::kNotFound) {
      return respond(Json(404, EncodeError(StrCat("no such endpoint: ", path))));
    }
    rejections_->Note(Rejection::kBadModelName, request.remote_address(),
                      MessageOf(parsed.status()));
    return respond(Error(parsed.status()));
  }
  const ModelAction action = parsed->action;
  const std::string name(parsed->model);
  const std::string version(parsed->version);

  const std::string_view allowed = action == ModelAction::kInfer ? "POST" : "GET";
  if (method != allowed) return respond(MethodNotAllowed(method, path, allowed));

  if (action == ModelAction::kInfer) return Infer(request, name, version, respond);

  absl::StatusOr<RuntimePtr> rt = repository_->Find(name, version);
  if (action == ModelAction::kReady) {
    if (!rt.ok() && rt.status().code() == absl::StatusCode::kNotFound) {
      return respond(Error(rt.status()));
    }
    const bool ready = rt.ok() && ready_.load();
    return respond(ready ? Json(200, "{\"ready\":true}") : Json(400, "{\"ready\":false}"));
  }
  if (!rt.ok()) return respond(Error(rt.status()));
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
    return respond(Json(200, std::move(out)));
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
  respond(Json(200, std::move(out)));
}

void KServeHandler::HandleRepository(const HttpRequest& request, std::string_view rest,
                                     HttpResponder& respond) {
  const std::string_view path = request.target().substr(0, request.target().find('?'));
  absl::StatusOr<RepositoryPath> route = ParseRepositoryPath(rest);
  if (!route.ok()) {
    if (route.status().code() == absl::StatusCode::kNotFound) {
      return respond(Json(404, EncodeError(StrCat("no such endpoint: ", path))));
    }
    rejections_->Note(Rejection::kBadModelName, request.remote_address(),
                      MessageOf(route.status()));
    return respond(Error(route.status()));
  }
  if (request.method() != "POST") return respond(MethodNotAllowed(request.method(), path, "POST"));
  // A body, if any, may carry parameters (Triton's config and file overrides); the model is
  // always read from its folder.
  const std::shared_ptr<const std::string> body = request.body();
  absl::StatusOr<std::vector<std::string>> params =
      DecodeRepositoryControlParameters(body ? std::string_view(*body) : std::string_view());
  if (!params.ok()) return respond(Error(params.status()));
  if (!params->empty()) {
    return respond(Error(absl::InvalidArgumentError(
        StrCat("parameter '", params->front(),
               "' is not supported; the model is read from its folder in the model repository"))));
  }
  const AdminCaller caller{request.remote_address(), request.header("Authorization")};
  ControlRepository(route->action, route->model, caller, [respond](absl::Status status) {
    respond(status.ok() ? Json(200, "{}") : Error(status));
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

namespace {

// This node as a routing candidate for `rt`: its live queue, per instance, and service time.
routing::Candidate LocalCandidate(const ModelRuntime& rt, const std::string& node,
                                  const std::string& zone) {
  const ModelStats& s = rt.stats();
  routing::Candidate c;
  c.node = node;
  c.local = true;
  c.zone = zone;
  c.queue_depth =
      static_cast<double>(std::max<int64_t>(0, s.queue_depth.load() + s.in_flight.load())) /
      std::max(1, rt.config().instances);
  c.service_ns = static_cast<double>(s.ewma_service_ns.load());
  return c;
}

}  // namespace

void KServeHandler::SetZone(std::string zone) {
  std::lock_guard<std::mutex> lock(zone_mu_);
  zone_ = std::move(zone);
}

std::string KServeHandler::zone() const {
  std::lock_guard<std::mutex> lock(zone_mu_);
  return zone_;
}

void KServeHandler::Infer(const HttpRequest& request, const std::string& model,
                          const std::string& version, HttpResponder& client_respond) {
  auto record = std::make_shared<InferRecord>();
  record->model = model;
  record->trace = telemetry::TraceIdFor(request.header(telemetry::kTraceparentHeader),
                                        request.header(routing::kTraceHeader));
  record->received = request.received();
  record->source = request.remote_address();
  {
    const std::shared_ptr<const std::string> body = request.body();
    record->request_body = body.get();
    record->request_bytes = body != nullptr ? body->size() : 0;
  }
  if (request.has_header(routing::kHopsHeader)) record->route = InferenceRoute::kForwardedIn;
  // Every answer below goes through `respond`; the caller's responder is not used after this.
  HttpResponder respond = Observed(record, std::move(client_respond));
  int hops = 0;
  if (request.has_header(routing::kHopsHeader)) {
    std::optional<uint64_t> h = ParseUint(request.header(routing::kHopsHeader));
    if (!h || *h == 0 || *h > 64) {
      return respond(Error(absl::InvalidArgumentError(
          StrCat(routing::kHopsHeader, " must be a positive integer (hops made so far)"))));
    }
    hops = static_cast<int>(*h);
    if (member_check_ == nullptr) {
      return respond(Error(absl::PermissionDeniedError(
          StrCat("node ", identity_.node_name, " takes no forwarded requests: it is in no mesh"))));
    }
    absl::Status member =
        member_check_->CheckForwarded(request, request.header(routing::kOriginHeader));
    if (!member.ok()) return respond(Error(member));
    if (refuse_forwarded_.load()) {
      // The origin retries elsewhere: this node told the mesh it is draining.
      return respond(Error(absl::UnavailableError(
          StrCat("node ", identity_.node_name, " is draining and takes no forwarded work"))));
    }
  }
  absl::Status why;
  RuntimePtr rt = Resolve(model, version, &why, &record->known_here);
  if (rt == nullptr) {
    if (forwarder_ == nullptr) return respond(Error(why));
    // Not served here (the model, or the version asked for): a peer may serve it. This node's
    // reason is the answer if no peer has it either.
    return Forward(request, model, version, hops, why, record, respond);
  }

  const bool mesh_form = InMeshForm(request);
  absl::StatusOr<InferRequest> decoded = DecodeHttpInfer(
      request, mesh_form, RawBodyInput(rt->config()), model, rt->version(), memory_budget_.get());
  if (!decoded.ok()) {
    NoteDecodeRefusal(rejections_.get(), decoded.status(), record->source);
    return respond(Error(decoded.status()));
  }
  InferRequest req = *std::move(decoded);

  const SteadyTime received = request.received();
  const std::string node = identity_.node_name;
  const AnswerBudget budget = AnswerBudgetFor(*record);  // its source lives in the record
  LocalDone done = [respond, received, node, forwarded = hops > 0, mesh_form, budget](
                       absl::StatusOr<InferResponse> result, const RuntimePtr& served) {
    if (!result.ok()) return respond(Error(result.status()));
    result->served_by = node;
    // A peer's request is answered in the form it came in.
    HttpResponse r = Encoded(*result, mesh_form, budget);
    if (r.status != 200) return respond(std::move(r));
    if (forwarded) {
      // The origin's estimate of this node, fresher than gossip.
      const ModelStats& s = served->stats();
      r.headers.emplace_back(
          routing::kLoadHeader,
          routing::EncodeLoadHeader(s.queue_depth.load(), s.in_flight.load(),
                                    served->config().instances, s.ewma_service_ns.load() / 1000,
                                    static_cast<uint64_t>(std::max<int64_t>(
                                        0, (SystemClock::Get().Now() - received).count() / 1000))));
    }
    const uint64_t compute_ns = result->compute_ns;
    r.on_sent = [served, received, compute_ns, held = std::move(r.on_sent)](SteadyTime sent) {
      if (held) held(sent);  // gives back the answer's memory
      const int64_t total = (sent - received).count();
      served->stats().overhead.Record(
          static_cast<uint64_t>(std::max<int64_t>(0, total - static_cast<int64_t>(compute_ns))));
    };
    respond(std::move(r));
  };
  RouteHosted(std::move(rt), version, std::move(req), hops, record, std::move(done),
              AnswerWith(respond, mesh_form, budget));
}

RuntimePtr KServeHandler::Resolve(std::string_view model, std::string_view version,
                                  absl::Status* why, bool* known_here) const {
  // REST paths were checked by the router; a gRPC request's name is checked here. An invalid
  // name is no model anywhere: it is not looked up, and a peer could only refuse it too.
  if (!IsValidModelName(model)) {
    *why = CheckModelName(model);
    if (rejections_ != nullptr) rejections_->Note(Rejection::kBadModelName, "", MessageOf(*why));
    return nullptr;
  }
  bool& known = *known_here;
  RuntimePtr rt = repository_->Get(model, version, &known);
  if (rt != nullptr) return rt;
  // A model this node knows nothing of is a peer's business: no reason is built for it.
  if (!known && forwarder_ != nullptr) return nullptr;
  // The slow path: the reason (the model failed to load, or lacks that version), or a version
  // that began serving since the first look.
  absl::StatusOr<RuntimePtr> found = repository_->Find(model, version);
  if (found.ok()) return *found;
  *why = found.status();
  return nullptr;
}

absl::Status KServeHandler::SubmitLocal(RuntimePtr rt, const std::string& requested_version,
                                        InferRequest&& request, const LocalDone& done) {
  for (int attempt = 0;; ++attempt) {
    absl::Status admitted = rt->Submit(
        std::move(request),
        [done, rt](absl::StatusOr<InferResponse> result) { done(std::move(result), rt); });
    // A refused request is left intact; only a retired runtime's refusal is worth another look
    // (a few at most: versions do not change that fast).
    if (admitted.ok() || !rt->retired() || attempt == 3) return admitted;
    RuntimePtr now = repository_->Get(request.model_name, requested_version);
    if (now == nullptr) return admitted;  // the version asked for is gone: say so
    rt = std::move(now);
    request.model_version = rt->version();
  }
}

void KServeHandler::RouteHosted(RuntimePtr rt, const std::string& requested_version,
                                InferRequest&& req, int hops,
                                const std::shared_ptr<InferRecord>& record, LocalDone done,
                                InferCallback forwarded_done) {
  if (forwarder_ == nullptr || hops > 0) {
    // A request forwarded here is served here (the hop limit is 1 by default).
    absl::Status admitted = SubmitLocal(std::move(rt), requested_version, std::move(req), done);
    if (!admitted.ok()) forwarded_done(admitted);
    return;
  }
  routing::RouteOptions options;
  options.local = LocalCandidate(*rt, identity_.node_name, zone());
  options.policy = rt->config().data_policy;
  options.local_zone = options.local->zone;
  // The record lives until the answer, after every send (a raw pointer fits std::function inline).
  options.on_send = [r = record.get()](const std::string&) {
    r->route = InferenceRoute::kOffloaded;
  };
  std::string trace = record->trace;
  if (forwarder_->Route(req, trace, options, forwarded_done) ==
      routing::Forwarder::Routed::kForwarded) {
    return;
  }
  absl::Status admitted = SubmitLocal(std::move(rt), requested_version, std::move(req), done);
  if (admitted.ok()) return;
  if (admitted.code() != absl::StatusCode::kResourceExhausted) return forwarded_done(admitted);
  // Overloaded here after all: a peer with room may take it, if the model's data policy and the
  // routing mode allow (the decision says, and why not).
  options.local->ready = false;
  options.if_no_peer = admitted;
  forwarder_->Route(req, std::move(trace), options, forwarded_done);
}

void KServeHandler::Forward(const HttpRequest& request, const std::string& model,
                            const std::string& version, int hops, const absl::Status& local_error,
                            const std::shared_ptr<InferRecord>& record, HttpResponder& respond) {
  routing::RouteOptions options;
  InferRequest req;
  const bool mesh_form = InMeshForm(request);
  if (!mesh_form && request.header("Inference-Header-Content-Length") == "0") {
    // A raw body: only a node with the model's config can interpret it, so it goes on as it came.
    absl::StatusOr<InferRequest> raw = RawHttpInfer(request, model, version);
    if (!raw.ok()) return respond(Error(raw.status()));
    req = *std::move(raw);
    options.raw_body = true;
  } else {
    absl::StatusOr<InferRequest> decoded =
        DecodeHttpInfer(request, mesh_form, nullptr, model, version, memory_budget_.get());
    if (!decoded.ok()) {
      NoteDecodeRefusal(rejections_.get(), decoded.status(), record->source);
      return respond(Error(decoded.status()));
    }
    req = *std::move(decoded);
  }
  ForwardDecoded(req, options.raw_body, hops, local_error, record,
                 AnswerWith(respond, mesh_form, AnswerBudgetFor(*record)));
}

void KServeHandler::ForwardDecoded(InferRequest& req, bool raw_body, int hops,
                                   const absl::Status& local_error,
                                   const std::shared_ptr<InferRecord>& record, InferCallback done) {
  routing::RouteOptions options;
  options.raw_body = raw_body;
  std::string trace = record->trace;
  // The record lives until the answer, after every send (a raw pointer fits std::function inline).
  options.on_send = [r = record.get()](const std::string&) {
    r->route = InferenceRoute::kOffloaded;
  };
  options.local_zone = zone();
  options.hops = hops;
  if (local_error.code() == absl::StatusCode::kNotFound) {
    // This node has the model but not the version asked for. If no peer serves that version
    // either, this node's answer, which lists its versions, says more than the mesh's.
    done = [done = std::move(done), local_error](absl::StatusOr<InferResponse> result) {
      if (result.status().code() == absl::StatusCode::kNotFound) return done(local_error);
      done(std::move(result));
    };
  } else {
    options.if_no_peer = local_error;
  }
  forwarder_->Route(req, std::move(trace), options, done);
}

void KServeHandler::InferDecoded(InferRequest req, std::string trace, SteadyTime received,
                                 InferDone client_done) {
  auto record = std::make_shared<InferRecord>();
  record->model = req.model_name;
  record->trace = std::move(trace);
  record->received = received;
  // Every answer below goes through `done`: counted and logged like a REST answer.
  InferDone done = [record, client_done = std::move(client_done),
                    metrics = metrics_.get()](absl::StatusOr<InferResponse> result) {
    const double seconds =
        std::chrono::duration<double>(SystemClock::Get().Now() - record->received).count();
    const InferenceRoute route = record->route.load();
    const int status = HttpStatusFor(result.status());
    if (metrics != nullptr) metrics->Record(record->model, record->known(), route, status, seconds);
    if (spdlog::should_log(spdlog::level::debug)) {
      telemetry::LogFields fields;
      fields.Add("model", record->model)
          .Add("route", RouteName(route))
          .Add("status", int64_t{status})
          .Add("duration_ms", seconds * 1e3)
          .Add("trace_id", record->trace)
          .Add("protocol", "grpc");
      if (result.ok()) fields.Add("served_by", result->served_by);
      spdlog::debug("inference");
    }
    client_done(std::move(result));
  };
  absl::Status why;
  RuntimePtr rt = Resolve(req.model_name, req.model_version, &why, &record->known_here);
  if (rt == nullptr) {
    if (forwarder_ == nullptr) return done(why);
    // Not served here (the model, or the version asked for): a peer may serve it.
    return ForwardDecoded(req, /*raw_body=*/false, /*hops=*/0, why, record, done);
  }
  const std::string requested_version = req.model_version;
  req.model_version = rt->version();
  const std::string node = identity_.node_name;
  LocalDone local = [done, received, node](absl::StatusOr<InferResponse> result,
                                           const RuntimePtr& served) {
    if (result.ok()) {
      result->served_by = node;
      const int64_t total = (SystemClock::Get().Now() - received).count();
      served->stats().overhead.Record(static_cast<uint64_t>(
          std::max<int64_t>(0, total - static_cast<int64_t>(result->compute_ns))));
    }
    done(std::move(result));
  };
  RouteHosted(std::move(rt), requested_version, std::move(req), /*hops=*/0, record,
              std::move(local), done);
}

}  // namespace hivemesh
