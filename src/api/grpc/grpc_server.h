// GrpcServer: the KServe v2 gRPC API (inference.GRPCInferenceService, proto/grpc_service.proto)
// of one node, on its own port. It is a second front end over the same KServeHandler as the REST
// API: ModelInfer goes through KServeHandler::InferDecoded, so a gRPC inference is served here or
// offloaded to a peer exactly like a REST one, and counted in the same metrics.
//
// RPCs: ServerLive, ServerReady, ModelReady, ServerMetadata, ModelMetadata, ModelInfer,
// ModelStreamInfer, ModelStatistics, RepositoryIndex, RepositoryModelLoad/Unload
// (model_control_mode: explicit; the caller needs admin access, api/admin_access.h, checked by the
// same function as for REST: PERMISSION_DENIED otherwise). Errors are gRPC status codes with the
// same codes and messages as the REST API's absl statuses. The response parameter "served_by"
// and the trailing metadata "hivemesh-served-by" name the node that computed a response.
//
// Threading: gRPC's callback API; no thread waits on a model. An inference's answer is written
// from the model worker (or peer client thread) that produced it.
//
// This header includes neither gRPC nor protobuf. The service itself is in a plugin,
// libhivemesh_grpc.so (grpc_service.cc), which Create() loads on first use: see grpc_node.h.
//
// Thread safety: Create, port and Shutdown are called from one controlling thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace hivemesh {

class KServeHandler;

struct GrpcServerOptions {
  // host:port to listen on; port 0 picks a free one.
  std::string address = "127.0.0.1:8001";
  // Largest message received or sent; a larger one is answered RESOURCE_EXHAUSTED by gRPC.
  uint64_t max_message_bytes = 64ull << 20;
  // gRPC's resource quota: the memory it may hold of messages being read and written, over every
  // connection together (past it, gRPC shrinks its flow-control windows and then cancels
  // streams). 0: no quota. What the service decodes and answers is reserved from the node's
  // memory budget instead (KServeHandler::memory_budget).
  uint64_t memory_quota_bytes = 0;
};

class GrpcServer {
 public:
  // Loads the plugin, binds `options.address` and starts serving. `handler` must outlive the
  // server. FAILED_PRECONDITION if the plugin cannot be loaded; UNAVAILABLE if the address
  // cannot be bound.
  static absl::StatusOr<std::unique_ptr<GrpcServer>> Create(const GrpcServerOptions& options,
                                                            KServeHandler* handler);
  // Shuts down (if Shutdown was not called) with no grace period.
  ~GrpcServer();

  // The bound port.
  uint16_t port() const;
  // Stops accepting calls and waits up to `grace` for the calls in progress, then cancels them.
  void Shutdown(std::chrono::milliseconds grace);

 private:
  struct Impl;
  explicit GrpcServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace hivemesh
