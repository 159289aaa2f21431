#include "agent/agent.h"

#include <signal.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <thread>

#include "api/http_server.h"
#include "api/kserve_handler.h"
#include "base/logging.h"
#include "base/strings.h"
#include "serving/backend.h"
#include "serving/model_repository.h"

namespace hivemesh {

#ifndef HIVEMESH_VERSION
#define HIVEMESH_VERSION "0.0.0"
#endif

absl::StatusOr<std::unique_ptr<Agent>> Agent::Create(const AgentConfig& config) {
  std::unique_ptr<Agent> agent(new Agent());
  agent->config_ = config;
  agent->registry_ = std::make_unique<BackendRegistry>();
  RegisterBuiltinBackends(*agent->registry_);

  RepositoryOptions repo;
  repo.path = config.model_repository;
  repo.default_instances = config.default_instances;
  repo.default_queue_limit = config.default_queue_limit;
  absl::StatusOr<std::unique_ptr<ModelRepository>> loaded =
      ModelRepository::Load(repo, *agent->registry_);
  if (!loaded.ok()) return loaded.status();
  agent->repository_ = std::move(*loaded);

  agent->kserve_ = std::make_unique<KServeHandler>(
      ServerIdentity{"hivemesh", HIVEMESH_VERSION, config.node_name}, agent->repository_.get());

  HttpServerOptions http;
  http.host = config.http_host();
  http.port = config.http_port();
  http.threads = config.http_threads;
  http.max_body_bytes = config.max_body_bytes;
  http.header_timeout = std::chrono::milliseconds(config.header_timeout_ms);
  http.body_timeout = std::chrono::milliseconds(config.body_timeout_ms);
  KServeHandler* kserve = agent->kserve_.get();
  absl::StatusOr<std::unique_ptr<HttpServer>> server =
      HttpServer::Create(http, [kserve](const HttpRequest& req, HttpResponder respond) {
        kserve->Handle(req, std::move(respond));
      });
  if (!server.ok()) return server.status();
  agent->http_ = std::move(*server);
  return agent;
}

Agent::~Agent() {
  if (http_) http_->Stop();
}

void Agent::Start() {
  http_->Start();
  spdlog::info("ready: KServe v2 REST on http://{}:{} serving models from {}", config_.http_host(),
               http_->port(), config_.model_repository);
}

bool Agent::Drain() {
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(config_.drain_timeout_ms);
  spdlog::info("draining: no new connections; answering every accepted request");
  kserve_->SetReady(false);
  http_->StopAccepting();
  // Every queued and running request is answered (its response handed to its connection)...
  std::thread drain([this] { repository_->Drain(); });
  drain.join();
  // ...and written out before the connections close.
  bool complete = true;
  while (http_->busy_connections() > 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      complete = false;
      spdlog::warn("drain timeout: {} connections still busy", http_->busy_connections());
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  http_->Stop();
  spdlog::info("drained; stopped");
  return complete;
}

uint16_t Agent::http_port() const { return http_->port(); }

int RunAgent(const AgentConfig& config) {
  absl::Status log = SetupLogging(config.node_name, config.log_level);
  if (!log.ok()) {
    spdlog::error("{}", MessageOf(log));
    return 2;
  }
  // Block the stop signals in every thread; this thread waits for them below.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  const auto started = std::chrono::steady_clock::now();
  absl::StatusOr<std::unique_ptr<Agent>> agent = Agent::Create(config);
  if (!agent.ok()) {
    spdlog::error("cannot start: {}", MessageOf(agent.status()));
    return 1;
  }
  (*agent)->Start();
  spdlog::info("started in {} ms", std::chrono::duration_cast<std::chrono::milliseconds>(
                                       std::chrono::steady_clock::now() - started)
                                       .count());
  int sig = 0;
  sigwait(&stop_signals, &sig);
  spdlog::info("received {}", sig == SIGTERM ? "SIGTERM" : "SIGINT");
  const bool complete = (*agent)->Drain();
  agent->reset();
  return complete ? 0 : 1;
}

}  // namespace hivemesh
