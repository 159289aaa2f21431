// The boundary between the agent and libhivemesh_grpc.so, the plugin that holds the gRPC service
// (grpc_service.cc) and everything that includes gRPC or protobuf. The agent loads the plugin only
// when grpc_address is set (grpc_server.cc), so a node without gRPC never maps libgrpc++ and the
// ~25 libraries it pulls in (about 6 MiB resident).
//
// Like the OpenCV plugin, the plugin calls the node only through the virtual functions below, so
// it links none of the node's objects' code; its private copies of `tensor` and `base` are pure.
//
// Thread safety: every GrpcNode function may be called from any gRPC thread.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "api/grpc/grpc_server.h"
#include "base/memory_budget.h"
#include "base/rejections.h"
#include "serving/model_repository.h"
#include "tensor/inference.h"

namespace hivemesh {

// What the gRPC service needs of the node (implemented over KServeHandler in grpc_server.cc).
class GrpcNode {
 public:
  virtual ~GrpcNode() = default;

  virtual std::string server_name() const = 0;
  virtual std::string server_version() const = 0;
  // False while the node drains.
  virtual bool ready() const = 0;

  // The node's model repository (ModelRepository's functions of the same names).
  virtual absl::StatusOr<RuntimePtr> Find(const std::string& name,
                                          const std::string& version) const = 0;
  virtual std::vector<std::string> Versions(const std::string& name) const = 0;
  virtual std::vector<ModelEntry> Index() const = 0;
  virtual std::vector<RuntimePtr> Runtimes() const = 0;
  // KServeHandler::ControlRepository for a gRPC caller: the name and the caller are checked as
  // for REST (the same function), then the repository loads or unloads on its control thread.
  // `peer` is ServerContext::peer() ("ipv4:10.0.0.7:5000"), `authorization` the call's
  // "authorization" metadata; both are read during the call only. `done` runs once, on this
  // thread for a refusal, else on another.
  virtual void LoadModel(const std::string& name, std::string_view peer,
                         std::string_view authorization,
                         std::function<void(absl::Status)> done) = 0;
  virtual void UnloadModel(const std::string& name, std::string_view peer,
                           std::string_view authorization,
                           std::function<void(absl::Status)> done) = 0;

  // telemetry::TraceIdFor.
  virtual std::string TraceId(std::string_view traceparent, std::string_view trace_header) = 0;
  // KServeHandler::InferDecoded: served here or offloaded like a REST inference.
  virtual void Infer(InferRequest request, std::string trace, SteadyTime received,
                     std::function<void(absl::StatusOr<InferResponse>)> done) = 0;

  // OK if the mesh's authorization policy lets a gRPC caller (`peer` and `authorization` as for
  // LoadModel; a client's bearer token names it) infer (`infer`) or read `model`; else
  // PERMISSION_DENIED naming the rule, counted.
  virtual absl::Status Authorize(std::string_view model, bool infer, std::string_view peer,
                                 std::string_view authorization) const = 0;
  // For listings: whether the same caller may read each model (KServeHandler::Readable).
  virtual absl::StatusOr<std::function<bool(std::string_view model)>> Readable(
      std::string_view peer, std::string_view authorization) const = 0;
  // The node's memory budget for requests in flight (base/memory_budget.h), or null: decoded
  // requests and answers are reserved from it. It outlives the service.
  virtual MemoryBudget* memory_budget() const = 0;
  // Counts a refusal in hivemesh_rejected_total and logs it at a bounded rate.
  virtual void NoteRejection(Rejection reason, std::string_view detail) = 0;
};

// A running gRPC service, made by the plugin.
class GrpcService {
 public:
  virtual ~GrpcService() = default;
  virtual uint16_t port() const = 0;
  // Stops accepting calls, waits up to `grace` for those in progress, then cancels them.
  virtual void Shutdown(std::chrono::milliseconds grace) = 0;
};

// The plugin's one exported function: binds and starts the service, or says why not.
// `node` must outlive the service.
inline constexpr const char* kGrpcPluginFile = "libhivemesh_grpc.so";
inline constexpr const char* kGrpcPluginEntry = "hivemesh_grpc_start";
using GrpcStartFn = void (*)(const GrpcServerOptions& options, GrpcNode* node,
                             absl::StatusOr<std::unique_ptr<GrpcService>>* out);

}  // namespace hivemesh
