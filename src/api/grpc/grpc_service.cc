// libhivemesh_grpc.so: inference.GRPCInferenceService over a GrpcNode (see grpc_node.h), with
// gRPC's callback API.
#include <grpc/support/time.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/resource_quota.h>

#include <deque>
#include <limits>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "api/grpc/grpc_convert.h"
#include "api/grpc/grpc_node.h"
#include "base/strings.h"
#include "base/timeouts.h"
#include "grpc_service.grpc.pb.h"

namespace hivemesh {
namespace {

using grpc::CallbackServerContext;
using grpc::ServerUnaryReactor;
using grpc_api::ToGrpcStatus;

ServerUnaryReactor* Done(CallbackServerContext* ctx, const grpc::Status& status) {
  ServerUnaryReactor* r = ctx->DefaultReactor();
  r->Finish(status);
  return r;
}
ServerUnaryReactor* Done(CallbackServerContext* ctx, const absl::Status& status) {
  return Done(ctx, ToGrpcStatus(status));
}

// A client metadata value, or empty.
std::string_view Metadata(const CallbackServerContext* ctx, std::string_view key) {
  const auto& md = ctx->client_metadata();
  auto it = md.find(grpc::string_ref(key.data(), key.size()));
  if (it == md.end()) return {};
  return std::string_view(it->second.data(), it->second.size());
}

void FillDuration(const DurationStat& d, inference::StatisticDuration* out) {
  out->set_count(d.count.load(std::memory_order_relaxed));
  out->set_ns(d.ns.load(std::memory_order_relaxed));
}

void FillStats(const ModelRuntime& rt, inference::ModelStatistics* out) {
  const ModelStats& s = rt.stats();
  out->set_name(rt.config().name);
  out->set_version(rt.version());
  out->set_last_inference(s.last_inference_ms.load());
  out->set_inference_count(s.inference_count.load());
  out->set_execution_count(s.execution_count.load());
  auto* st = out->mutable_inference_stats();
  FillDuration(s.success, st->mutable_success());
  FillDuration(s.fail, st->mutable_fail());
  FillDuration(s.queue, st->mutable_queue());
  FillDuration(s.compute_input, st->mutable_compute_input());
  FillDuration(s.compute_infer, st->mutable_compute_infer());
  FillDuration(s.compute_output, st->mutable_compute_output());
  for (const auto& [size, d] : s.batch_stats.Snapshot()) {
    auto* b = out->add_batch_stats();
    b->set_batch_size(size);
    auto fill = [count = d.count](inference::StatisticDuration* o, uint64_t ns) {
      o->set_count(count);
      o->set_ns(ns);
    };
    fill(b->mutable_compute_input(), d.input_ns);
    fill(b->mutable_compute_infer(), d.infer_ns);
    fill(b->mutable_compute_output(), d.output_ns);
  }
}

void FillTensorMetadata(
    const std::vector<TensorConfig>& tensors,
    google::protobuf::RepeatedPtrField<inference::ModelMetadataResponse::TensorMetadata>* out) {
  for (const TensorConfig& t : tensors) {
    auto* m = out->Add();
    m->set_name(t.name);
    m->set_datatype(std::string(DataTypeName(t.type)));
    for (int64_t d : t.dims) m->add_shape(d);
  }
}

// A decoded gRPC inference with its deadline (the call's and the "timeout" parameter's, the
// earlier) and trace id, ready for GrpcNode::Infer.
struct PreparedInfer {
  InferRequest request;
  bool raw_outputs = false;
  uint64_t reserved_bytes = 0;  // what the request holds of the budget while it is answered
  std::string trace;
  SteadyTime received;
};

// Counts a request or answer refused for want of memory.
void NoteIfRefused(GrpcNode* node, const absl::Status& status, Rejection too_large) {
  if (status.code() == absl::StatusCode::kResourceExhausted) {
    node->NoteRejection(Rejection::kMemoryBudget, MessageOf(status));
  } else if (status.code() == absl::StatusCode::kOutOfRange) {
    node->NoteRejection(too_large, MessageOf(status));
  }
}

// `proto`'s raw contents are taken out of it (FromProto).
absl::StatusOr<PreparedInfer> Prepare(const CallbackServerContext* ctx, GrpcNode* node,
                                      inference::ModelInferRequest& proto) {
  PreparedInfer p;
  p.received = std::chrono::steady_clock::now();
  if (absl::Status allowed = node->Authorize(proto.model_name(), /*infer=*/true, ctx->peer(),
                                             Metadata(ctx, "authorization"));
      !allowed.ok()) {
    return allowed;
  }
  absl::StatusOr<grpc_api::DecodedRequest> decoded =
      grpc_api::FromProto(proto, node->memory_budget());
  if (!decoded.ok()) {
    NoteIfRefused(node, decoded.status(), Rejection::kMemoryBudget);
    return decoded.status();
  }
  p.request = std::move(decoded->request);
  p.raw_outputs = decoded->raw_outputs;
  p.reserved_bytes = decoded->reserved_bytes;
  // The earlier of the "timeout" parameter and the call's deadline, both cut to
  // kMaxRequestTimeout. The deadline is read as gRPC keeps it (seconds and nanoseconds): its
  // conversion to a system_clock time overflows for deadlines centuries away.
  std::optional<Nanos> timeout;
  if (decoded->timeout) timeout = *decoded->timeout;
  const gpr_timespec deadline = ctx->raw_deadline();
  if (gpr_time_cmp(deadline, gpr_inf_future(deadline.clock_type)) != 0) {
    const gpr_timespec left = gpr_time_sub(deadline, gpr_now(deadline.clock_type));
    const Nanos call = ClampedRemaining(left.tv_sec, left.tv_nsec);
    if (!timeout || call < *timeout) timeout = call;
  }
  if (timeout) p.request.deadline = DeadlineAfter(p.received, *timeout);
  p.trace = node->TraceId(Metadata(ctx, "traceparent"), Metadata(ctx, "hivemesh-trace"));
  return p;
}

// Reserves the memory of the answer to `result` (AnswerBytes), or says why not: an answer the
// budget can never hold is OUT_OF_RANGE (counted as response_too_large), telling the client to
// ask for raw outputs when typed contents are what makes it large.
absl::StatusOr<MemoryBudget::Reservation> ReserveAnswer(GrpcNode* node, const InferResponse& result,
                                                        bool raw, uint64_t request_bytes) {
  const uint64_t bytes = grpc_api::AnswerBytes(result, raw);
  absl::StatusOr<MemoryBudget::Reservation> r =
      ReserveFor(node->memory_budget(), bytes, raw ? "the answer" : "the answer in typed contents",
                 raw ? "ask for fewer outputs, or send smaller inputs"
                     : "ask for raw outputs (request parameter binary_data_output: true)",
                 request_bytes);
  if (!r.ok()) NoteIfRefused(node, r.status(), Rejection::kResponseTooLarge);
  return r;
}

// ModelInfer's reactor: holds the answer's reservation until gRPC is done with the answer.
class InferReactor final : public ServerUnaryReactor {
 public:
  void Finish(const grpc::Status& status, MemoryBudget::Reservation answer) {
    answer_ = std::move(answer);
    ServerUnaryReactor::Finish(status);
  }
  void OnDone() override { delete this; }

 private:
  MemoryBudget::Reservation answer_;
};

// ModelStreamInfer: reads requests one after another, runs each like ModelInfer (several may be
// in flight), and writes each answer when it is ready, one write at a time. A failed request
// answers error_message and the stream goes on. The stream ends after the client half-closes and
// every answer is written.
class StreamReactor final : public grpc::ServerBidiReactor<inference::ModelInferRequest,
                                                           inference::ModelStreamInferResponse> {
 public:
  StreamReactor(CallbackServerContext* ctx, GrpcNode* node) : ctx_(ctx), node_(node) {
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      mu_.Lock();
      reads_done_ = true;
      MaybeFinishAndUnlock();
      return;
    }
    absl::StatusOr<PreparedInfer> p = Prepare(ctx_, node_, request_);
    {
      absl::MutexLock lock(&mu_);
      ++pending_;
    }
    if (!p.ok()) {
      Answer(p.status());
    } else {
      const bool raw = p->raw_outputs;
      node_->Infer(std::move(p->request), std::move(p->trace), p->received,
                   [this, raw, held = p->reserved_bytes](absl::StatusOr<InferResponse> result) {
                     if (!result.ok()) return Answer(result.status());
                     absl::StatusOr<MemoryBudget::Reservation> memory =
                         ReserveAnswer(node_, *result, raw, held);
                     if (!memory.ok()) return Answer(memory.status());
                     Queued q;
                     grpc_api::ToProto(*result, raw, q.response.mutable_infer_response());
                     q.memory = *std::move(memory);
                     Answer(std::move(q));
                   });
    }
    StartRead(&request_);  // the request's bytes were taken by Prepare
  }

  void OnWriteDone(bool ok) override {
    mu_.Lock();
    queue_.pop_front();
    if (!ok) broken_ = true;  // the client is gone: later answers are dropped
    if (!queue_.empty() && !broken_) {
      auto* next = &queue_.front().response;
      mu_.Unlock();
      StartWrite(next);
      return;
    }
    queue_.clear();
    writing_ = false;
    MaybeFinishAndUnlock();
  }

  void OnDone() override { delete this; }

 private:
  // An answer waiting to be written, with its memory reservation (released once written).
  struct Queued {
    inference::ModelStreamInferResponse response;
    MemoryBudget::Reservation memory;
  };

  void Answer(const absl::Status& error) {
    Queued q;
    q.response.set_error_message(std::string(MessageOf(error)));
    Answer(std::move(q));
  }
  void Answer(Queued&& answer) {
    mu_.Lock();
    --pending_;
    if (broken_) return MaybeFinishAndUnlock();
    queue_.push_back(std::move(answer));  // deque: the element being written stays put
    if (writing_) return mu_.Unlock();
    writing_ = true;
    auto* next = &queue_.front().response;
    mu_.Unlock();
    StartWrite(next);
  }
  // Finishes once reads are done, no answer is pending and nothing is being written; releases
  // mu_ either way (before finishing).
  void MaybeFinishAndUnlock() ABSL_UNLOCK_FUNCTION(mu_) {
    if (!reads_done_ || pending_ > 0 || writing_ || finished_) return mu_.Unlock();
    finished_ = true;
    mu_.Unlock();
    Finish(grpc::Status::OK);
  }

  CallbackServerContext* const ctx_;
  GrpcNode* const node_;
  inference::ModelInferRequest request_;  // read into by one read at a time
  absl::Mutex mu_;
  std::deque<Queued> queue_ ABSL_GUARDED_BY(mu_);  // front is in write
  int pending_ ABSL_GUARDED_BY(mu_) = 0;
  bool reads_done_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

class Service final : public inference::GRPCInferenceService::CallbackService {
 public:
  explicit Service(GrpcNode* node) : node_(node) {}

  ServerUnaryReactor* ServerLive(CallbackServerContext* ctx, const inference::ServerLiveRequest*,
                                 inference::ServerLiveResponse* response) override {
    response->set_live(true);
    return Done(ctx, grpc::Status::OK);
  }

  ServerUnaryReactor* ServerReady(CallbackServerContext* ctx, const inference::ServerReadyRequest*,
                                  inference::ServerReadyResponse* response) override {
    response->set_ready(node_->ready());
    return Done(ctx, grpc::Status::OK);
  }

  ServerUnaryReactor* ModelReady(CallbackServerContext* ctx,
                                 const inference::ModelReadyRequest* request,
                                 inference::ModelReadyResponse* response) override {
    if (absl::Status allowed = node_->Authorize(request->name(), /*infer=*/false, ctx->peer(),
                                                Metadata(ctx, "authorization"));
        !allowed.ok()) {
      return Done(ctx, allowed);
    }
    absl::StatusOr<RuntimePtr> rt = node_->Find(request->name(), request->version());
    if (!rt.ok() && rt.status().code() == absl::StatusCode::kNotFound) {
      return Done(ctx, rt.status());
    }
    response->set_ready(rt.ok() && node_->ready());
    return Done(ctx, grpc::Status::OK);
  }

  ServerUnaryReactor* ServerMetadata(CallbackServerContext* ctx,
                                     const inference::ServerMetadataRequest*,
                                     inference::ServerMetadataResponse* response) override {
    response->set_name(node_->server_name());
    response->set_version(node_->server_version());
    for (const char* e : {"binary_tensor_data", "statistics", "model_repository"}) {
      response->add_extensions(e);
    }
    return Done(ctx, grpc::Status::OK);
  }

  ServerUnaryReactor* ModelMetadata(CallbackServerContext* ctx,
                                    const inference::ModelMetadataRequest* request,
                                    inference::ModelMetadataResponse* response) override {
    if (absl::Status allowed = node_->Authorize(request->name(), /*infer=*/false, ctx->peer(),
                                                Metadata(ctx, "authorization"));
        !allowed.ok()) {
      return Done(ctx, allowed);
    }
    absl::StatusOr<RuntimePtr> rt = node_->Find(request->name(), request->version());
    if (!rt.ok()) return Done(ctx, rt.status());
    const ModelConfig& c = (*rt)->config();
    response->set_name(c.name);
    if (request->version().empty()) {
      for (const std::string& v : node_->Versions(request->name())) {
        response->add_versions(v);
      }
    } else {
      response->add_versions(request->version());
    }
    response->set_platform(c.platform);
    FillTensorMetadata(c.inputs, response->mutable_inputs());
    FillTensorMetadata(c.outputs, response->mutable_outputs());
    return Done(ctx, grpc::Status::OK);
  }

  ServerUnaryReactor* ModelInfer(CallbackServerContext* ctx,
                                 const inference::ModelInferRequest* request,
                                 inference::ModelInferResponse* response) override {
    // The request's raw bytes are taken rather than copied: gRPC does not read the message it
    // handed over again, and keeps it (ours to change) until the call is done.
    absl::StatusOr<PreparedInfer> p =
        Prepare(ctx, node_, *const_cast<inference::ModelInferRequest*>(request));
    if (!p.ok()) return Done(ctx, p.status());
    auto* reactor = new InferReactor();  // deletes itself when the call is done
    const bool raw = p->raw_outputs;
    // The trace id goes back as REST's Hivemesh-Trace header does.
    ctx->AddTrailingMetadata(grpc_api::kTraceMetadata, p->trace);
    // The reactor, `ctx` and `response` live until Finish, which only this callback calls.
    node_->Infer(std::move(p->request), std::move(p->trace), p->received,
                 [reactor, ctx, response, raw, node = node_,
                  held = p->reserved_bytes](absl::StatusOr<InferResponse> result) {
                   if (!result.ok()) return reactor->Finish(ToGrpcStatus(result.status()), {});
                   absl::StatusOr<MemoryBudget::Reservation> memory =
                       ReserveAnswer(node, *result, raw, held);
                   if (!memory.ok()) return reactor->Finish(ToGrpcStatus(memory.status()), {});
                   grpc_api::ToProto(*result, raw, response);
                   if (!result->served_by.empty()) {
                     ctx->AddTrailingMetadata(grpc_api::kServedByMetadata, result->served_by);
                   }
                   reactor->Finish(grpc::Status::OK, *std::move(memory));
                 });
    return reactor;
  }

  grpc::ServerBidiReactor<inference::ModelInferRequest, inference::ModelStreamInferResponse>*
  ModelStreamInfer(CallbackServerContext* ctx) override {
    return new StreamReactor(ctx, node_);
  }

  ServerUnaryReactor* ModelStatistics(CallbackServerContext* ctx,
                                      const inference::ModelStatisticsRequest* request,
                                      inference::ModelStatisticsResponse* response) override {
    if (request->name().empty()) {
      if (!request->version().empty()) {
        return Done(ctx, absl::InvalidArgumentError("a version needs a model name"));
      }
      absl::StatusOr<std::function<bool(std::string_view)>> readable =
          node_->Readable(ctx->peer(), Metadata(ctx, "authorization"));
      if (!readable.ok()) return Done(ctx, readable.status());
      for (const RuntimePtr& rt : node_->Runtimes()) {
        if ((*readable)(rt->config().name)) FillStats(*rt, response->add_model_stats());
      }
      return Done(ctx, grpc::Status::OK);
    }
    if (absl::Status allowed = node_->Authorize(request->name(), /*infer=*/false, ctx->peer(),
                                                Metadata(ctx, "authorization"));
        !allowed.ok()) {
      return Done(ctx, allowed);
    }
    absl::StatusOr<RuntimePtr> rt = node_->Find(request->name(), request->version());
    if (!rt.ok()) return Done(ctx, rt.status());
    if (!request->version().empty()) {
      FillStats(**rt, response->add_model_stats());
      return Done(ctx, grpc::Status::OK);
    }
    for (const std::string& v : node_->Versions(request->name())) {
      absl::StatusOr<RuntimePtr> vr = node_->Find(request->name(), v);
      if (vr.ok()) FillStats(**vr, response->add_model_stats());
    }
    return Done(ctx, grpc::Status::OK);
  }

  ServerUnaryReactor* RepositoryIndex(CallbackServerContext* ctx,
                                      const inference::RepositoryIndexRequest* request,
                                      inference::RepositoryIndexResponse* response) override {
    absl::StatusOr<std::function<bool(std::string_view)>> readable =
        node_->Readable(ctx->peer(), Metadata(ctx, "authorization"));
    if (!readable.ok()) return Done(ctx, readable.status());
    for (const ModelEntry& e : node_->Index()) {
      if (request->ready() && e.state != "READY") continue;
      if (!(*readable)(e.name)) continue;
      auto* m = response->add_models();
      m->set_name(e.name);
      m->set_version(e.version);
      m->set_state(e.state);
      m->set_reason(e.reason);
    }
    return Done(ctx, grpc::Status::OK);
  }

  ServerUnaryReactor* RepositoryModelLoad(CallbackServerContext* ctx,
                                          const inference::RepositoryModelLoadRequest* request,
                                          inference::RepositoryModelLoadResponse*) override {
    return Control(ctx, *request, &GrpcNode::LoadModel);
  }

  ServerUnaryReactor* RepositoryModelUnload(CallbackServerContext* ctx,
                                            const inference::RepositoryModelUnloadRequest* request,
                                            inference::RepositoryModelUnloadResponse*) override {
    return Control(ctx, *request, &GrpcNode::UnloadModel);
  }

 private:
  // A load or unload: checked here, carried out on the repository's control thread, answered
  // when done (a load once the model serves, an unload once its requests are answered).
  template <typename Request>
  ServerUnaryReactor* Control(CallbackServerContext* ctx, const Request& request,
                              void (GrpcNode::*action)(const std::string&, std::string_view,
                                                       std::string_view,
                                                       std::function<void(absl::Status)>)) {
    if (request.model_name().empty()) {
      return Done(ctx, absl::InvalidArgumentError("model_name is required"));
    }
    if (!request.parameters().empty()) {
      return Done(ctx, absl::InvalidArgumentError(
                           StrCat("parameter '", request.parameters().begin()->first,
                                  "' is not supported; the model is read from its folder in the "
                                  "model repository")));
    }
    // Who calls is checked by the node, as for REST (api/admin_access.h).
    ServerUnaryReactor* reactor = ctx->DefaultReactor();
    const std::string peer = ctx->peer();
    (node_->*action)(request.model_name(), peer, Metadata(ctx, "authorization"),
                     [reactor](absl::Status status) { reactor->Finish(ToGrpcStatus(status)); });
    return reactor;
  }

  GrpcNode* const node_;
};

class Server final : public GrpcService {
 public:
  Server(std::unique_ptr<Service> service, std::unique_ptr<grpc::Server> server, int port)
      : service_(std::move(service)), server_(std::move(server)), port_(port) {}
  ~Server() override { Shutdown(std::chrono::milliseconds(0)); }

  uint16_t port() const override { return static_cast<uint16_t>(port_); }

  void Shutdown(std::chrono::milliseconds grace) override {
    if (shut_down_) return;
    shut_down_ = true;
    server_->Shutdown(std::chrono::system_clock::now() + grace);
    server_->Wait();
  }

 private:
  const std::unique_ptr<Service> service_;  // outlives server_'s calls
  const std::unique_ptr<grpc::Server> server_;
  const int port_;
  bool shut_down_ = false;
};

absl::StatusOr<std::unique_ptr<GrpcService>> Start(const GrpcServerOptions& options,
                                                   GrpcNode* node) {
  if (options.max_message_bytes == 0 ||
      options.max_message_bytes > static_cast<uint64_t>(std::numeric_limits<int>::max())) {
    return absl::InvalidArgumentError(
        StrCat("grpc_max_message_bytes: ", options.max_message_bytes, " is outside [1, 2^31)"));
  }
  auto service = std::make_unique<Service>(node);
  int port = 0;
  grpc::ServerBuilder builder;
  // Without this, gRPC sets SO_REUSEPORT and two nodes could silently share one port.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.SetMaxReceiveMessageSize(static_cast<int>(options.max_message_bytes));
  if (options.memory_quota_bytes > 0) {
    // What gRPC may hold of messages being read and written, over every connection.
    grpc::ResourceQuota quota("hivemesh-grpc");
    quota.Resize(static_cast<size_t>(options.memory_quota_bytes));
    builder.SetResourceQuota(quota);
  }
  builder.SetMaxSendMessageSize(static_cast<int>(options.max_message_bytes));
  builder.AddListeningPort(options.address, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(service.get());
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    if (server != nullptr) server->Shutdown();
    return absl::UnavailableError(StrCat("grpc_address: cannot listen on ", options.address,
                                         " (address in use, or not a local host:port)"));
  }
  return std::make_unique<Server>(std::move(service), std::move(server), port);
}

}  // namespace
}  // namespace hivemesh

extern "C" __attribute__((visibility("default"))) void hivemesh_grpc_start(
    const hivemesh::GrpcServerOptions& options, hivemesh::GrpcNode* node,
    absl::StatusOr<std::unique_ptr<hivemesh::GrpcService>>* out) {
  *out = hivemesh::Start(options, node);
}
