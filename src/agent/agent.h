// Agent: one hivemesh node, wired from its AgentConfig: the model repository, the KServe v2 REST
// API and their orderly shutdown.
//
// Life cycle: Create() loads models and binds the port; Start() serves; Drain() stops accepting,
// answers every accepted request (queued ones included), then closes; the destructor stops
// whatever is left.
//
// Thread safety: Create/Start/Drain are called from one controlling thread.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "agent/agent_config.h"

namespace hivemesh {

class HttpServer;
class KServeHandler;
class ModelRepository;
class BackendRegistry;

class Agent {
 public:
  static absl::StatusOr<std::unique_ptr<Agent>> Create(const AgentConfig& config);
  ~Agent();

  void Start();
  // Stops accepting, waits (up to drain_timeout_ms) until every accepted request is answered,
  // then closes all connections. Returns false if the timeout cut the wait short.
  bool Drain();
  uint16_t http_port() const;

 private:
  Agent() = default;
  AgentConfig config_;
  std::unique_ptr<BackendRegistry> registry_;
  std::unique_ptr<ModelRepository> repository_;
  std::unique_ptr<KServeHandler> kserve_;
  std::unique_ptr<HttpServer> http_;
};

// Runs an agent until SIGTERM or SIGINT, then drains. Returns the process exit code.
int RunAgent(const AgentConfig& config);

}  // namespace hivemesh
