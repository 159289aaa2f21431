// GrpcServer: loads libhivemesh_grpc.so (grpc_service.cc) and starts the service over this node's
// KServeHandler. Nothing here includes gRPC or protobuf; see grpc_node.h for why.
#include "api/grpc/grpc_server.h"

#include "api/admin_access.h"
#include "api/grpc/grpc_node.h"
#include "api/kserve_handler.h"
#include "base/plugin.h"
#include "base/strings.h"
#include "codec/status_codes.h"
#include "routing/dispatcher.h"
#include "telemetry/trace.h"

namespace hivemesh {
namespace {

// The node as the plugin sees it: KServeHandler and its repository.
class KServeNode final : public GrpcNode {
 public:
  explicit KServeNode(KServeHandler* handler) : handler_(handler) {}

  std::string server_name() const override { return handler_->identity().name; }
  std::string server_version() const override { return handler_->identity().version; }
  bool ready() const override { return handler_->ready(); }
  absl::StatusOr<RuntimePtr> Find(const std::string& name,
                                  const std::string& version) const override {
    return handler_->repository()->Find(name, version);
  }
  std::vector<std::string> Versions(const std::string& name) const override {
    return handler_->repository()->Versions(name);
  }
  std::vector<ModelEntry> Index() const override { return handler_->repository()->Index(); }
  std::vector<RuntimePtr> Runtimes() const override { return handler_->repository()->Runtimes(); }
  void LoadModel(const std::string& name, std::string_view peer, std::string_view authorization,
                 std::function<void(absl::Status)> done) override {
    Control(RepositoryAction::kLoad, name, peer, authorization, std::move(done));
  }
  void UnloadModel(const std::string& name, std::string_view peer, std::string_view authorization,
                   std::function<void(absl::Status)> done) override {
    Control(RepositoryAction::kUnload, name, peer, authorization, std::move(done));
  }
  std::string TraceId(std::string_view traceparent, std::string_view trace_header) override {
    return telemetry::TraceIdFor(traceparent, trace_header);
  }
  // The gRPC front end of an inference: the request is decoded already; the dispatcher serves it
  // here or on a peer, like a REST one, and the answer is finished with the HTTP status its
  // error maps to (codec/status_codes.h), so both protocols count alike.
  void Infer(InferRequest request, std::string trace, SteadyTime received,
             std::function<void(absl::StatusOr<InferResponse>)> done) override {
    routing::Dispatcher* const dispatcher = handler_->dispatcher();
    std::shared_ptr<routing::InferCall> call = dispatcher->NewCall(
        request.model_name, std::move(trace), received, routing::Protocol::kGrpc);
    const std::string version = request.model_version;
    auto decode = [&request](const ModelConfig*,
                             const std::string&) -> absl::StatusOr<routing::DecodedInfer> {
      return routing::DecodedInfer{std::move(request), /*raw_body=*/false};
    };
    dispatcher->Infer(call, version, decode,
                      [call, dispatcher, done = std::move(done)](
                          absl::StatusOr<InferResponse> result, const RuntimePtr& served) {
                        if (result.ok() && served != nullptr) {
                          routing::Dispatcher::RecordOverhead(*served, call->received,
                                                              dispatcher->clock().Now(),
                                                              result->compute_ns);
                        }
                        dispatcher->Finish(*call, HttpStatusFor(result.status()),
                                           result.ok() ? std::string_view(result->served_by) : "");
                        done(std::move(result));
                      });
  }
  absl::Status Authorize(std::string_view model, bool infer, std::string_view peer,
                         std::string_view authorization) const override {
    // gRPC callers present no certificate: a bearer token names them, or they are anyone.
    return handler_->Authorize("", authorization, AddressOfGrpcPeer(peer), model,
                               infer ? PolicyVerb::kInfer : PolicyVerb::kRead);
  }
  absl::StatusOr<std::function<bool(std::string_view model)>> Readable(
      std::string_view peer, std::string_view authorization) const override {
    return handler_->Readable("", authorization, AddressOfGrpcPeer(peer));
  }
  MemoryBudget* memory_budget() const override { return handler_->memory_budget(); }
  void NoteRejection(Rejection reason, std::string_view detail) override {
    if (handler_->rejections() != nullptr) handler_->rejections()->Note(reason, "", detail);
  }

 private:
  void Control(RepositoryAction action, const std::string& name, std::string_view peer,
               std::string_view authorization, std::function<void(absl::Status)> done) {
    const std::string address = AddressOfGrpcPeer(peer);
    handler_->ControlRepository(action, name, AdminCaller{address, authorization}, std::move(done));
  }

  KServeHandler* const handler_;
};

// Loaded once, on first use, and never unloaded (gRPC keeps threads of its own).
absl::StatusOr<GrpcStartFn> PluginEntry() {
  static const absl::StatusOr<GrpcStartFn> entry = []() -> absl::StatusOr<GrpcStartFn> {
    absl::StatusOr<void*> start = LoadPluginSymbol(kGrpcPluginFile, kGrpcPluginEntry);
    if (!start.ok()) {
      return absl::FailedPreconditionError(
          StrCat("grpc_address: the gRPC plugin: ", MessageOf(start.status())));
    }
    return reinterpret_cast<GrpcStartFn>(*start);
  }();
  return entry;
}

}  // namespace

struct GrpcServer::Impl {
  std::unique_ptr<KServeNode> node;
  std::unique_ptr<GrpcService> service;  // declared after node: stops before node goes
};

GrpcServer::GrpcServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

GrpcServer::~GrpcServer() { Shutdown(std::chrono::milliseconds(0)); }

absl::StatusOr<std::unique_ptr<GrpcServer>> GrpcServer::Create(const GrpcServerOptions& options,
                                                               KServeHandler* handler) {
  absl::StatusOr<GrpcStartFn> start = PluginEntry();
  if (!start.ok()) return start.status();
  auto impl = std::make_unique<Impl>();
  impl->node = std::make_unique<KServeNode>(handler);
  absl::StatusOr<std::unique_ptr<GrpcService>> service =
      absl::InternalError("the gRPC plugin did not answer");
  (*start)(options, impl->node.get(), &service);
  if (!service.ok()) return service.status();
  impl->service = std::move(*service);
  return std::unique_ptr<GrpcServer>(new GrpcServer(std::move(impl)));
}

uint16_t GrpcServer::port() const { return impl_->service->port(); }

void GrpcServer::Shutdown(std::chrono::milliseconds grace) {
  if (impl_ != nullptr && impl_->service != nullptr) impl_->service->Shutdown(grace);
}

}  // namespace hivemesh
