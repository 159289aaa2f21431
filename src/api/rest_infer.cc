#include "api/rest_infer.h"

#include <memory>
#include <optional>
#include <utility>

#include "api/infer_answer.h"
#include "api/member_check.h"
#include "base/memory_budget.h"
#include "base/rejections.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "base/timeouts.h"
#include "codec/infer_codec.h"
#include "codec/mesh_tensors.h"
#include "codec/status_codes.h"
#include "routing/dispatcher.h"
#include "routing/forwarder.h"
#include "serving/model_config.h"
#include "telemetry/trace.h"

namespace hivemesh {
namespace {

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
  req.cancelled = request.cancelled();
  return req;
}

// A successful inference as an HTTP response, in the form the request came in (the mesh tensor
// form: a peer sent it on here), within the memory budget; or why not.
HttpResponse Encoded(const InferResponse& result, bool mesh_form, const AnswerBudget& budget) {
  absl::StatusOr<HttpResponse> r =
      mesh_form ? EncodeAnswerForMesh(result, budget) : EncodeAnswer(result, budget);
  return r.ok() ? *std::move(r) : ErrorResponse(r.status());
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
  req.cancelled = request.cancelled();  // a mesh link's CANCEL reaches the model's queue
  return req;
}

// The hop count of a request a peer forwarded, or why it is not one.
absl::StatusOr<int> ParseHops(const HttpRequest& request) {
  std::optional<uint64_t> h = ParseUint(request.header(routing::kHopsHeader));
  if (!h || *h == 0 || *h > 64) {
    return absl::InvalidArgumentError(
        StrCat(routing::kHopsHeader, " must be a positive integer (hops made so far)"));
  }
  return static_cast<int>(*h);
}

}  // namespace

HttpResponse JsonResponse(int status, std::string body) {
  HttpResponse r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

HttpResponse ErrorResponse(const absl::Status& status) {
  HttpResponse r = JsonResponse(HttpStatusFor(status), EncodeError(MessageOf(status)));
  if (status.code() == absl::StatusCode::kResourceExhausted ||
      status.code() == absl::StatusCode::kUnavailable) {
    r.headers.emplace_back("Retry-After", "1");
  }
  return r;
}

void ServeRestInfer(const RestInferNode& node, const HttpRequest& request, const std::string& model,
                    const std::string& version, HttpResponder client_respond) {
  routing::Dispatcher* const dispatcher = node.dispatcher;
  std::shared_ptr<routing::InferCall> call =
      dispatcher->NewCall(model,
                          telemetry::TraceIdFor(request.header(telemetry::kTraceparentHeader),
                                                request.header(routing::kTraceHeader)),
                          request.received(), routing::Protocol::kRest);
  call->source = request.remote_address();
  const bool forwarded = request.has_header(routing::kHopsHeader);
  if (forwarded) call->route = routing::InferenceRoute::kForwardedIn;
  // Every answer below goes through `respond`, which finishes the call; the caller's responder is
  // not used after this.
  HttpResponder respond = [call, dispatcher,
                           client_respond = std::move(client_respond)](HttpResponse r) {
    // The node that forwarded a request here knows its trace id already.
    if (call->route.load() != routing::InferenceRoute::kForwardedIn) {
      r.headers.emplace_back(routing::kTraceHeader, call->trace);
    }
    std::string_view served_by;
    for (const auto& [name, value] : r.headers) {
      if (name == routing::kServedByHeader) served_by = value;
    }
    dispatcher->Finish(*call, r.status, served_by);
    client_respond(std::move(r));
  };
  if (forwarded) {
    absl::StatusOr<int> hops = ParseHops(request);
    if (!hops.ok()) return respond(ErrorResponse(hops.status()));
    call->hops = *hops;
    if (node.member_check == nullptr) {
      return respond(ErrorResponse(absl::PermissionDeniedError(StrCat(
          "node ", dispatcher->node_name(), " takes no forwarded requests: it is in no mesh"))));
    }
    absl::Status member =
        node.member_check->CheckForwarded(request, request.header(routing::kOriginHeader));
    if (!member.ok()) return respond(ErrorResponse(member));
  }

  const bool mesh_form = InMeshForm(request);
  const std::shared_ptr<const std::string> body = request.body();
  if (mesh_form && body != nullptr) {
    // A form of another release: 415, which a sender takes as "another peer may read it".
    if (std::optional<int> v = MeshFormVersionOf(*body); v && *v != kMeshFormVersion) {
      return respond(JsonResponse(
          415,
          EncodeError(StrCat("the mesh tensor form version ", *v,
                             " is not known here: this node reads version ", kMeshFormVersion))));
    }
  }
  // Its source lives in the call, which lives until the answer.
  const AnswerBudget budget{node.memory_budget, node.rejections, body.get(),
                            body != nullptr ? body->size() : 0, call->source};
  // Called by Infer before it returns, so the request may be read by reference.
  auto decode = [&request, &node, &model, &call, mesh_form](
                    const ModelConfig* config,
                    const std::string& decode_version) -> absl::StatusOr<routing::DecodedInfer> {
    if (config == nullptr && !mesh_form &&
        request.header("Inference-Header-Content-Length") == "0") {
      // A raw body: only a node with the model's config can interpret it, so it goes on as it
      // came.
      HM_ASSIGN_OR_RETURN(InferRequest raw, RawHttpInfer(request, model, decode_version));
      return routing::DecodedInfer{std::move(raw), /*raw_body=*/true};
    }
    absl::StatusOr<InferRequest> decoded =
        DecodeHttpInfer(request, mesh_form, config != nullptr ? RawBodyInput(*config) : nullptr,
                        model, decode_version, node.memory_budget);
    if (!decoded.ok()) {
      NoteDecodeRefusal(node.rejections, decoded.status(), call->source);
      return decoded.status();
    }
    return routing::DecodedInfer{*std::move(decoded), /*raw_body=*/false};
  };
  routing::Dispatcher::Done done = [respond, call, dispatcher, mesh_form, budget](
                                       absl::StatusOr<InferResponse> result,
                                       const RuntimePtr& served) {
    if (!result.ok()) return respond(ErrorResponse(result.status()));
    // A peer's request is answered in the form it came in.
    HttpResponse r = Encoded(*result, mesh_form, budget);
    if (served == nullptr || r.status != 200) return respond(std::move(r));
    // Served here.
    if (call->hops > 0) {
      // The origin's estimate of this node, fresher than gossip.
      r.headers.emplace_back(routing::kLoadHeader, dispatcher->LoadReport(*served, call->received));
    }
    r.on_sent = [served, received = call->received, compute_ns = result->compute_ns,
                 held = std::move(r.on_sent)](SteadyTime sent) {
      if (held) held(sent);  // gives back the answer's memory
      routing::Dispatcher::RecordOverhead(*served, received, sent, compute_ns);
    };
    respond(std::move(r));
  };
  dispatcher->Infer(call, version, decode, std::move(done));
}

HttpResponse MethodNotAllowed(std::string_view method, std::string_view path,
                              std::string_view allowed) {
  HttpResponse r = JsonResponse(
      405, EncodeError(StrCat("method ", method, " is not allowed on ", path, "; use ", allowed)));
  r.headers.emplace_back("Allow", std::string(allowed));
  return r;
}

}  // namespace hivemesh
