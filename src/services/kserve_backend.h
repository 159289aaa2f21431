// KServe v2 workloads (docs/services.md, "KServe v2 workloads"): a KServe v2 server the node runs
// as a workload (Triton, or any server of the Open Inference Protocol) has its models join the
// node's model table, so that a request for one of them on any node is routed, offloaded and
// failed over like a built-in model's.
//
// The node learns the server's models from the protocol itself: `GET /v2/health/ready`, then
// `POST /v2/repository/index` (its READY models), then `GET /v2/models/<name>` (each model's
// inputs and outputs). From that metadata it makes a model config (serving/model_config.h) whose
// backend, `kserve`, sends each request to the server as a JSON infer request over plain HTTP on
// loopback and reads its answer; the model is attached to the repository
// (ModelRepository::AttachModel) and announced to the mesh like any other.
//
// The parsing here is pure (no I/O); the backend's I/O goes through a PeerClient.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

#include "transport/peer_client.h"

namespace hivemesh {
class BackendRegistry;
}  // namespace hivemesh

namespace hivemesh::services {

// The annotation that says a Deployment is a KServe v2 server ("true"); without it the node asks
// the workload's first container port whether it is one.
inline constexpr std::string_view kKserveAnnotation = "hivemesh.io/kserve";
// The backend name in the configs made here.
inline constexpr std::string_view kKserveBackend = "kserve";
// The most models taken from one server, and the largest index or metadata answer read.
inline constexpr size_t kMaxKserveModels = 64;
inline constexpr size_t kMaxKserveAnswerBytes = 1 << 20;

struct KserveIndex {
  std::vector<std::string> ready;    // models to serve, sorted, each once
  std::vector<std::string> skipped;  // why others are not: "name: reason"
};

// The models of a repository index answer (`[{"name", "version", "state", "reason"}...]`) to
// serve: those READY (or without a state), whose names follow hivemesh's model name rule, at most
// kMaxKserveModels. INVALID_ARGUMENT if the answer is not such a list.
absl::StatusOr<KserveIndex> ParseKserveIndex(std::string_view json);

// The config.yaml text of `model` served by the KServe v2 server on 127.0.0.1:`port`, from its
// metadata answer (`{"name", "platform", "inputs": [{"name", "datatype", "shape"}], "outputs"}`).
// `instances`: requests sent to the server at once. INVALID_ARGUMENT naming the field when the
// metadata is not usable (another model's name, an unknown datatype, a bad shape).
absl::StatusOr<std::string> KserveModelConfig(std::string_view metadata_json,
                                              std::string_view model, uint16_t port, int instances);

// Sends `request` through `client` and waits for the answer: at most the request's timeout and
// a second more (DEADLINE_EXCEEDED "no answer" past it). For threads that may block: a model's
// worker, the workload watcher.
absl::StatusOr<PeerResponse> SendAndWait(PeerClient& client, PeerRequest request);

// Registers the `kserve` backend, which sends requests through `client` (plain HTTP, kept alive).
// `client` must outlive every backend made. Its options: `port` (the server's, on 127.0.0.1),
// `model` (the server's name for the model), `timeout_ms` (default 30000).
void RegisterKserveBackend(BackendRegistry& registry, PeerClient* client);

}  // namespace hivemesh::services
