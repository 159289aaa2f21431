#include "agent/agent.h"
#include "agent/join_service.h"
#include "agent/service_notify.h"

#include <fcntl.h>
#include <signal.h>
#include <simdjson.h>
#include <spawn.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <thread>
#include <tuple>

#include <unistd.h>

#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "api/admin_access.h"
#include "api/authorization_policy.h"
#include "api/grpc/grpc_server.h"
#include "api/inference_observer.h"
#include "api/insights_handler.h"
#include "api/issuer_handler.h"
#include "api/kserve_handler.h"
#include "api/member_check.h"
#include "api/mesh_handler.h"
#include "api/mesh_policy.h"
#include "api/metrics_handler.h"
#include "api/model_insights.h"
#include "api/objects_handler.h"
#include "api/service_proxy.h"
#include "base/hex.h"
#include "base/memory_budget.h"
#include "base/rejections.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "bus/local_bus.h"
#include "bus/mesh_delivery.h"
#include "bus/mqtt_bridge.h"
#include "bus/outbox.h"
#include "codec/json_writer.h"
#include "codec/model_name.h"
#include "identity/certs.h"
#include "identity/issuer_service.h"
#include "identity/key_file.h"
#include "identity/member_credential.h"
#include "identity/mesh_files.h"
#include "identity/peer_verifier.h"
#include "identity/tls_context.h"
#include "membership/gossip_node.h"
#include "membership/node_meta.h"
#include "routing/dispatcher.h"
#include "routing/forwarder.h"
#include "services/container.h"
#include "services/kserve_backend.h"
#include "services/object_service.h"
#include "services/placement.h"
#include "services/supervisor.h"
#include "services/workload_watcher.h"
#include "serving/backend.h"
#include "serving/model_repository.h"
#include "telemetry/log.h"
#include "telemetry/metrics.h"
#include "telemetry/process_metrics.h"
#include "transport/http_server.h"
#include "transport/mesh_link.h"
#include "transport/peer_client.h"

namespace hivemesh {

// The mesh as the forwarder sees it, read from gossip: alive peers, their models and load.
class GossipDirectory final : public routing::MeshDirectory {
 public:
  GossipDirectory(const membership::GossipNode* gossip, std::string self)
      : gossip_(gossip), self_(std::move(self)) {}

  std::vector<routing::PeerEndpoint> PeersFor(const std::string& model) const override {
    std::shared_ptr<const Table> table = Snapshot();
    auto it = table->peers.find(model);
    return it == table->peers.end() ? std::vector<routing::PeerEndpoint>{} : it->second;
  }

  bool Settling(const std::string& model) const override {
    // Still joining: the node may serve before its seeds have answered (a busy machine).
    if (!gossip_->joined()) return true;
    std::shared_ptr<const Table> table = Snapshot();
    const SteadyTime now = SystemClock::Get().Now();
    if (table->suspects > 0 || now - table->changed < kSettle) return true;
    // A model some member hosts now, but not in the version asked for, is not coming back.
    if (model.empty() || table->peers.contains(model)) return false;
    absl::MutexLock lock(&mu_);
    auto it = announced_.find(model);
    return it != announced_.end() && now - it->second < kAnnounced;
  }

  std::optional<std::string> MemberKey(std::string_view node) const override {
    // A node that just joined may not be in the cached table yet: look again before refusing,
    // with a table at most kRecheck old (so refused strangers cannot force a rebuild each time).
    for (std::chrono::milliseconds age : {kRefresh, kRecheck}) {
      std::shared_ptr<const Table> table = Snapshot(age);
      auto it = table->alive.find(node);
      if (it != table->alive.end() && !it->second.empty()) return it->second;
    }
    return std::nullopt;
  }

 private:
  // Peers by model, rebuilt from gossip at most every kRefresh: requests read an immutable
  // snapshot instead of decoding every member's metadata each time.
  struct Table {
    std::map<std::string, std::vector<routing::PeerEndpoint>> peers;
    std::map<std::string, std::string, std::less<>> alive;  // name -> the key it is bound to
    SteadyTime built;
    SteadyTime changed;  // when a member other than this node last changed state
    int suspects = 0;
  };
  static constexpr std::chrono::milliseconds kRefresh{100};
  static constexpr std::chrono::milliseconds kRecheck{10};
  // The view is settling this long after a member came, went or came back.
  static constexpr std::chrono::seconds kSettle{2};
  // A model a member announced within this long is expected back if it has no host now.
  static constexpr std::chrono::seconds kAnnounced{60};
  static constexpr size_t kMaxAnnounced = 4096;

  std::shared_ptr<const Table> Snapshot(std::chrono::milliseconds max_age = kRefresh) const {
    const SteadyTime now = SystemClock::Get().Now();
    {
      absl::MutexLock lock(&mu_);
      if (table_ && now - table_->built < max_age) return table_;
    }
    auto table = std::make_shared<Table>();
    table->built = now;
    for (const membership::MemberInfo& m : gossip_->Members()) {
      if (m.name != self_) table->changed = std::max(table->changed, m.since);
      const bool suspect = m.state == membership::MemberState::kSuspect;
      if (m.state != membership::MemberState::kAlive && !suspect) continue;
      // A suspect is still a member: its requests are taken, and it hosts its models as a
      // candidate of last resort (the suspicion may be wrong, or about to be refuted).
      table->alive.emplace(m.name, m.key);
      if (m.name == self_) continue;
      table->suspects += suspect ? 1 : 0;
      absl::StatusOr<membership::NodeMeta> meta = membership::DecodeNodeMeta(m.meta);
      if (!meta.ok() || meta->api_address.empty() || meta->draining) continue;
      absl::StatusOr<membership::LoadReport> load = membership::LoadReport{};
      if (!m.load.empty()) load = membership::DecodeLoadReport(m.load);
      for (const membership::ModelAdvert& a : meta->models) {
        // A name that breaks the rule of model names is nothing this node could serve or route
        // by name (and could make a path of it): it is ignored, like a model not ready.
        if (!a.ready || !IsValidModelName(a.name)) continue;
        routing::PeerEndpoint p;
        p.node = m.name;
        p.api_address = meta->api_address;
        p.generation = m.incarnation;
        p.suspect = suspect;
        p.policy = static_cast<DataPolicy>(a.data_policy);
        p.instances = static_cast<int>(std::max<uint32_t>(1, a.instances));
        p.versions = std::make_shared<const std::vector<std::string>>(a.versions);
        if (auto z = meta->labels.find("zone"); z != meta->labels.end()) p.zone = z->second;
        if (load.ok()) {
          for (const membership::ModelLoad& l : load->models) {
            if (l.name != a.name) continue;
            // One entry per version served: the model's load is their sum.
            p.queue_depth += l.queue_depth + l.in_flight;
            p.service_ns = std::max(p.service_ns, static_cast<double>(l.ewma_service_us) * 1e3);
          }
        }
        table->peers[a.name].push_back(std::move(p));
      }
    }
    absl::MutexLock lock(&mu_);
    for (auto it = announced_.begin(); it != announced_.end();) {
      it = now - it->second >= kAnnounced ? announced_.erase(it) : std::next(it);
    }
    for (const auto& [model, _] : table->peers) {
      if (announced_.size() < kMaxAnnounced || announced_.contains(model)) announced_[model] = now;
    }
    table_ = table;
    return table;
  }

  const membership::GossipNode* const gossip_;
  const std::string self_;
  mutable absl::Mutex mu_;
  mutable std::shared_ptr<const Table> table_ ABSL_GUARDED_BY(mu_);
  // Models the table has listed, and when last.
  mutable std::map<std::string, SteadyTime> announced_ ABSL_GUARDED_BY(mu_);
};

#ifndef HIVEMESH_VERSION
#define HIVEMESH_VERSION "0.0.0"
#endif

namespace {

// admin_access and admin_token_file as the check the API's front ends make (api/admin_access.h).
absl::StatusOr<AdminAccess> MakeAdminAccess(const AgentConfig& config) {
  absl::StatusOr<AdminAccessMode> mode = AdminAccessModeFromName(config.admin_access);
  if (!mode.ok()) return mode.status();
  switch (*mode) {
    case AdminAccessMode::kLoopback:
      if (config.model_control_mode == "explicit") {
        spdlog::info("admin_access: loopback (models are loaded and unloaded from this host only)");
      }
      return AdminAccess::Loopback();
    case AdminAccessMode::kAny:
      spdlog::warn(
          "admin_access: any: anyone who reaches the API on {} may load and unload models; use "
          "it in labs only (loopback or token elsewhere)",
          config.http_address);
      return AdminAccess::Any();
    case AdminAccessMode::kToken: {
      absl::StatusOr<std::string> token = ReadAdminTokenFile(config.admin_token_file);
      if (!token.ok()) return token.status();
      struct stat st {};
      if (stat(config.admin_token_file.c_str(), &st) == 0 && (st.st_mode & 077) != 0) {
        spdlog::warn("admin_token_file {} can be read by other users of this host; chmod 600 it",
                     config.admin_token_file);
      }
      spdlog::info("admin_access: token (loading and unloading models needs the token in {})",
                   config.admin_token_file);
      return AdminAccess::Token(*token);
    }
  }
  return absl::InvalidArgumentError("admin_access: unknown mode");
}

}  // namespace

absl::StatusOr<std::unique_ptr<Agent>> Agent::Create(const AgentConfig& config) {
  std::unique_ptr<Agent> agent(new Agent());
  agent->config_ = config;
  agent->metrics_ = std::make_unique<telemetry::Registry>();
  agent->metrics_handler_ = std::make_unique<MetricsHandler>(agent->metrics_.get());
  agent->rejections_ = std::make_shared<Rejections>();
  agent->policy_holder_ = std::make_shared<PolicyHolder>();
  // gRPC's buffers have a quota of their own, set aside from memory_budget_mb: the rest is the
  // budget for requests in flight.
  agent->memory_budget_ = MemoryBudget::Create(
      config.MemoryBudgetBytes() - (config.grpc_enabled() ? config.GrpcMemoryQuotaBytes() : 0));
  // One set of I/O threads for the API and the peer client: a forwarded request and its answer
  // stay on the thread that read the request.
  agent->io_ = IoThreads::Create(config.http_threads);
  // This node's workloads are reached over plain HTTP on loopback: services by name, and the
  // models of KServe v2 workloads (their backend).
  agent->workload_client_ = PeerClient::Create(agent->io_, nullptr, SystemClock::Get());
  agent->registry_ = std::make_unique<BackendRegistry>();
  RegisterBuiltinBackends(*agent->registry_);
  services::RegisterKserveBackend(*agent->registry_, agent->workload_client_.get());
  BackendEnvironment backends;
  backends.memory_budget = agent->memory_budget_;
  backends.rejections = agent->rejections_;
  backends.max_image_pixels = config.max_image_pixels;
  agent->registry_->SetEnvironment(std::move(backends));

  RepositoryOptions repo;
  repo.path = config.model_repository;
  repo.default_instances = config.default_instances;
  repo.default_queue_limit = config.default_queue_limit;
  repo.models = config.ModelList();
  absl::StatusOr<ControlMode> mode = ControlModeFromName(config.model_control_mode);
  if (!mode.ok()) return mode.status();
  repo.control_mode = *mode;
  repo.poll_interval = std::chrono::milliseconds(config.repository_poll_ms);
  absl::StatusOr<std::unique_ptr<ModelRepository>> loaded =
      ModelRepository::Load(repo, *agent->registry_, SystemClock::Get());
  if (!loaded.ok()) return loaded.status();
  agent->repository_ = std::move(*loaded);
  // Versions that come and go are announced to the mesh, so that peers route to them.
  agent->repository_->SetOnChange([self = agent.get()] { self->AnnounceMeta(); });

  HttpServerOptions http;
  http.host = config.http_host();
  http.port = config.http_port();
  http.threads = config.http_threads;
  http.max_body_bytes = config.max_body_bytes;
  http.header_timeout = std::chrono::milliseconds(config.header_timeout_ms);
  http.body_timeout = std::chrono::milliseconds(config.body_timeout_ms);
  http.rejections = agent->rejections_;
  http.memory_budget = agent->memory_budget_;
  http.max_connections = config.max_connections;
  http.max_connections_per_source = config.max_connections_per_source;
  http.idle_link_timeout = std::chrono::milliseconds(config.idle_link_timeout_ms);
  http.relay_idle_timeout = std::chrono::milliseconds(config.relay_idle_timeout_ms);
  http.clock = &SystemClock::Get();
  // Services' own ports: plain HTTP for clients, no mesh links, the same limits.
  agent->service_port_options_ = http;
  agent->service_port_options_.accept_links = false;
  Agent* self = agent.get();
  // A mesh link is opened only by a member that proves it (member_check_ is set by StartGossip,
  // before the server starts).
  http.authorize_link = [self](const HttpRequest& upgrade) {
    return self->member_check_->AuthorizeLink(upgrade);
  };
  // A request for a Service by its Host streams to one of its endpoints (the usual path when it
  // has none ready now, and for requests from peers).
  http.forward = [self](const HttpRequest& head) -> std::optional<ForwardPlan> {
    if (!self->service_proxy_) return std::nullopt;
    return self->service_proxy_->PlanForward("", head, [self](const std::string& node) {
      return self->peer_credential_ ? self->peer_credential_(node, kCredentialForLink)
                                    : std::string();
    });
  };
  // A tunnel to a workload of this node (a Service's connection-level pass-through, opened by
  // the node a client reached): members only, as links.
  http.authorize_tunnel = [self](const HttpRequest& upgrade) -> absl::StatusOr<std::string> {
    absl::StatusOr<std::string> member = self->member_check_->AuthorizeLink(upgrade);
    if (!member.ok()) return member.status();
    return self->service_proxy_->AuthorizeTunnel(upgrade);
  };
  // Peers' connections are mutual TLS (contexts from the certificate, set by StartGossip once
  // the mesh credentials are loaded); clients may still come in plain.
  if (!config.insecure) {
    agent->peer_verifier_ = std::make_unique<identity::PeerVerifier>();
    agent->tls_ = std::make_shared<TlsSettings>(
        nullptr, nullptr, [self](const PeerChain& chain, std::string_view expected) {
          return self->CheckPeer(chain, expected);
        });
    http.tls = agent->tls_;
    // Tunnels to the nodes that run a Service's endpoints (streamed requests by Host, and
    // connections at a Service's port) are mutual TLS too.
    http.tunnel_tls = agent->tls_;
    agent->service_port_options_.tunnel_tls = agent->tls_;
  } else {
    spdlog::warn(
        "INSECURE: --insecure: connections between nodes are plain TCP and members are not "
        "authenticated by certificates; use it in labs only (docs/identity.md)");
  }
  absl::StatusOr<std::unique_ptr<HttpServer>> server = HttpServer::Create(
      http,
      [self](const HttpRequest& req, HttpResponder respond) {
        if (self->metrics_handler_->Handle(req, respond)) return;
        if (self->issuer_api_ && self->issuer_api_->Handle(req, respond)) return;
        if (self->objects_api_ && self->objects_api_->Handle(req, respond)) return;
        if (self->insights_api_ && self->insights_api_->Handle(req, respond)) return;
        if (self->service_proxy_ && self->service_proxy_->Handle(req, respond)) return;
        if (self->policy_api_ && self->policy_api_->Handle(req, respond)) return;
        if (self->mesh_ && self->mesh_->Handle(req, respond)) return;
        self->kserve_->Handle(req, std::move(respond));
      },
      agent->io_);
  if (!server.ok()) return server.status();
  agent->http_ = std::move(*server);
  // The objects applied to the mesh, before gossip announces their fingerprint.
  absl::StatusOr<std::unique_ptr<services::ObjectService>> objects =
      services::ObjectService::Open(config.StateDir() + "/objects", config.node_name);
  if (!objects.ok()) return objects.status();
  agent->objects_ = std::move(*objects);
  // This node's end of the insight bus: its ids take a boot second no earlier start used.
  {
    const std::string boot_file =
        StrCat(config.StateDir(), "/insights.", config.node_name, ".boot");
    int64_t last_boot = 0;
    if (std::ifstream in(boot_file); in) in >> last_boot;
    const int64_t now_s = std::chrono::duration_cast<std::chrono::seconds>(
                              std::chrono::system_clock::now().time_since_epoch())
                              .count();
    bus::InsightIds ids(config.node_name, now_s, last_boot);
    std::error_code made;
    std::filesystem::create_directories(config.StateDir(), made);
    HM_RETURN_IF_ERROR(identity::ReplaceFile(boot_file, std::to_string(ids.boot_s()), 0600));
    agent->bus_ = std::make_shared<bus::LocalBus>(config.node_name, config.LabelMap()["zone"],
                                                  std::move(ids));
    agent->insights_api_ = std::make_unique<InsightsHandler>(agent->bus_, [] {
      return std::chrono::duration_cast<std::chrono::milliseconds>(
                 std::chrono::system_clock::now().time_since_epoch())
          .count();
    });
    if (!config.mqtt_url.empty()) {
      // Insights for the broker are committed to the outbox before the publisher is answered.
      bus::Outbox::Options kept;
      kept.max_bytes = static_cast<uint64_t>(config.mqtt_queue_mb) << 20;
      kept.when_full = config.mqtt_queue_full == "refuse-new" ? bus::Outbox::WhenFull::kRefuseNew
                                                              : bus::Outbox::WhenFull::kDropOldest;
      absl::StatusOr<std::unique_ptr<bus::Outbox>> outbox =
          bus::Outbox::Open(StrCat(config.StateDir(), "/insights-outbox.db"), kept);
      if (!outbox.ok()) return outbox.status();
      bus::MqttOptions mqtt;
      mqtt.url = config.mqtt_url;
      mqtt.client_id = "hivemesh-" + config.node_name;
      mqtt.backlog_rate = config.mqtt_backlog_rate;
      mqtt.username = config.mqtt_username;
      mqtt.ca_file = config.mqtt_ca;
      if (!config.mqtt_password_file.empty()) {
        std::ifstream in(config.mqtt_password_file);
        if (!in || !std::getline(in, mqtt.password)) {
          return absl::InvalidArgumentError(
              StrCat("mqtt_password_file '", config.mqtt_password_file, "' cannot be read"));
        }
      }
      for (absl::string_view f : absl::StrSplit(config.mqtt_topics, ',', absl::SkipWhitespace())) {
        mqtt.filters.emplace_back(f.data(), f.size());
      }
      absl::StatusOr<std::unique_ptr<bus::MqttBridge>> bridge =
          bus::MqttBridge::Start(std::move(mqtt), *std::move(outbox));
      if (!bridge.ok()) return bridge.status();
      agent->mqtt_ = *std::move(bridge);
      agent->bus_->SetStore(
          [bridge = agent->mqtt_.get()](const bus::Insight& in, const std::string& document) {
            return bridge->Wants(in.topic) ? bridge->Accept(in.topic, in.id, document)
                                           : absl::OkStatus();
          });
      spdlog::info("insights go to the MQTT broker {} ({})", config.mqtt_url,
                   config.mqtt_topics.empty() ? "all topics" : config.mqtt_topics);
    }
  }
  // An apply here reaches every member at once; what was merged from a peer is announced.
  agent->objects_->OnChange([self](bool local) {
    if (local) {
      self->AnnounceControlChange();
    } else {
      self->AnnounceMeta();
    }
    absl::MutexLock lock(&self->revoke_mu_);  // the workloads to run may have changed
    self->revoke_check_ = true;
    self->revoke_cv_.Signal();
  });
  agent->supervisor_ = std::make_unique<services::Supervisor>();
  agent->workloads_ = std::make_unique<services::WorkloadWatcher>(
      agent->workload_client_.get(), agent->repository_.get(),
      [self](const std::string& workload) {
        for (const services::ProcessStatus& p : self->supervisor_->Status()) {
          if (p.workload == workload) return p.pid != 0;
        }
        return false;
      },
      [self] {
        // The mesh learns which workloads are ready here; the routes are computed again.
        self->AnnounceMeta();
        absl::MutexLock lock(&self->revoke_mu_);
        self->revoke_check_ = true;
        self->revoke_cv_.Signal();
      });
  absl::Status gossip = agent->StartGossip();
  if (!gossip.ok()) return gossip;
  if (agent->bus_ != nullptr) {
    // Insights published here go to the members whose subscribers want them; this node's own
    // subscribers' filters ride in its metadata.
    agent->insight_delivery_ =
        std::make_unique<bus::MeshDelivery>(agent->peers_.get(), SystemClock::Get());
    agent->bus_->SetObservers(
        [delivery = agent->insight_delivery_.get()](
            const bus::Insight& in, const std::string& document) { delivery->Send(in, document); },
        [self = agent.get()] {
          if (self->bus_closing_.load()) return;  // the node stops: nothing more to announce
          // Read and announced under one lock: a change racing this one is announced after it.
          absl::MutexLock lock(&self->filters_mu_);
          std::vector<std::string> now = self->bus_->Filters();
          if (now == self->announced_filters_) return;
          self->announced_filters_ = std::move(now);
          self->AnnounceMeta();
        });
  }
  // Metrics in the order /metrics lists them: what runs, requests, models, mesh, process.
  telemetry::Registry& metrics = *agent->metrics_;
  RegisterBuildInfo(metrics, HIVEMESH_VERSION, config.node_name);
  if (agent->bus_ != nullptr) {
    agent->model_insights_ = std::make_unique<ModelInsights>(
        agent->bus_, config.node_name, config.LabelMap()["zone"], agent->repository_.get());
  }
  agent->observer_ = std::make_unique<InferenceObserver>(&metrics, agent->model_insights_.get());
  agent->dispatcher_ = std::make_unique<routing::Dispatcher>(
      config.node_name, agent->repository_.get(), agent->forwarder_.get(), agent->rejections_.get(),
      agent->observer_.get());
  agent->dispatcher_->SetZone(config.LabelMap()["zone"]);
  ServerIdentity who{"hivemesh", HIVEMESH_VERSION, config.node_name, agent->gossip_->encrypted()};
  who.insecure = config.insecure;
  if (const std::shared_ptr<const identity::MeshCredentials> mesh = agent->Credentials();
      mesh->node_cert) {
    absl::StatusOr<identity::NodeIdentity> id = mesh->node_cert->Identity();
    if (id.ok()) {
      who.mesh_id = id->mesh_id;
      who.ca_digest = mesh->ca_digest();
      who.role = std::string(identity::RoleName(id->role));
      who.certificate_expires = [self = agent.get()]() -> int64_t {
        const std::shared_ptr<const identity::MeshCredentials> now = self->Credentials();
        if (!now->node_cert) return 0;
        return std::chrono::duration_cast<std::chrono::seconds>(
                   now->node_cert->not_after().time_since_epoch())
            .count();
      };
      who.issuer = mesh->issuer_cert.has_value() && mesh->issuer_key.has_value();
    }
  }
  agent->kserve_ = std::make_unique<KServeHandler>(std::move(who), agent->repository_.get(),
                                                   agent->dispatcher_.get(), agent->memory_budget_,
                                                   agent->rejections_);
  absl::StatusOr<AdminAccess> admin = MakeAdminAccess(config);
  if (!admin.ok()) return admin.status();
  agent->kserve_->SetAdmin(*admin, agent->rejections_);
  agent->issuer_api_ = std::make_unique<IssuerHandler>(
      agent->issuer_, *admin, agent->rejections_,
      [self = agent.get()](std::string_view name) { return self->KeyOf(name); },
      // A revoked member's connections here close at once; new ones are refused (CheckPeer).
      [self = agent.get()](const std::string& name, const std::string& key) {
        self->AnnounceControlChange();  // the new count tells the other nodes to fetch the list
        if (identity::ParseClientTokensRevocation(name)) {
          spdlog::info("bearer tokens revoked: {}", name);
          return;
        }
        spdlog::info("member {}'s key is revoked: closing its connections", name);
        self->CutOff(name, key);
        // An issuer's rights go with it: its issuer key is revoked too.
        if (const std::shared_ptr<const identity::MeshCredentials> mesh = self->Credentials();
            mesh && self->issuer_ != nullptr) {
          for (const identity::Certificate& c : identity::MeshIssuers(*mesh)) {
            if (identity::IssuerName(c) != name || self->issuer_->IsRevoked(c.public_key())) {
              continue;
            }
            if (absl::Status revoked =
                    self->issuer_->Adopt(name, c.public_key(), std::chrono::system_clock::now());
                !revoked.ok()) {
              spdlog::error("issuer {}'s key not revoked: {}", name, MessageOf(revoked));
              continue;
            }
            spdlog::info("issuer {}'s issuer key is revoked too", name);
            self->CutOff(name, c.public_key());
          }
        }
        // It holds the gossip keys in force: new ones, which it cannot fetch, replace them.
        self->RotateGossipKeysAfterRevocation();
      });
  // Services reached by name (Host), to this node's workloads.
  agent->service_proxy_ = std::make_unique<ServiceProxy>(
      config.node_name,
      [self](std::string_view name) -> std::optional<ServiceProxy::Route> {
        absl::MutexLock lock(&self->routes_mu_);
        if (self->routes_ == nullptr) return std::nullopt;
        auto it = self->routes_->find(name);
        if (it == self->routes_->end()) return std::nullopt;
        return it->second;
      },
      agent->peers_.get(), agent->workload_client_.get(),
      ServiceProxy::Options{.hold_max = std::chrono::milliseconds(config.service_hold_ms),
                            .zone = config.LabelMap()["zone"]});
  agent->objects_api_ =
      std::make_unique<ObjectsHandler>(agent->objects_, *admin, agent->rejections_);
  agent->objects_api_->SetEndpoints([self] {
    std::shared_ptr<const std::map<std::string, ServiceProxy::Route, std::less<>>> routes;
    {
      absl::MutexLock lock(&self->routes_mu_);
      routes = self->routes_;
    }
    std::string out;
    JsonWriter w(out);
    w.BeginObject().Key("endpoints").BeginArray();
    if (routes != nullptr) {
      for (const auto& [name, route] : *routes) {
        for (const ServiceProxy::Endpoint& e : route.endpoints) {
          w.BeginObject().Key("service").String(name).Key("node").String(e.node);
          w.Key("port").Uint(route.target_port).Key("ready").Bool(e.ready).EndObject();
        }
      }
    }
    w.EndArray().EndObject();
    return out;
  });
  agent->objects_api_->SetPortStatus(
      [self](std::string_view service) { return self->ServicePortStatus(service); });
  agent->issuer_api_->SetRootRotation([self] { return self->StartRootRotation(); });
  agent->issuer_api_->SetRootKey([self](bool remove) { return self->ExportRootKey(remove); },
                                 [self](std::string_view pem) { return self->ImportRootKey(pem); });
  agent->issuer_api_->SetGossipKeys([self] { return self->Credentials(); },
                                    [self] { return self->StartGossipKeyRotation(); });
  agent->issuer_api_->SetIssuers(
      [self](std::string_view member) { return self->IsIssuerMember(member); },
      [self] { self->PushTokens(); });
  agent->kserve_->SetMemberCheck(agent->member_check_);
  agent->kserve_->SetPolicy(
      agent->policy_holder_,
      [self](std::string_view token) -> absl::StatusOr<identity::ClientToken> {
        const std::shared_ptr<const identity::MeshCredentials> mesh = self->Credentials();
        if (mesh == nullptr || mesh->roots.empty()) {
          return absl::PermissionDeniedError("this node holds no certificate of a mesh");
        }
        absl::StatusOr<identity::ClientToken> verified =
            identity::VerifyClientToken(token, self->TrustedIssuers(*mesh), mesh->roots[0].MeshId(),
                                        std::chrono::duration_cast<std::chrono::seconds>(
                                            std::chrono::system_clock::now().time_since_epoch())
                                            .count());
        if (verified.ok()) HM_RETURN_IF_ERROR(self->CheckTokenNotRevoked(*verified));
        return verified;
      });
  if (agent->mesh_policy_ != nullptr) {
    std::function<absl::StatusOr<uint64_t>(std::string_view)> apply;
    if (agent->issuer_ != nullptr) {
      apply = [self](std::string_view document) -> absl::StatusOr<uint64_t> {
        const std::shared_ptr<const identity::MeshCredentials> mesh = self->Credentials();
        return self->mesh_policy_->Apply(
            document,
            [self](uint64_t version, std::string_view text) {
              return self->issuer_->SignPolicy(version, text);
            },
            self->TrustedIssuers(*mesh));
      };
    }
    agent->policy_api_ = std::make_unique<PolicyHandler>(agent->mesh_policy_, *admin,
                                                         agent->rejections_, std::move(apply),
                                                         [self] { self->AnnounceControlChange(); });
    agent->policy_api_->SetOffer([self](const SignedPolicy& offered) {
      return self->mesh_policy_->Offer(offered, self->TrustedIssuers(*self->Credentials()));
    });
  }
  if (config.grpc_enabled()) {
    GrpcServerOptions grpc;
    grpc.address = config.grpc_address;
    grpc.max_message_bytes = config.grpc_max_message_bytes;
    grpc.memory_quota_bytes = config.GrpcMemoryQuotaBytes();
    absl::StatusOr<std::unique_ptr<GrpcServer>> grpc_server =
        GrpcServer::Create(grpc, agent->kserve_.get());
    if (!grpc_server.ok()) return grpc_server.status();
    agent->grpc_ = std::move(*grpc_server);
  }
  RegisterServingMetrics(metrics, agent->repository_.get());
  RegisterMeshMetrics(metrics, agent->gossip_.get(), agent->forwarder_.get());
  RegisterInsightMetrics(metrics, agent->bus_, agent->insight_delivery_.get(), agent->mqtt_.get(),
                         agent->model_insights_.get());
  RegisterRejectionMetrics(metrics, agent->rejections_);
  RegisterMemoryBudgetMetrics(metrics, agent->memory_budget_);
  telemetry::RegisterProcessMetrics(metrics);
  return agent;
}

namespace {

// A first join with a token: each seed in turn until one issues a certificate, for up to a
// minute while none can be reached. A refusal (a bad token, a seed of another mesh) ends it.
absl::StatusOr<identity::MeshCredentials> JoinWithToken(const AgentConfig& config,
                                                        const identity::NodeKey& key) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  absl::Status last;
  for (;;) {
    for (const std::string& seed : config.JoinList()) {
      absl::StatusOr<identity::MeshCredentials> mesh =
          JoinMesh(seed, config.token, key, config.node_name, config.LabelMap(),
                   std::chrono::milliseconds(5000));
      if (mesh.ok()) return mesh;
      last = mesh.status();
      if (!absl::IsUnavailable(last) && !absl::IsDeadlineExceeded(last)) {
        return absl::PermissionDeniedError(StrCat("join with a token: ", MessageOf(last)));
      }
      spdlog::warn("join with a token: {}", MessageOf(last));
    }
    if (std::chrono::steady_clock::now() > until) {
      return absl::UnavailableError(
          StrCat("join with a token: no seed answered within a minute: ", MessageOf(last)));
    }
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
}

// The node's mesh credentials (docs/identity.md), from the state folder. A node that joins no
// one and has none creates a new mesh: a root CA, an issuer and its own certificate; one that
// joins with a token gets its certificate from a seed. A name or a label that cannot go into a
// certificate leaves a node that creates a mesh without one, with a warning.
absl::StatusOr<identity::MeshCredentials> LoadOrCreateMesh(const AgentConfig& config,
                                                           const identity::NodeKey& key,
                                                           bool* created) {
  const std::string state = config.StateDir();
  absl::StatusOr<identity::MeshCredentials> mesh = identity::LoadMesh(state);
  if (config.insecure) {
    if (mesh.ok() && !mesh->empty()) {
      spdlog::warn("--insecure: the certificate of mesh {} in {}/mesh is not used",
                   mesh->roots[0].MeshId(), state);
    }
    return identity::MeshCredentials{};
  }
  if (mesh.ok() && mesh->node_cert && mesh->node_cert->CommonName() != config.node_name) {
    return absl::FailedPreconditionError(
        StrCat("the certificate in ", state, "/mesh is node '", mesh->node_cert->CommonName(),
               "'s, not '", config.node_name, "'s: give each node its own --state-dir"));
  }
  if (mesh.ok() && !mesh->empty() && !mesh->node_cert) {
    return absl::FailedPreconditionError(
        StrCat(state,
               "/mesh holds the mesh's roots but no node certificate (node.pem): join "
               "again with --token, or move the folder away"));
  }
  if (mesh.ok() && !mesh->empty() && !config.token.empty()) {
    // Typically a node that started alone (and so created a mesh of its own) before it was
    // given a mesh to join: it keeps its own, and the seeds of the other will not take it.
    spdlog::warn(
        "the join token is not used: this node already holds a certificate of mesh {} (in "
        "{}/mesh){}; to join the mesh of --join with the token, stop the node and move {}/mesh "
        "away",
        mesh->roots.empty() ? std::string("?") : mesh->roots[0].MeshId(), state,
        mesh->root_key ? ", which it created and holds the root key of" : "", state);
  }
  if (!mesh.ok() || !mesh->empty()) return mesh;
  if (!config.JoinList().empty()) {
    if (config.token.empty()) {
      return absl::FailedPreconditionError(StrCat(
          "this node has no certificate of a mesh (none in ", state,
          "/mesh): join with --token HM1-... (`hivemesh token create` on a member makes one), "
          "or run a mesh without certificates with --insecure on every node"));
    }
    mesh = JoinWithToken(config, key);
  } else {
    if (absl::Status fits =
            identity::CheckNodeIdentity(config.node_name, config.LabelMap(), key.public_key());
        !fits.ok()) {
      return absl::InvalidArgumentError(
          StrCat("cannot create a mesh: ", MessageOf(fits),
                 " (a certificate holds only these; or run without certificates: --insecure)"));
    }
    mesh = identity::CreateMesh(key, config.node_name, config.LabelMap(),
                                std::chrono::system_clock::now(),
                                std::chrono::seconds(config.CertificateTtlSeconds()));
    *created = mesh.ok();
  }
  if (!mesh.ok()) return mesh.status();
  HM_RETURN_IF_ERROR(identity::SaveMesh(state, *mesh));
  spdlog::info("{} mesh {} (CA digest {}) in {}/mesh",
               config.JoinList().empty() ? "created a new" : "joined", mesh->roots[0].MeshId(),
               mesh->ca_digest(), state);
  return mesh;
}

}  // namespace

namespace {

// The gossip keyring of `keys` (base64, the primary first).
absl::StatusOr<membership::Keyring> MakeKeyring(const std::vector<std::string_view>& keys,
                                                const std::string& label) {
  std::vector<std::string> raw_keys;
  for (std::string_view k : keys) {
    absl::StatusOr<std::string> raw = membership::Keyring::DecodeKey(k);
    if (!raw.ok()) {
      return absl::InvalidArgumentError(
          StrCat("gossip_keys: key ", raw_keys.size() + 1, ": ", MessageOf(raw.status())));
    }
    raw_keys.push_back(std::move(*raw));
  }
  absl::StatusOr<membership::Keyring> ring =
      membership::Keyring::Create(std::move(raw_keys), label);
  if (!ring.ok())
    return absl::InvalidArgumentError(StrCat("gossip_keys: ", MessageOf(ring.status())));
  return ring;
}

}  // namespace

absl::Status Agent::StartGossip() {
  membership::GossipOptions options;
  options.name = config_.node_name;
  options.bind_address = config_.gossip_address;
  options.join = config_.JoinList();
  absl::StatusOr<membership::SwimConfig> profile =
      membership::SwimConfig::Profile(config_.gossip_profile);
  if (!profile.ok()) return profile.status();
  options.swim = *profile;
  options.swim.max_members = config_.gossip_max_members;
  options.swim.watchers = config_.gossip_watchers;
  const std::string key_path = config_.StateDir() + "/node.key";
  absl::StatusOr<identity::NodeKey> node_key = identity::LoadOrCreateNodeKey(key_path);
  if (!node_key.ok()) return node_key.status();
  options.node_key = *std::move(node_key);
  const identity::NodeKey options_key = options.node_key;
  spdlog::info("node key {} ({})", identity::KeyFingerprint(options.node_key.public_key()),
               key_path);
  absl::StatusOr<identity::MeshCredentials> mesh =
      LoadOrCreateMesh(config_, options_key, &mesh_created_);
  if (!mesh.ok()) return mesh.status();
  const std::shared_ptr<const identity::MeshCredentials> creds =
      std::make_shared<const identity::MeshCredentials>(*std::move(mesh));
  {
    absl::MutexLock lock(&creds_mu_);
    mesh_credentials_ = creds;
  }
  node_key_ = std::make_shared<const identity::NodeKey>(options_key);
  if (creds->issuer_cert && creds->issuer_key) {
    absl::StatusOr<std::unique_ptr<identity::IssuerService>> opened =
        identity::IssuerService::Open(config_.StateDir(), *creds, config_.node_name,
                                      std::chrono::seconds(config_.CertificateTtlSeconds()));
    if (!opened.ok()) return opened.status();
    issuer_ = std::move(*opened);
  }
  if (creds->node_cert) {
    // The key each name is bound to in gossip: a join may not take a member's name.
    identity::Issuer::KeyOf key_of = [this](std::string_view name) { return KeyOf(name); };
    absl::StatusOr<std::unique_ptr<JoinService>> join =
        JoinService::Create(*creds, options_key, issuer_, std::move(key_of));
    if (!join.ok()) return join.status();
    join_ = std::move(*join);
    options.on_tls_connection = [this](int fd, const std::string&) { join_->Serve(fd); };
    HM_RETURN_IF_ERROR(PresentCertificate(*creds));
    // Gossip's TCP exchanges are mutual TLS with the same certificate and check as links.
    options.tls = tls_;
    // The policy this node enforced before it stopped is in force before it serves.
    mesh_policy_ =
        std::make_shared<MeshPolicy>(config_.StateDir() + "/mesh/policy", policy_holder_);
    mesh_policy_->SetOperatorCheck([this](std::string_view signer, std::string_view message,
                                          std::string_view signature, int64_t at_unix) {
      return CheckOperatorSignature(signer, message, signature, at_unix);
    });
    HM_RETURN_IF_ERROR(mesh_policy_->Load(TrustedIssuers(*creds)));
  }
  options.max_tcp_connections = static_cast<size_t>(config_.gossip_max_connections);
  options.max_tcp_connections_per_source =
      static_cast<size_t>(config_.gossip_max_connections_per_source);
  options.tcp_buffer_bytes = static_cast<size_t>(config_.gossip_buffer_mb) << 20;
  options.tcp_head_timeout = std::chrono::milliseconds(config_.gossip_head_timeout_ms);
  // A plaintext node told to join a mesh that encrypts its gossip cannot be a member of it: the
  // agent stops (RunAgent reads join_status() and exits non-zero).
  options.on_encryption_required = [this](const std::string& seed) {
    {
      absl::MutexLock lock(&join_mu_);
      refused_by_ = seed;
    }
    kill(getpid(), SIGTERM);
  };
  // A secure mesh's gossip keys come with the certificate; --gossip-keys is for insecure meshes
  // (and for meshes made before the mesh had keys of its own).
  std::vector<std::string_view> gossip_keys;
  if (!config_.gossip_keys.empty()) gossip_keys = Split(config_.gossip_keys, ',');
  if (!creds->gossip_keys.empty()) {
    if (!gossip_keys.empty()) {
      return absl::InvalidArgumentError(
          StrCat("gossip_keys: the nodes of a secure mesh get their gossip keys from the mesh "
                 "(with their certificate; kept in ",
                 config_.StateDir(), "/mesh/gossip.keys); --gossip-keys is for --insecure"));
    }
    gossip_keys.assign(creds->gossip_keys.begin(), creds->gossip_keys.end());
  }
  if (!gossip_keys.empty()) {
    HM_ASSIGN_OR_RETURN(options.keyring, MakeKeyring(gossip_keys, config_.cluster_label));
  }

  absl::MutexLock lock(&meta_mu_);
  absl::StatusOr<std::string> encoded = EncodedMeta();
  if (!encoded.ok()) return encoded.status();
  absl::StatusOr<std::unique_ptr<membership::GossipNode>> node =
      membership::GossipNode::Create(std::move(options), *encoded, SystemClock::Get());
  if (!node.ok()) return node.status();
  gossip_ = std::move(*node);
  // Members whose keys this issuer revoked stay out of the membership after a restart, and
  // issuers it revoked stay unable to vouch for anyone.
  if (issuer_ != nullptr) {
    const std::vector<identity::Certificate> issuers = identity::MeshIssuers(*creds);
    for (const identity::IssuerService::Revocation& r : issuer_->Revocations()) {
      gossip_->RevokeKey(r.public_key);
      for (const identity::Certificate& c : issuers) {
        if (c.public_key() == r.public_key) issuer_revoked_.store(true);
      }
    }
  }
  directory_ = std::make_unique<GossipDirectory>(gossip_.get(), config_.node_name);
  identity::CredentialVerifier::Options verify;
  verify.self = config_.node_name;
  member_check_ = std::make_shared<MemberCheck>(
      std::make_shared<identity::CredentialVerifier>(
          verify, [directory = directory_.get()](
                      std::string_view member) { return directory->MemberKey(member); }),
      rejections_, UnixMillisNow, /*require_tls=*/tls_ != nullptr);
  if (tls_ != nullptr) {
    // Every connection to a peer is mutual TLS: the certificate proves who this node is.
    peers_ = PeerClient::Create(io_, nullptr, SystemClock::Get(), tls_);
  } else {
    // Every link this node opens, and every request it sends a peer over plain HTTP, proves
    // that it comes from this member (identity/member_credential.h).
    peer_credential_ = [key = options_key, self = config_.node_name](std::string_view peer,
                                                                     std::string_view purpose) {
      return identity::MakeCredential(key, self, peer, purpose, UnixMillisNow(),
                                      identity::RandomNonce());
    };
    peers_ = PeerClient::Create(io_, peer_credential_, SystemClock::Get());
  }
  routing::ForwarderOptions routing;
  routing.policy.mode = config_.routing_mode == "local"    ? routing::RoutingMode::kLocal
                        : config_.routing_mode == "random" ? routing::RoutingMode::kRandom
                                                           : routing::RoutingMode::kHivemesh;
  routing.policy.local_margin = config_.local_margin;
  routing.policy.local_margin_abs = std::chrono::milliseconds(config_.local_margin_ms);
  routing.max_hops = config_.max_hops;
  routing.hold_max = std::chrono::milliseconds(config_.settle_hold_ms);
  // A peer that has not heard of this node yet will within a few gossip rounds.
  routing.origin_retry_after = profile->gossip_interval;
  forwarder_ =
      std::make_unique<routing::Forwarder>(directory_.get(), peers_.get(), config_.node_name,
                                           std::random_device{}(), routing, SystemClock::Get());
  mesh_ = std::make_unique<MeshHandler>(gossip_.get(), forwarder_.get());
  return absl::OkStatus();
}

template <typename Announcement>
void Agent::FillControlVersions(Announcement& out) const {
  out.revocations = issuer_ != nullptr ? issuer_->revocation_count() : 0;
  out.policy = mesh_policy_ != nullptr ? mesh_policy_->version() : 0;
  if (const std::shared_ptr<const identity::MeshCredentials> mesh = Credentials(); mesh) {
    out.roots = mesh->roots.size();
    out.gossip_keys = mesh->gossip_keys_version;
    out.issuers = identity::MeshIssuers(*mesh).size();
  }
  out.objects = objects_ != nullptr ? objects_->Fingerprint() : 0;
}

namespace {

// What member `m` announces: its metadata, with the control versions of its latest load report
// where they are higher (load reports are re-gossiped every probe interval: a metadata change
// this node missed shows there within seconds).
absl::StatusOr<membership::NodeMeta> AnnouncedBy(const membership::MemberInfo& m) {
  absl::StatusOr<membership::NodeMeta> meta = membership::DecodeNodeMeta(m.meta);
  if (absl::StatusOr<membership::LoadReport> load = membership::DecodeLoadReport(m.load);
      meta.ok() && load.ok()) {
    meta->revocations = std::max(meta->revocations, load->revocations);
    meta->policy = std::max(meta->policy, load->policy);
    meta->roots = std::max(meta->roots, load->roots);
    meta->gossip_keys = std::max(meta->gossip_keys, load->gossip_keys);
    meta->issuers = std::max(meta->issuers, load->issuers);
  }
  return meta;
}

// The objects' fingerprint in `m`'s load report (0: none). Not a version: which of it and the
// metadata's is newer is not known (metadata pushed at an apply arrives before the next load
// report), so both are looked at.
uint64_t LoadReportObjects(const membership::MemberInfo& m) {
  absl::StatusOr<membership::LoadReport> load = membership::DecodeLoadReport(m.load);
  return load.ok() ? load->objects : 0;
}

}  // namespace

absl::StatusOr<std::string> Agent::EncodedMeta() const {
  membership::NodeMeta meta;
  meta.api_address = config_.http_advertise_address.empty()
                         ? StrCat(config_.http_host(), ":", http_->port())
                         : config_.http_advertise_address;
  meta.draining = draining_;
  meta.insecure = config_.insecure;
  meta.software_version = HIVEMESH_VERSION;
  FillControlVersions(meta);
  meta.labels = config_.LabelMap();
  meta.cores = std::thread::hardware_concurrency();
  meta.memory_mb = static_cast<uint64_t>(sysconf(_SC_PHYS_PAGES)) *
                   static_cast<uint64_t>(sysconf(_SC_PAGESIZE)) / (1024 * 1024);
  if (bus_ != nullptr) {
    meta.insight_filters = bus_->Filters();
    const bool fits = meta.insight_filters.size() <= membership::kMaxInsightFilters &&
                      std::all_of(meta.insight_filters.begin(), meta.insight_filters.end(),
                                  [](const std::string& f) {
                                    return f.size() <= membership::kMaxInsightFilterBytes;
                                  });
    if (!fits) meta.insight_filters = {"#"};  // everything comes; the bus filters it here
  }
  if (workloads_ != nullptr) {
    const std::set<std::string> ready = workloads_->Ready();
    meta.ready_workloads.assign(ready.begin(), ready.end());
    if (meta.ready_workloads.size() > membership::kMaxReadyWorkloads) {
      meta.ready_workloads.resize(membership::kMaxReadyWorkloads);
    }
  }
  for (const ModelEntry& e : repository_->Index()) {
    if (meta.models.empty() || meta.models.back().name != e.name) {
      meta.models.push_back(membership::ModelAdvert{e.name, {}, false});
      if (RuntimePtr rt = repository_->Get(e.name, ""); rt != nullptr) {
        meta.models.back().data_policy = static_cast<uint8_t>(rt->config().data_policy);
        meta.models.back().instances = static_cast<uint32_t>(rt->config().instances);
      }
    }
    if (e.state == "READY") {
      meta.models.back().versions.push_back(e.version);
      meta.models.back().ready = true;
    }
  }
  absl::StatusOr<std::string> encoded = membership::EncodeNodeMeta(meta);
  // Insight filters that do not fit become "#" (this node filters what arrives).
  if (!encoded.ok() && meta.insight_filters != std::vector<std::string>{"#"} &&
      !meta.insight_filters.empty()) {
    meta.insight_filters = {"#"};
    encoded = membership::EncodeNodeMeta(meta);
  }
  // Ready workloads that do not fit are left out (the mesh then sends them nothing): the
  // models, labels and versions must get through.
  while (!encoded.ok() && !meta.ready_workloads.empty()) {
    meta.ready_workloads.pop_back();
    encoded = membership::EncodeNodeMeta(meta);
  }
  return encoded;
}

void Agent::AnnounceControlChange() {
  AnnounceMeta();
  if (gossip_ != nullptr) gossip_->PushSelfToAll();
}

void Agent::AnnounceMeta() {
  absl::MutexLock lock(&meta_mu_);
  if (gossip_ == nullptr) return;  // not started yet: StartGossip encodes what serves then
  absl::StatusOr<std::string> meta = EncodedMeta();
  if (!meta.ok()) {
    spdlog::error("the mesh is not told of this node's models: {}", MessageOf(meta.status()));
    return;
  }
  gossip_->UpdateMeta(*std::move(meta));
}

absl::Status Agent::Reload(const AgentConfig& updated) {
  absl::MutexLock lock(&meta_mu_);
  if (updated.labels == config_.labels) return absl::OkStatus();
  const std::string previous = config_.labels;
  config_.labels = updated.labels;
  absl::StatusOr<std::string> meta = EncodedMeta();
  if (!meta.ok()) {
    config_.labels = previous;
    return meta.status();
  }
  gossip_->UpdateMeta(*std::move(meta));
  dispatcher_->SetZone(config_.LabelMap()["zone"]);
  spdlog::info("labels now '{}'; the mesh is told", config_.labels);
  return absl::OkStatus();
}

std::string Agent::LoadReport() const {
  membership::LoadReport report;
  for (const RuntimePtr& rt : repository_->Runtimes()) {
    const ModelStats& s = rt->stats();
    report.models.push_back(membership::ModelLoad{
        rt->config().name, static_cast<uint32_t>(std::max<int64_t>(0, s.queue_depth.load())),
        static_cast<uint32_t>(std::max<int64_t>(0, s.in_flight.load())),
        static_cast<uint32_t>(s.ewma_service_ns.load() / 1000)});
  }
  // The control versions ride along (NodeMeta has them too): see membership::LoadReport.
  FillControlVersions(report);
  return membership::EncodeLoadReport(report);
}

void Agent::ReportLoad() {
  const auto period = membership::SwimConfig::Profile(config_.gossip_profile)->probe_interval;
  absl::MutexLock lock(&load_mu_);
  while (!stopping_) {
    load_mu_.Unlock();
    gossip_->SetLoad(LoadReport());
    load_mu_.Lock();
    const SteadyTime next = SystemClock::Get().Now() + period;
    while (!stopping_ && !SystemClock::Get().WaitUntil(load_cv_, load_mu_, next)) {
    }
  }
}

std::optional<std::string> Agent::KeyOf(std::string_view name) const {
  if (gossip_ == nullptr) return std::nullopt;
  if (name == config_.node_name) {
    return node_key_ != nullptr ? std::optional<std::string>(node_key_->public_key())
                                : std::nullopt;
  }
  // One member's entry: this runs at every TLS handshake a peer makes.
  std::optional<membership::MemberInfo> m = gossip_->Find(name);
  if (m && !m->key.empty()) return m->key;
  return std::nullopt;
}

void Agent::WatchRevocations() {
  absl::MutexLock lock(&revoke_mu_);
  while (!revoke_stop_) {
    // Woken by a member event, and every few seconds in any case (an event can be missed while
    // a fetch fails).
    const SteadyTime next = SystemClock::Get().Now() + std::chrono::seconds(2);
    while (!revoke_stop_ && !revoke_check_ &&
           !SystemClock::Get().WaitUntil(revoke_cv_, revoke_mu_, next)) {
    }
    if (revoke_stop_) break;
    revoke_check_ = false;
    std::vector<std::tuple<std::string, std::string, uint64_t>> due;
    // The member announcing the newest policy, if newer than this node's.
    uint64_t newest_policy = mesh_policy_ != nullptr ? mesh_policy_->version() : 0;
    std::string policy_member, policy_api;
    // A member that trusts more roots than this node: a root rotation, taken at a renewal now.
    const std::shared_ptr<const identity::MeshCredentials> creds = Credentials();
    const uint64_t my_roots = creds != nullptr ? creds->roots.size() : 0;
    bool more_roots = false;
    // The member announcing the newest gossip keys, if newer than this node's.
    uint64_t newest_keys = creds != nullptr ? creds->gossip_keys_version : 0;
    std::string keys_member, keys_api;
    // The member that knows the most issuers, if more than this node.
    uint64_t most_issuers = creds != nullptr ? identity::MeshIssuers(*creds).size() : 0;
    std::string issuers_member, issuers_api;
    // Members that hold other objects than this node (another fingerprint).
    const uint64_t my_objects = objects_ != nullptr ? objects_->Fingerprint() : 0;
    // A member announcing a state this node held before holds nothing it lacks (a store only
    // takes newer objects): it pulls from this node, not the other way round.
    if (std::find(objects_past_.begin(), objects_past_.end(), my_objects) == objects_past_.end()) {
      objects_past_.push_back(my_objects);
      if (objects_past_.size() > 64) objects_past_.pop_front();
    }
    std::vector<std::tuple<std::string, std::string, uint64_t>> object_peers;
    // The members whose subscribers want insights, and what (docs/insights.md).
    std::vector<bus::DeliveryPeer> insight_peers;
    revoke_mu_.Unlock();
    for (const membership::MemberInfo& m : gossip_->Members()) {
      if (m.name == config_.node_name) continue;
      if (m.state == membership::MemberState::kSuspect) {
        // Suspected (often refuted a moment later): its insights keep waiting in its queue.
        absl::StatusOr<membership::NodeMeta> meta = AnnouncedBy(m);
        if (meta.ok() && !meta->insight_filters.empty()) {
          insight_peers.push_back({m.name, meta->api_address, meta->insight_filters});
        }
      }
      if (m.state != membership::MemberState::kAlive) continue;
      absl::StatusOr<membership::NodeMeta> meta = AnnouncedBy(m);
      if (meta.ok() && !meta->insight_filters.empty()) {
        insight_peers.push_back({m.name, meta->api_address, meta->insight_filters});
      }
      if (meta.ok() && creds != nullptr && !creds->gossip_keys.empty() &&
          meta->gossip_keys > newest_keys) {
        newest_keys = meta->gossip_keys;
        keys_member = m.name;
        keys_api = meta->api_address;
      }
      if (meta.ok() && meta->revocations > 0) {
        due.emplace_back(m.name, meta->api_address, meta->revocations);
      }
      if (meta.ok() && meta->roots > my_roots) more_roots = true;
      // Objects are fetched from the member's API: a member whose metadata this node cannot read
      // (another release's format, or malformed) has no address here, whatever its load says.
      for (uint64_t theirs :
           {meta.ok() ? meta->objects : 0, meta.ok() ? LoadReportObjects(m) : 0}) {
        if (theirs != 0 && theirs != my_objects &&
            std::find(objects_past_.begin(), objects_past_.end(), theirs) == objects_past_.end()) {
          object_peers.emplace_back(m.name, meta->api_address, theirs);
          break;
        }
      }
      if (meta.ok() && creds != nullptr && creds->node_cert && meta->issuers > most_issuers) {
        most_issuers = meta->issuers;
        issuers_member = m.name;
        issuers_api = meta->api_address;
      }
      if (meta.ok() && mesh_policy_ != nullptr && meta->policy > newest_policy) {
        newest_policy = meta->policy;
        policy_member = m.name;
        policy_api = meta->api_address;
      }
    }
    if (insight_delivery_ != nullptr) {
      insight_delivery_->SetPeers(std::move(insight_peers));
      insight_delivery_->Retry();
    }
    if (more_roots) {
      absl::MutexLock lock(&load_mu_);
      renew_now_ = true;
      load_cv_.Signal();
    }
    revoke_mu_.Lock();
    if (!keys_member.empty() && !gossip_keys_fetching_) {
      gossip_keys_fetching_ = true;
      revoke_mu_.Unlock();
      FetchGossipKeys(keys_member, keys_api);
      revoke_mu_.Lock();
    }
    // The workloads placed on this node (the watch thread alone starts and stops them).
    revoke_mu_.Unlock();
    ReconcileWorkloads();
    revoke_mu_.Lock();
    // One sync at a time, with a member whose objects this node has not compared with yet.
    for (auto& [name, api, fingerprint] : object_peers) {
      if (objects_syncing_) break;
      auto seen = objects_synced_.find(name);
      if (seen != objects_synced_.end() && seen->second == fingerprint) continue;
      objects_syncing_ = true;
      revoke_mu_.Unlock();
      SyncObjects(name, api, fingerprint);
      revoke_mu_.Lock();
    }
    if (!issuers_member.empty() && !issuers_fetching_) {
      issuers_fetching_ = true;
      revoke_mu_.Unlock();
      FetchIssuers(issuers_member, issuers_api);
      revoke_mu_.Lock();
    }
    if (!policy_member.empty() && !policy_fetching_) {
      policy_fetching_ = true;
      revoke_mu_.Unlock();
      FetchPolicy(policy_member, policy_api);
      revoke_mu_.Lock();
    }
    for (auto& [name, api, count] : due) {
      if (count <= revocations_seen_[name] || revocations_fetching_.count(name) > 0) continue;
      revocations_fetching_.insert(name);
      revoke_mu_.Unlock();
      FetchRevocations(name, api, count);
      revoke_mu_.Lock();
    }
  }
}

namespace {

// GET `target` from `member` at `api_address`, over mutual TLS, from that very member.
PeerRequest MemberGet(const std::string& member, const std::string& api_address,
                      std::string target) {
  PeerRequest r;
  r.address = api_address;
  r.peer_node = member;
  r.method = "GET";
  r.target = std::move(target);
  r.timeout = std::chrono::seconds(3);
  return r;
}

// The body of a member's 200 answer, or why there is none.
absl::StatusOr<std::string_view> AnswerBody(const absl::StatusOr<PeerResponse>& answer) {
  if (!answer.ok()) return answer.status();
  if (answer->status != 200 || answer->body == nullptr) {
    return absl::UnavailableError(StrCat("it answered ", answer->status));
  }
  return std::string_view(*answer->body);
}

}  // namespace

void Agent::FetchRevocations(const std::string& member, const std::string& api_address,
                             uint64_t count) {
  peers_->Send(MemberGet(member, api_address, "/v1/mesh/revoked-keys"),
               [this, member, count](absl::StatusOr<PeerResponse> answer) {
                 if (absl::StatusOr<std::string_view> body = AnswerBody(answer); !body.ok()) {
                   spdlog::warn("cannot fetch the revocations of {}: {}", member,
                                MessageOf(body.status()));
                 } else {
                   ApplyRevocations(std::string(*body), member, count);
                 }
                 absl::MutexLock lock(&revoke_mu_);
                 revocations_fetching_.erase(member);
               });
}

void Agent::ReconcileWorkloads() {
  if (objects_ == nullptr || supervisor_ == nullptr || gossip_ == nullptr) return;
  // The live members as placement sees them (this node among them), from their metadata.
  std::vector<services::Candidate> members;
  std::map<std::string, std::string> api_of;            // member -> its HTTP API
  std::map<std::string, std::string> zone_of;           // member -> its zone label
  std::set<std::pair<std::string, std::string>> ready;  // (member, workload) ready there
  for (const membership::MemberInfo& m : gossip_->Members()) {
    if (m.state != membership::MemberState::kAlive) continue;
    absl::StatusOr<membership::NodeMeta> meta = membership::DecodeNodeMeta(m.meta);
    if (!meta.ok()) continue;
    members.push_back(services::Candidate{m.name, meta->labels, meta->draining});
    api_of[m.name] = meta->api_address;
    if (auto zone = meta->labels.find("zone"); zone != meta->labels.end()) {
      zone_of[m.name] = zone->second;
    }
    if (m.name == config_.node_name) continue;  // this node's own view is below
    for (const std::string& w : meta->ready_workloads) ready.emplace(m.name, w);
  }
  if (workloads_ != nullptr) {
    for (const std::string& w : workloads_->Ready()) ready.emplace(config_.node_name, w);
  }
  std::map<std::string, std::string> wanted;  // name -> version
  std::map<std::string, services::WatchedWorkload> watched;
  std::map<std::string, services::ProcessSpec> specs;
  std::vector<services::Manifest> service_objects;
  // Every workload placed, and where (for the services' routes).
  std::vector<std::pair<services::Manifest, std::vector<std::string>>> workloads;
  // Manifests are parsed once per version (this runs at every member event).
  std::map<std::pair<services::Kind, std::string>,
           std::pair<services::Version, std::optional<services::Manifest>>>
      parsed_now;
  // One snapshot for both passes: an apply landing in between must not leave an object unparsed.
  const std::vector<services::StoredObject> live = objects_->Live();
  for (const services::StoredObject& o : live) {
    auto cached = parsed_manifests_.find(o.key());
    if (cached != parsed_manifests_.end() && cached->second.first == o.version) {
      parsed_now.emplace(o.key(), std::move(cached->second));
    } else {
      absl::StatusOr<services::Parsed> parsed = services::ParseManifests(o.text);
      std::optional<services::Manifest> one;
      if (parsed.ok() && parsed->manifests.size() == 1) one = std::move(parsed->manifests[0]);
      parsed_now.emplace(o.key(), std::make_pair(o.version, std::move(one)));
    }
  }
  parsed_manifests_ = std::move(parsed_now);
  for (const services::StoredObject& o : live) {
    const std::optional<services::Manifest>& one = parsed_manifests_.at(o.key()).second;
    if (!one) continue;
    const services::Manifest& m = *one;
    if (o.kind == services::Kind::kService) {
      service_objects.push_back(m);
      continue;
    }
    absl::StatusOr<services::PlacementRule> rule = services::RuleOf(m);
    if (!rule.ok()) {
      if (workload_errors_.insert(StrCat(o.name, "@", o.version.unix_ms)).second) {
        spdlog::error("workload {} is not placed: {}", o.name, MessageOf(rule.status()));
      }
      continue;
    }
    const std::vector<std::string> placed = services::Place(o.name, *rule, members);
    workloads.emplace_back(m, placed);
    if (std::find(placed.begin(), placed.end(), config_.node_name) == placed.end()) continue;
    services::ProcessSpec spec{o.name, m.workload.command, m.workload.env};
    spec.argv.insert(spec.argv.end(), m.workload.args.begin(), m.workload.args.end());
    if (!m.workload.image.empty()) {
      // An image runs through podman, in the foreground under the supervisor.
      const char* path = std::getenv("PATH");
      const std::optional<std::string> podman = services::FindInPath("podman", path ? path : "");
      if (!podman) {
        if (workload_errors_.insert(StrCat(o.name, "@", o.version.unix_ms)).second) {
          spdlog::error(
              "workload {} is placed here and runs an image ({}), but podman is not installed "
              "on this node (images run through podman; install it, or give the Deployment a "
              "command to run as a process)",
              o.name, m.workload.image);
        }
        continue;
      }
      const std::string container = services::ContainerName(config_.node_name, o.name);
      spec.argv = services::PodmanRun(*podman, container, m.workload);
      containers_[o.name] = services::PodmanRemove(*podman, container);
    }
    wanted[o.name] = StrCat(o.version.unix_ms, ".", o.version.counter, ".", o.version.origin);
    services::WatchedWorkload& w = watched[o.name];
    if (!m.workload.ports.empty()) w.port = m.workload.ports.front().container_port;
    auto a = m.annotations.find(std::string(services::kKserveAnnotation));
    w.kserve_annotated = a != m.annotations.end() && a->second == "true";
    if (const std::optional<services::HttpProbe>& probe = m.workload.readiness) {
      services::ReadinessCheck check;
      check.path = probe->path;
      check.port = w.port;
      if (std::optional<uint64_t> n = ParseUint(probe->port); n && *n > 0 && *n <= 65535) {
        check.port = static_cast<uint16_t>(*n);
      }
      for (const services::ContainerPort& c : m.workload.ports) {
        if (!c.name.empty() && c.name == probe->port) check.port = c.container_port;
      }
      check.period = std::chrono::seconds(std::max(1, probe->period_seconds));
      check.failure_threshold = std::max(1, probe->failure_threshold);
      w.probe = check;
    }
    specs[o.name] = std::move(spec);
  }
  // Each Service's route: the nodes that run a workload it selects, at its target port.
  std::map<std::string, ServiceProxy::Route, std::less<>> routes;
  for (const services::Manifest& s : service_objects) {
    ServiceProxy::Route& route = routes[s.name];
    route.service = s.name;
    if (auto policy = s.annotations.find(std::string(services::kDataPolicyAnnotation));
        policy != s.annotations.end()) {
      route.policy = DataPolicyFromName(policy->second).value_or(DataPolicy::kMesh);
    }
    for (const auto& [w, placed] : workloads) {
      bool selected = true;
      for (const auto& [k, v] : s.service.selector) {
        auto it = w.workload.template_labels.find(k);
        selected = selected && it != w.workload.template_labels.end() && it->second == v;
      }
      if (!selected) continue;
      // Each port's target: a number, a container port's name, or (none) the Service's port.
      route.ports.clear();
      for (const services::ServicePort& port : s.service.ports) {
        uint16_t target = port.port;
        if (!port.target_port.empty()) {
          if (std::optional<uint64_t> n = ParseUint(port.target_port)) {
            target = static_cast<uint16_t>(*n);
          } else {
            target = 0;
            for (const services::ContainerPort& c : w.workload.ports) {
              if (c.name == port.target_port) target = c.container_port;
            }
          }
        }
        route.ports.emplace_back(port.port, target);
      }
      const uint16_t target = route.ports.front().second;
      if (target == 0) continue;
      route.target_port = target;
      for (const std::string& node : placed) {
        if (auto api = api_of.find(node); api != api_of.end()) {
          auto zone = zone_of.find(node);
          route.endpoints.push_back(
              ServiceProxy::Endpoint{node, api->second, ready.contains({node, w.name}),
                                     zone == zone_of.end() ? std::string() : zone->second});
        }
      }
    }
  }
  {
    // Replaced only when it changed: the proxy reads it at every request, and an idle node makes
    // no allocation here.
    absl::MutexLock lock(&routes_mu_);
    if (routes_ == nullptr || *routes_ != routes) {
      routes_ = std::make_shared<const std::map<std::string, ServiceProxy::Route, std::less<>>>(
          std::move(routes));
    }
  }
  std::set<uint16_t> workload_ports;  // what this node's workloads listen on
  for (const auto& [name, w] : watched) {
    if (w.port != 0) workload_ports.insert(w.port);
    if (w.probe && w.probe->port != 0) workload_ports.insert(w.probe->port);
  }
  UpdateServicePorts(service_objects, workload_ports);
  // Models of KServe v2 workloads leave before their workload stops, and join once it serves.
  if (workloads_) workloads_->SetWorkloads(std::move(watched));
  // Stop what is no longer placed here (deleted, moved, changed), then start what is.
  for (auto it = running_.begin(); it != running_.end();) {
    auto w = wanted.find(it->first);
    if (w != wanted.end() && w->second == it->second) {
      ++it;
      continue;
    }
    spdlog::info(
        "workload {} {}", it->first,
        w == wanted.end() ? "is no longer placed here: stopping it" : "changed: starting it anew");
    supervisor_->Stop(it->first);
    RemoveContainer(it->first);
    it = running_.erase(it);
  }
  for (auto& [name, version] : wanted) {
    if (running_.count(name) > 0) continue;
    spdlog::info("workload {} is placed on this node: starting it", name);
    supervisor_->Run(name, std::move(specs[name]));
    running_[name] = version;
  }
}

void Agent::RemoveContainer(const std::string& workload) {
  auto it = containers_.find(workload);
  if (it == containers_.end()) return;
  std::vector<std::string> args = std::move(it->second);
  containers_.erase(it);
  // `podman rm --force`: nothing if podman's --rm removed it already; the container of a podman
  // that had to be killed otherwise. Waited for, at most 30 s.
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    spdlog::warn("the container of workload {} is not removed: {}", workload, std::strerror(rc));
    return;
  }
  for (int i = 0; i < 3000; ++i) {
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  spdlog::warn("removing the container of workload {} takes over 30 s; left to finish", workload);
}

void Agent::UpdateServicePorts(const std::vector<services::Manifest>& service_objects,
                               const std::set<uint16_t>& workload_ports) {
  // Each port to the first Service (by name) that asks for it; a later one clashes.
  struct Wanted {
    std::string service;
    bool connection_level = false;
  };
  std::map<uint16_t, Wanted> want;
  // Per Service, each of its ports' state in the manifest's order ("listening on ...", or why
  // not), joined for `get services`.
  std::map<std::string, std::vector<std::pair<uint16_t, std::string>>> per_port;
  std::vector<const services::Manifest*> by_name;
  for (const services::Manifest& s : service_objects) by_name.push_back(&s);
  std::sort(
      by_name.begin(), by_name.end(),
      [](const services::Manifest* a, const services::Manifest* b) { return a->name < b->name; });
  for (const services::Manifest* s : by_name) {
    for (const services::ServicePort& p : s->service.ports) {
      const uint16_t port = p.port;
      std::string why;
      if (http_ != nullptr && port == http_->port()) {
        why = StrCat("port ", port, " is this node's HTTP API port: reach it by name");
      } else if (workload_ports.contains(port)) {
        // Taking it would keep the workload from listening there.
        why = StrCat("port ", port, " is a port of a workload this node runs");
      } else if (auto taken = want.find(port); taken != want.end()) {
        why = StrCat("port ", port, " clashes with Service ", taken->second.service);
      } else {
        want[port] = Wanted{s->name, p.ConnectionLevel()};
      }
      per_port[s->name].emplace_back(port, std::move(why));
    }
  }
  for (auto it = port_listeners_.begin(); it != port_listeners_.end();) {
    auto w = want.find(it->first);
    if (w != want.end() && w->second.service == it->second.service &&
        w->second.connection_level == it->second.connection_level) {
      ++it;
      continue;
    }
    spdlog::info("service {} no longer listens on port {}", it->second.service, it->first);
    it->second.server->Stop();
    it = port_listeners_.erase(it);
  }
  const std::string host = service_port_options_.host;
  std::map<std::pair<std::string, uint16_t>, std::string> listening;
  for (const auto& [at, wanted] : want) {
    const uint16_t port = at;  // a variable of its own: lambdas capture it
    const std::string& name = wanted.service;
    if (!port_listeners_.contains(port)) {
      HttpServerOptions options = service_port_options_;
      options.port = port;
      // What is not HTTP/1.x (or, for a connection-level port, every connection) is relayed.
      options.pass_through_all = wanted.connection_level;
      const auto credential = [this](const std::string& node) {
        return peer_credential_ ? peer_credential_(node, kCredentialForLink) : std::string();
      };
      options.forward = [this, service = name, port, credential](const HttpRequest& head) {
        return service_proxy_->PlanForward(service, head, credential, port);
      };
      options.pass_through = [this, service = name, port, credential](std::string_view) {
        return service_proxy_->PlanPassThrough(service, credential, port);
      };
      absl::StatusOr<std::unique_ptr<HttpServer>> server = HttpServer::Create(
          options,
          [this, service = name, port](const HttpRequest& req, HttpResponder respond) {
            service_proxy_->Serve(service, req, std::move(respond), port);
          },
          io_);
      if (!server.ok()) {
        listening[{name, port}] =
            StrCat("port ", port, " is not free here: ", MessageOf(server.status()));
        continue;
      }
      (*server)->Start();
      port_listeners_[port] = PortListener{name, wanted.connection_level, std::move(*server)};
      spdlog::info("service {} listens on {}:{}", name, host, port);
    }
    listening[{name, port}] = StrCat("listening on ", host, ":", port);
  }
  std::map<std::string, std::string, std::less<>> status;
  std::map<std::string, std::string> problems;  // per "service port": why not, to log once
  for (auto& [name, ports] : per_port) {
    std::string& joined = status[name];
    for (auto& [port, why] : ports) {
      if (why.empty()) why = listening[{name, port}];
      if (!why.starts_with("listening")) problems[StrCat(name, " ", port)] = why;
      if (!joined.empty()) joined += "; ";
      joined += why;
    }
  }
  absl::MutexLock lock(&port_status_mu_);
  for (const auto& [key, why] : problems) {
    auto was = port_problems_.find(key);
    if (was == port_problems_.end() || was->second != why) {
      spdlog::warn("service {}: {}", key.substr(0, key.find(' ')), why);
    }
  }
  port_problems_ = std::move(problems);
  port_status_ = std::move(status);
}

std::string Agent::ServicePortStatus(std::string_view service) const {
  absl::MutexLock lock(&port_status_mu_);
  auto it = port_status_.find(service);
  return it == port_status_.end() ? std::string() : it->second;
}

void Agent::SyncObjects(const std::string& member, const std::string& api_address,
                        uint64_t fingerprint) {
  const auto done = [this, member, fingerprint](bool ok) {
    absl::MutexLock lock(&revoke_mu_);
    objects_syncing_ = false;
    if (ok) objects_synced_[member] = fingerprint;
    // Members that announced other objects while this sync ran are compared now, not at the
    // watch thread's next periodic look.
    revoke_check_ = true;
    revoke_cv_.Signal();
  };
  peers_->Send(
      MemberGet(member, api_address, "/v1/objects/index"),
      [this, member, api_address, done](absl::StatusOr<PeerResponse> answer) {
        const absl::StatusOr<std::string_view> body = AnswerBody(answer);
        const absl::StatusOr<std::vector<services::IndexEntry>> index =
            body.ok() ? services::DecodeIndex(*body) : body.status();
        if (!index.ok()) {
          spdlog::warn("the objects index of {} is not read: {}", member,
                       MessageOf(index.status()));
          return done(false);
        }
        const std::vector<services::ObjectKey> wanted = objects_->Wanted(*index);
        if (wanted.empty()) return done(true);  // it lacks some of ours: it pulls them
        PeerRequest pull = MemberGet(member, api_address, "/v1/objects/pull");
        pull.method = "POST";
        pull.body = services::EncodeKeys(wanted);
        pull.headers.emplace_back("Content-Type", "text/plain");
        peers_->Send(std::move(pull), [this, member, done](absl::StatusOr<PeerResponse> pulled) {
          const absl::StatusOr<std::string_view> objects = AnswerBody(pulled);
          const absl::StatusOr<std::vector<services::StoredObject>> decoded =
              objects.ok() ? services::DecodeObjects(*objects) : objects.status();
          const absl::StatusOr<size_t> taken =
              decoded.ok() ? objects_->Merge(*decoded) : decoded.status();
          if (!taken.ok()) {
            spdlog::warn("the objects of {} are not taken: {}", member, MessageOf(taken.status()));
            return done(false);
          }
          if (*taken > 0) spdlog::info("{} applied object(s) taken from {}", *taken, member);
          done(true);
        });
      });
}

void Agent::FetchPolicy(const std::string& member, const std::string& api_address) {
  peers_->Send(MemberGet(member, api_address, "/v1/mesh/policy"),
               [this, member](absl::StatusOr<PeerResponse> answer) {
                 const absl::StatusOr<std::string_view> body = AnswerBody(answer);
                 const absl::StatusOr<SignedPolicy> offered =
                     body.ok() ? DecodeSignedPolicy(*body) : body.status();
                 const absl::StatusOr<bool> taken =
                     offered.ok() ? mesh_policy_->Offer(*offered, TrustedIssuers(*Credentials()))
                                  : offered.status();
                 if (!taken.ok()) {
                   spdlog::warn("the mesh policy from {} is not taken: {}", member,
                                MessageOf(taken.status()));
                 } else if (*taken) {
                   spdlog::info("mesh policy version {} in force (from {})",
                                mesh_policy_->version(), member);
                   AnnounceMeta();  // members that hold an older one fetch it from here too
                 }
                 absl::MutexLock lock(&revoke_mu_);
                 policy_fetching_ = false;
                 // A refused or failed fetch is tried again at the next look (a member event, or 3
                 // s).
               });
}

void Agent::FetchGossipKeys(const std::string& member, const std::string& api_address) {
  peers_->Send(
      MemberGet(member, api_address, "/v1/mesh/gossip-keys"),
      [this, member](absl::StatusOr<PeerResponse> answer) {
        const absl::StatusOr<std::string_view> body = AnswerBody(answer);
        const absl::StatusOr<SignedGossipKeys> offered =
            body.ok() ? DecodeGossipKeys(*body) : body.status();
        if (absl::Status taken = offered.ok() ? TakeGossipKeys(*offered, member) : offered.status();
            !taken.ok()) {
          spdlog::warn("the gossip keys from {} are not taken: {}", member, MessageOf(taken));
        }
        absl::MutexLock lock(&revoke_mu_);
        gossip_keys_fetching_ = false;  // a failed fetch is tried again at the next look
      });
}

absl::Status Agent::TakeGossipKeys(const SignedGossipKeys& offered, const std::string& from) {
  absl::MutexLock rotate(&rotate_mu_);
  const std::shared_ptr<const identity::MeshCredentials> mesh = Credentials();
  if (offered.version <= mesh->gossip_keys_version) return absl::OkStatus();  // one came first
  bool signed_by_issuer = false;
  for (const identity::Certificate& issuer : TrustedIssuers(*mesh)) {
    signed_by_issuer =
        signed_by_issuer ||
        identity::VerifyGossipKeys(issuer, offered.version, offered.keys, offered.signature);
  }
  if (!signed_by_issuer) {
    return absl::PermissionDeniedError(
        StrCat("version ", offered.version, " is not signed by an issuer of the mesh"));
  }
  identity::MeshCredentials next = *mesh;
  next.gossip_keys = offered.keys;
  next.gossip_keys_version = offered.version;
  next.gossip_keys_signature = offered.signature;
  HM_RETURN_IF_ERROR(identity::SaveMesh(config_.StateDir(), next));
  InstallCredentials(std::move(next));
  spdlog::info("gossip keys version {} in force (from {})", offered.version, from);
  return absl::OkStatus();
}

absl::Status Agent::CheckTokenNotRevoked(const identity::ClientToken& token) const {
  int64_t before = issuer_ != nullptr ? issuer_->ClientTokensRevokedBefore(token.subject) : 0;
  {
    absl::MutexLock lock(&revoked_mu_);
    if (auto it = tokens_revoked_before_.find(token.subject); it != tokens_revoked_before_.end()) {
      before = std::max(before, it->second);
    }
  }
  if (token.issued <= before) {
    return absl::PermissionDeniedError(StrCat("client '", token.subject,
                                              "''s bearer tokens issued at or before unix ", before,
                                              " are revoked"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> Agent::CheckOperatorSignature(std::string_view signer,
                                                          std::string_view message,
                                                          std::string_view signature,
                                                          int64_t at_unix) const {
  const std::shared_ptr<const identity::MeshCredentials> mesh = Credentials();
  if (mesh == nullptr || mesh->roots.empty()) {
    return absl::FailedPreconditionError("this node has no certificate of a mesh yet");
  }
  // A time a clock holds (the system clock counts nanoseconds in 64 bits): a saved version
  // of an operator's policy is its signing time in ms, and may be anything it signed.
  if (at_unix < 0 || at_unix > 4'102'444'800) {
    return absl::InvalidArgumentError(StrCat("signing time unix ", at_unix, " is out of range"));
  }
  HM_ASSIGN_OR_RETURN(std::vector<identity::Certificate> chain,
                      identity::Certificate::AllFromPem(signer));
  if (chain.empty()) return absl::InvalidArgumentError("the signer holds no certificate");
  // Through what the signer sent, or an issuer of the mesh this node knows.
  std::vector<identity::Certificate> through(chain.begin() + 1, chain.end());
  for (const identity::Certificate& c : TrustedIssuers(*mesh)) through.push_back(c);
  HM_ASSIGN_OR_RETURN(
      identity::NodeIdentity who,
      identity::VerifyNodeCertificate(chain.front(), through, mesh->roots,
                                      identity::WallTime(std::chrono::seconds(at_unix))));
  if (!who.client || who.role != identity::Role::kOperator) {
    return absl::PermissionDeniedError(
        StrCat("'", who.name,
               "' holds no operator certificate (hivemesh cert issue-client NAME "
               "--role operator)"));
  }
  if (KeyRevoked(who.public_key))
    return absl::PermissionDeniedError(StrCat("operator '", who.name, "'s key is revoked"));
  if (!identity::VerifySignature(who.public_key, message, signature)) {
    return absl::PermissionDeniedError(
        StrCat("the signature is not operator '", who.name, "'s over this version and text"));
  }
  return who.name;
}

void Agent::CutOff(const std::string& name, const std::string& key) {
  http_->CloseConnectionsOf(name);
  for (const Caller::Kind kind : {Caller::Kind::kClient, Caller::Kind::kOperator}) {
    http_->CloseConnectionsOf(TlsPeerName(kind, name));  // a client certificate's
  }
  peers_->CloseConnectionsTo(name);
  gossip_->RevokeKey(key);  // its claims are refused, and it is dead here
  // An issuer's key: what it signed stops counting (TrustedIssuers, CheckPeer's chain check),
  // also for peers verified before.
  if (const std::shared_ptr<const identity::MeshCredentials> mesh = Credentials(); mesh) {
    for (const identity::Certificate& c : identity::MeshIssuers(*mesh)) {
      if (c.public_key() == key) issuer_revoked_.store(true);
    }
  }
  if (peer_verifier_ != nullptr) peer_verifier_->Clear();
}

void Agent::ApplyRevocations(const std::string& body, const std::string& from, uint64_t count) {
  const std::shared_ptr<const identity::MeshCredentials> mesh = Credentials();
  simdjson::dom::parser parser;
  simdjson::dom::array list;
  const std::vector<identity::Certificate> issuers =
      mesh != nullptr ? TrustedIssuers(*mesh) : std::vector<identity::Certificate>{};
  if (mesh == nullptr || issuers.empty() ||
      parser.parse(body).get_object()["revoked"].get(list) != simdjson::SUCCESS) {
    spdlog::warn("the revocations of {} cannot be read", from);
    return;
  }
  // Names and keys this list revokes for the first time.
  std::vector<std::pair<std::string, std::string>> newly;
  for (simdjson::dom::element e : list) {
    std::string_view key_hex, name, signature_hex;
    if (e["key"].get(key_hex) || e["name"].get(name) || e["signature"].get(signature_hex)) {
      continue;
    }
    std::optional<std::string> key = HexDecode(key_hex), signature = HexDecode(signature_hex);
    // Signed by an issuer of this mesh (one this node knows), or not taken.
    bool signed_by_issuer = false;
    for (const identity::Certificate& issuer : issuers) {
      signed_by_issuer =
          signed_by_issuer ||
          (key && signature && identity::VerifyRevocation(issuer, *key, name, *signature));
    }
    if (!signed_by_issuer) {
      spdlog::warn("a revocation of {} from {} is not signed by an issuer of the mesh; ignored",
                   name, from);
      continue;
    }
    // An issuer keeps what another issuer revoked as its own (it renews and admits no such key
    // either); one it made or adopted already is no news.
    const bool known_here = issuer_ != nullptr && issuer_->IsRevoked(*key);
    if (issuer_ != nullptr && !known_here) {
      if (absl::Status adopted = issuer_->Adopt(name, *key, std::chrono::system_clock::now());
          !adopted.ok()) {
        spdlog::error("the revocation of {} from {} is not kept: {}", name, from,
                      MessageOf(adopted));
      }
    }
    absl::MutexLock lock(&revoked_mu_);
    if (revoked_keys_.insert(*key).second && !known_here) newly.emplace_back(name, *key);
  }
  bool member_revoked = false;
  for (const auto& [name, key] : newly) {
    if (std::optional<identity::ClientTokensRevocation> tokens =
            identity::ParseClientTokensRevocation(name)) {
      spdlog::info("client {}'s bearer tokens issued at or before unix {} are revoked (by {})",
                   tokens->client, tokens->before, from);
      absl::MutexLock lock(&revoked_mu_);
      int64_t& before = tokens_revoked_before_[tokens->client];
      before = std::max(before, tokens->before);
      continue;
    }
    spdlog::info("member {}'s key is revoked (by {}): closing its connections", name, from);
    CutOff(name, key);
    member_revoked = true;
  }
  if (!newly.empty() && issuer_ != nullptr) {
    AnnounceControlChange();  // adopted: the count announced here grew
    // The node that holds the control versions rotates the gossip keys the revoked one holds.
    if (member_revoked && ControlOwner()) RotateGossipKeysAfterRevocation();
  }

  absl::MutexLock lock(&revoke_mu_);
  revocations_seen_[from] = std::max(revocations_seen_[from], count);
}

absl::Status Agent::PresentCertificate(const identity::MeshCredentials& mesh) {
  if (tls_ == nullptr) return absl::OkStatus();
  HM_ASSIGN_OR_RETURN(std::shared_ptr<ssl_ctx_st> server,
                      identity::MakeTlsContext(mesh, *node_key_, /*server=*/true));
  HM_ASSIGN_OR_RETURN(std::shared_ptr<ssl_ctx_st> client,
                      identity::MakeTlsContext(mesh, *node_key_, /*server=*/false));
  tls_->Replace(std::move(server), std::move(client));
  peer_verifier_->Clear();  // the roots may have changed
  return absl::OkStatus();
}

absl::StatusOr<std::string> Agent::CheckPeer(const PeerChain& chain,
                                             std::string_view expected) const {
  const std::shared_ptr<const identity::MeshCredentials> mesh = Credentials();
  if (mesh == nullptr || mesh->roots.empty()) {
    return absl::FailedPreconditionError("this node has no certificate of a mesh yet");
  }
  // A resumed session shows the peer's own certificate only: its issuer may be this node's.
  HM_ASSIGN_OR_RETURN(identity::NodeIdentity who,
                      peer_verifier_->Verify(chain, TrustedIssuers(*mesh), mesh->roots,
                                             std::chrono::system_clock::now()));
  if (!expected.empty() && (who.name != expected || who.client)) {
    return absl::PermissionDeniedError(StrCat("the certificate is ",
                                              who.client ? "client" : "member", " '", who.name,
                                              "'s, not member '", expected, "'s"));
  }
  if (KeyRevoked(who.public_key)) {
    return absl::PermissionDeniedError(
        StrCat(who.client ? "client '" : "member '", who.name, "'s key is revoked"));
  }
  // A certificate an issuer signed before its own key was revoked counts for nothing.
  if (issuer_revoked_.load(std::memory_order_relaxed)) {
    for (size_t i = 1; i < chain.size(); ++i) {
      absl::StatusOr<identity::Certificate> above = identity::Certificate::FromDer(chain[i]);
      if (above.ok() && KeyRevoked(above->public_key())) {
        return absl::PermissionDeniedError(
            StrCat("member '", who.name, "'s issuer (", above->CommonName(), ") is revoked"));
      }
    }
  }
  // A client certificate (hivemesh cert issue-client) calls the API; it is no member, so no
  // name in the membership binds it.
  if (who.client) {
    return TlsPeerName(
        who.role == identity::Role::kOperator ? Caller::Kind::kOperator : Caller::Kind::kClient,
        who.name);
  }
  if (std::optional<std::string> bound = KeyOf(who.name); bound && *bound != who.public_key) {
    return absl::PermissionDeniedError(
        StrCat("member '", who.name, "' is bound to another key in the membership"));
  }
  return who.name;
}

std::shared_ptr<const identity::MeshCredentials> Agent::Credentials() const {
  absl::MutexLock lock(&creds_mu_);
  return mesh_credentials_;
}

bool Agent::KeyRevoked(std::string_view key) const {
  if (issuer_ != nullptr && issuer_->IsRevoked(key)) return true;
  absl::MutexLock lock(&revoked_mu_);
  return revoked_keys_.find(key) != revoked_keys_.end();
}

std::vector<identity::Certificate> Agent::TrustedIssuers(
    const identity::MeshCredentials& mesh) const {
  std::vector<identity::Certificate> out = identity::MeshIssuers(mesh);
  std::erase_if(out, [this](const identity::Certificate& c) { return KeyRevoked(c.public_key()); });
  return out;
}

bool Agent::ControlOwner() const {
  const std::shared_ptr<const identity::MeshCredentials> mesh = Credentials();
  return issuer_ != nullptr && mesh != nullptr && !mesh->granted_issuer;
}

std::map<std::string, std::string> Agent::OtherIssuers() const {
  std::map<std::string, std::string> out;  // name -> API address
  const std::shared_ptr<const identity::MeshCredentials> mesh = Credentials();
  if (mesh == nullptr || gossip_ == nullptr) return out;
  for (const identity::Certificate& c : TrustedIssuers(*mesh)) {
    const std::string name = identity::IssuerName(c);
    if (name.empty() || name == config_.node_name) continue;
    std::optional<membership::MemberInfo> m = gossip_->Find(name);
    if (!m || m->state != membership::MemberState::kAlive) continue;
    if (absl::StatusOr<membership::NodeMeta> meta = membership::DecodeNodeMeta(m->meta);
        meta.ok()) {
      out.emplace(name, meta->api_address);
    }
  }
  return out;
}

bool Agent::IsIssuerMember(std::string_view name) const {
  const std::shared_ptr<const identity::MeshCredentials> mesh = Credentials();
  if (mesh == nullptr || name.empty()) return false;
  for (const identity::Certificate& c : TrustedIssuers(*mesh)) {
    if (identity::IssuerName(c) == name) return true;
  }
  return false;
}

void Agent::PushTokens() {
  if (issuer_ == nullptr || peers_ == nullptr) return;
  const std::map<std::string, std::string> issuers = OtherIssuers();
  if (issuers.empty()) return;
  const std::string body =
      identity::FormatTokens(issuer_->Tokens(std::chrono::system_clock::now()));
  for (const auto& [name, api] : issuers) {
    PeerRequest r;
    r.address = api;
    r.peer_node = name;
    r.method = "POST";
    r.target = "/v1/mesh/issuer/tokens";
    r.body = body;
    r.headers.emplace_back("Content-Type", "text/plain");
    r.timeout = std::chrono::seconds(3);
    peers_->Send(std::move(r), [peer = name](absl::StatusOr<PeerResponse> answer) {
      if (!answer.ok() || answer->status != 200) {
        spdlog::warn(
            "join tokens not handed to issuer {}: {}", peer,
            answer.ok() ? StrCat("it answered ", answer->status) : MessageOf(answer.status()));
      }
    });
  }
}

absl::Status Agent::TakeIssuers(const std::vector<identity::Certificate>& offered,
                                const std::string& from) {
  absl::MutexLock rotate(&rotate_mu_);
  identity::MeshCredentials next = *Credentials();
  const size_t taken = identity::TakeIssuers(next, offered, std::chrono::system_clock::now());
  if (taken == 0) return absl::OkStatus();
  HM_RETURN_IF_ERROR(identity::SaveMesh(config_.StateDir(), next));
  const size_t known = identity::MeshIssuers(next).size();
  InstallCredentials(std::move(next));
  spdlog::info("{} issuers of the mesh known (from {})", known, from);
  AnnounceMeta();  // members that know fewer fetch them from here too
  return absl::OkStatus();
}

void Agent::FetchIssuers(const std::string& member, const std::string& api_address) {
  peers_->Send(
      MemberGet(member, api_address, "/v1/mesh/issuers"),
      [this, member](absl::StatusOr<PeerResponse> answer) {
        const absl::StatusOr<std::string_view> body = AnswerBody(answer);
        absl::StatusOr<std::vector<identity::Certificate>> offered =
            body.ok() ? identity::Certificate::AllFromPem(*body) : body.status();
        if (absl::Status taken = offered.ok() ? TakeIssuers(*offered, member) : offered.status();
            !taken.ok()) {
          spdlog::warn("the issuers from {} are not taken: {}", member, MessageOf(taken));
        }
        absl::MutexLock lock(&revoke_mu_);
        issuers_fetching_ = false;
      });
}

namespace {

// Two thirds into the certificate's life, counted from when it was issued (its start is
// backdated by kBackdate for clocks that lag).
bool RenewalDue(const identity::Certificate& cert, identity::WallTime now) {
  const identity::WallTime issued = cert.not_before() + identity::kBackdate;
  return now >= issued + (cert.not_after() - issued) * 2 / 3;
}

}  // namespace

void Agent::RenewCertificates() {
  absl::MutexLock lock(&load_mu_);
  SteadyTime next_try = SystemClock::Get().Now();
  SteadyTime next_token_push = next_try;
  while (!stopping_) {
    const std::shared_ptr<const identity::MeshCredentials> mesh = Credentials();
    const SteadyTime now = SystemClock::Get().Now();
    if (mesh != nullptr && mesh->node_cert && now >= next_try &&
        (renew_now_ || RenewalDue(*mesh->node_cert, std::chrono::system_clock::now()))) {
      renew_now_ = false;
      load_mu_.Unlock();
      const bool renewed = RenewOnce();
      load_mu_.Lock();
      // An issuer that cannot be reached now is asked again in a few seconds.
      next_try =
          SystemClock::Get().Now() + (renewed ? std::chrono::seconds(0) : std::chrono::seconds(3));
    }
    if (issuer_ != nullptr && mesh != nullptr && identity::RootRotationPending(*mesh)) {
      load_mu_.Unlock();
      MaybeFinishRootRotation();
      load_mu_.Lock();
    }
    if (issuer_ != nullptr && mesh != nullptr && mesh->gossip_rotation_step != 0) {
      load_mu_.Unlock();
      MaybeAdvanceGossipKeyRotation();
      load_mu_.Lock();
    }
    if (!ControlOwner() && mesh != nullptr && !mesh->gossip_keys.empty()) {
      load_mu_.Unlock();
      const bool lonely = LonelyTooLong(now);
      load_mu_.Lock();
      if (lonely) renew_now_ = true;  // at the next turn: a renewal brings the mesh's keys
    }
    if (issuer_ != nullptr && now >= next_token_push) {
      next_token_push = now + std::chrono::seconds(5);
      load_mu_.Unlock();
      PushTokens();
      load_mu_.Lock();
    }
    const SteadyTime wake = SystemClock::Get().Now() + std::chrono::seconds(1);
    while (!stopping_ && !SystemClock::Get().WaitUntil(load_cv_, load_mu_, wake)) {
    }
  }
}

bool Agent::LonelyTooLong(SteadyTime now) {
  constexpr auto kLonely = std::chrono::seconds(10);
  if (config_.JoinList().empty()) return false;
  if (gossip_->Stats().alive > 1) {  // another member alive (or suspect, and so not yet gone)
    lonely_since_.reset();
    return false;
  }
  if (!lonely_since_ || now - *lonely_since_ < kLonely) {
    if (!lonely_since_) lonely_since_ = now;
    return false;
  }
  lonely_since_ = now;  // the next try in kLonely at the earliest
  spdlog::info("no other member alive for {} s: asking an issuer for the mesh's gossip keys",
               kLonely.count());
  return true;
}

bool Agent::RenewOnce() {
  absl::MutexLock rotate(&rotate_mu_);
  const std::shared_ptr<const identity::MeshCredentials> current = Credentials();
  const identity::MeshCredentials& mesh = *current;
  const identity::WallTime now = std::chrono::system_clock::now();
  absl::StatusOr<identity::MeshCredentials> renewed = absl::UnavailableError("no issuer");
  std::string by = "this node";
  // The node that created the mesh renews its own certificate. Any other member asks the
  // members (an issuer granted its rights too: the answer brings the mesh's gossip keys and
  // issuers), an issuer falling back on itself.
  if (issuer_ == nullptr || mesh.granted_issuer) {
    std::vector<std::string> candidates;
    for (const membership::MemberInfo& m : gossip_->Members()) {
      if (m.name != config_.node_name && m.state == membership::MemberState::kAlive) {
        candidates.push_back(m.addr);
      }
    }
    for (const std::string& seed : config_.JoinList()) candidates.push_back(seed);
    std::string why;  // each refusal, for the warning below
    for (const std::string& seed : candidates) {
      renewed = RenewMesh(seed, mesh, *node_key_, std::chrono::milliseconds(3000),
                          [this](std::string_view key) { return KeyRevoked(key); });
      if (renewed.ok()) {
        by = seed;
        break;
      }
      StrAppend(&why, why.empty() ? "" : "; ", MessageOf(renewed.status()));
    }
    if (!renewed.ok() && !why.empty()) renewed = absl::UnavailableError(why);
  }
  if (issuer_ != nullptr && !renewed.ok()) {
    absl::StatusOr<identity::Issued> issued =
        issuer_->Renew(*mesh.node_cert, mesh.node_chain, node_key_->public_key(), now);
    if (issued.ok()) {
      identity::MeshCredentials next;
      next.roots = issued->roots;
      next.node_cert = issued->cert;
      next.node_chain = issued->chain;
      renewed = std::move(next);
    } else {
      renewed = issued.status();
    }
  }
  if (!renewed.ok()) {
    spdlog::warn("cannot renew this node's certificate (it ends at unix {}): {}",
                 std::chrono::duration_cast<std::chrono::seconds>(
                     mesh.node_cert->not_after().time_since_epoch())
                     .count(),
                 MessageOf(renewed.status()));
    return false;
  }
  identity::MeshCredentials next = mesh;
  const size_t roots_before = next.roots.size();
  next.roots = renewed->roots;
  next.node_cert = renewed->node_cert;
  next.node_chain = renewed->node_chain;
  identity::TakeIssuers(next, renewed->issuers, now);
  // Newer gossip keys (a node that was offline through a key rotation) seal and open gossip
  // from now on (InstallCredentials).
  if (!renewed->gossip_keys.empty() && renewed->gossip_keys_version >= next.gossip_keys_version) {
    next.gossip_keys = renewed->gossip_keys;
    next.gossip_keys_version = renewed->gossip_keys_version;
    next.gossip_keys_signature = renewed->gossip_keys_signature;
  }
  const int64_t until = std::chrono::duration_cast<std::chrono::seconds>(
                            next.node_cert->not_after().time_since_epoch())
                            .count();
  const size_t roots_after = next.roots.size();
  if (absl::Status saved = identity::SaveMesh(config_.StateDir(), next); !saved.ok()) {
    spdlog::error("renewed certificate not saved: {}", MessageOf(saved));
    return false;
  }
  InstallCredentials(std::move(next));
  spdlog::info("certificate renewed by {}, valid until unix {}", by, until);
  if (roots_after != roots_before) {
    spdlog::info("this node now trusts {} roots of the mesh", roots_after);
    AnnounceMeta();  // the issuer finishes a root rotation once every member trusts them all
  }
  return true;
}

void Agent::InstallCredentials(identity::MeshCredentials next) {
  // The root key exported, imported or rotated: issuer tokens are honoured where it is.
  if (issuer_ != nullptr) issuer_->UseRootKey(next.root_key);
  if (join_ != nullptr) {
    if (absl::Status updated = join_->UpdateCredentials(next, *node_key_); !updated.ok()) {
      spdlog::error("renewed certificate not presented: {}", MessageOf(updated));
    }
  }
  if (absl::Status presented = PresentCertificate(next); !presented.ok()) {
    spdlog::error("renewed certificate not presented to peers: {}", MessageOf(presented));
  }
  const std::shared_ptr<const identity::MeshCredentials> before = Credentials();
  const bool new_keys = gossip_ != nullptr && !next.gossip_keys.empty() &&
                        (before == nullptr || before->gossip_keys != next.gossip_keys);
  if (new_keys) {
    const std::vector<std::string_view> keys(next.gossip_keys.begin(), next.gossip_keys.end());
    absl::StatusOr<membership::Keyring> ring = MakeKeyring(keys, config_.cluster_label);
    if (absl::Status used = ring.ok() ? gossip_->SetKeyring(*std::move(ring)) : ring.status();
        !used.ok()) {
      spdlog::error("gossip keys version {} not used: {}", next.gossip_keys_version,
                    MessageOf(used));
    }
  }
  {
    absl::MutexLock lock(&creds_mu_);
    mesh_credentials_ = std::make_shared<const identity::MeshCredentials>(std::move(next));
  }
  // The issuer takes the next step of a key rotation once every member announces the version;
  // the members fetch each version from the issuer as soon as it announces it.
  if (new_keys && issuer_ != nullptr) {
    AnnounceControlChange();
  } else if (new_keys) {
    AnnounceMeta();
  }
}

absl::StatusOr<uint64_t> Agent::StartGossipKeyRotation() {
  absl::MutexLock rotate(&rotate_mu_);
  if (issuer_ == nullptr) {
    return absl::FailedPreconditionError(
        "this node holds no issuer rights: rotate the gossip keys at an issuer");
  }
  if (!ControlOwner()) {
    return absl::FailedPreconditionError(
        "this issuer's rights were granted by a join: the gossip keys are rotated at the node "
        "that created the mesh (it also rotates them after every revocation made here)");
  }
  identity::MeshCredentials next = *Credentials();
  HM_RETURN_IF_ERROR(identity::StartGossipKeyRotation(next));
  HM_RETURN_IF_ERROR(identity::SaveMesh(config_.StateDir(), next));
  const uint64_t version = next.gossip_keys_version;
  InstallCredentials(std::move(next));
  spdlog::info(
      "gossip key rotation: version {} accepts a new key; it seals once every member "
      "holds it",
      version);
  return version;
}

void Agent::RotateGossipKeysAfterRevocation() {
  {
    absl::MutexLock rotate(&rotate_mu_);
    const std::shared_ptr<const identity::MeshCredentials> mesh = Credentials();
    if (issuer_ == nullptr || mesh == nullptr || mesh->gossip_keys.empty() ||
        mesh->granted_issuer) {
      return;  // a granted issuer: the node that created the mesh adopts it and rotates
    }
    if (mesh->gossip_rotation_step != 0) {
      rotate_keys_again_ = true;  // the revoked member may hold the key being rolled out
      return;
    }
  }
  absl::StatusOr<uint64_t> started = StartGossipKeyRotation();
  if (!started.ok()) {
    spdlog::error("gossip keys not rotated after a revocation: {}", MessageOf(started.status()));
  }
}

void Agent::MaybeAdvanceGossipKeyRotation() {
  bool again = false;
  {
    absl::MutexLock rotate(&rotate_mu_);
    const std::shared_ptr<const identity::MeshCredentials> mesh = Credentials();
    if (issuer_ == nullptr || mesh->gossip_rotation_step == 0) return;
    for (const membership::MemberInfo& m : gossip_->Members()) {
      if (m.name == config_.node_name || m.state != membership::MemberState::kAlive) continue;
      absl::StatusOr<membership::NodeMeta> meta = AnnouncedBy(m);
      if (!meta.ok() || meta->gossip_keys < mesh->gossip_keys_version) return;
    }
    identity::MeshCredentials next = *mesh;
    if (absl::Status advanced = identity::AdvanceGossipKeyRotation(next); !advanced.ok()) {
      spdlog::error("gossip key rotation stopped: {}", MessageOf(advanced));
      return;
    }
    if (absl::Status saved = identity::SaveMesh(config_.StateDir(), next); !saved.ok()) {
      spdlog::error("gossip key rotation not saved: {}", MessageOf(saved));
      return;
    }
    const int step = next.gossip_rotation_step;
    const uint64_t version = next.gossip_keys_version;
    InstallCredentials(std::move(next));
    if (step == 2) {
      spdlog::info("gossip key rotation: version {} seals with the new key", version);
    } else {
      spdlog::info("gossip key rotation finished: version {} holds the new key only", version);
    }
    again = step == 0 && rotate_keys_again_;
    if (again) rotate_keys_again_ = false;
  }
  if (again) {
    absl::StatusOr<uint64_t> started = StartGossipKeyRotation();
    if (!started.ok()) {
      spdlog::error("gossip keys not rotated after a revocation: {}", MessageOf(started.status()));
    }
  }
}

absl::StatusOr<std::string> Agent::StartRootRotation() {
  absl::MutexLock rotate(&rotate_mu_);
  if (issuer_ == nullptr) {
    return absl::FailedPreconditionError(
        "this node holds no issuer rights: rotate the root at the node that created the mesh");
  }
  identity::MeshCredentials next = *Credentials();
  HM_RETURN_IF_ERROR(identity::StartRootRotation(next, std::chrono::system_clock::now()));
  HM_RETURN_IF_ERROR(identity::SaveMesh(config_.StateDir(), next));
  issuer_->UseCertificates(*next.issuer_cert, next.roots);
  const std::string digest = next.roots.front().Digest();
  InstallCredentials(std::move(next));
  spdlog::info("root rotation: new root {} trusted here; every member takes it at a renewal now",
               digest.substr(0, 16));
  AnnounceControlChange();  // members that see this node trust more roots renew at once
  return digest;
}

absl::StatusOr<std::string> Agent::ExportRootKey(bool remove) {
  absl::MutexLock rotate(&rotate_mu_);
  const std::shared_ptr<const identity::MeshCredentials> mesh = Credentials();
  if (mesh == nullptr || !mesh->root_key) {
    return absl::FailedPreconditionError(
        "this node does not hold the mesh's root key (exported, or it did not create the mesh)");
  }
  if (identity::RootRotationPending(*mesh)) {
    return absl::FailedPreconditionError(
        "a root rotation is under way: export the key once it has finished");
  }
  std::string pem = mesh->root_key->ToPem();
  if (remove) {
    identity::MeshCredentials next = *mesh;
    next.root_key.reset();
    HM_RETURN_IF_ERROR(identity::SaveMesh(config_.StateDir(), next));
    InstallCredentials(std::move(next));
    spdlog::warn(
        "the mesh's root key was exported and removed from this node: rotating the root "
        "needs it back (hivemesh ca import-key FILE)");
  }
  return pem;
}

absl::Status Agent::ImportRootKey(std::string_view pem) {
  absl::MutexLock rotate(&rotate_mu_);
  const std::shared_ptr<const identity::MeshCredentials> mesh = Credentials();
  if (mesh == nullptr || mesh->roots.empty() || !mesh->issuer_key) {
    return absl::FailedPreconditionError(
        "this node holds no issuer rights: bring the root key back to the node that created "
        "the mesh");
  }
  absl::StatusOr<identity::NodeKey> key = identity::NodeKey::FromPem(pem);
  if (!key.ok()) {
    return absl::InvalidArgumentError(StrCat("not a root key: ", MessageOf(key.status())));
  }
  if (key->public_key() != mesh->roots.front().public_key()) {
    return absl::InvalidArgumentError(StrCat("this key is not the mesh's root key (root ",
                                             mesh->roots.front().Digest().substr(0, 16), ")"));
  }
  identity::MeshCredentials next = *mesh;
  next.root_key = *std::move(key);
  HM_RETURN_IF_ERROR(identity::SaveMesh(config_.StateDir(), next));
  InstallCredentials(std::move(next));
  spdlog::info("the mesh's root key is on this node again");
  return absl::OkStatus();
}

void Agent::MaybeFinishRootRotation() {
  absl::MutexLock rotate(&rotate_mu_);
  const std::shared_ptr<const identity::MeshCredentials> mesh = Credentials();
  if (issuer_ == nullptr || !identity::RootRotationPending(*mesh)) return;
  for (const membership::MemberInfo& m : gossip_->Members()) {
    if (m.name == config_.node_name || m.state != membership::MemberState::kAlive) continue;
    absl::StatusOr<membership::NodeMeta> meta = membership::DecodeNodeMeta(m.meta);
    if (!meta.ok() || std::max<uint64_t>(meta->roots, 1) < mesh->roots.size()) return;
  }
  const identity::WallTime now = std::chrono::system_clock::now();
  identity::MeshCredentials next = *mesh;
  if (absl::Status finished = identity::FinishRootRotation(next, now); !finished.ok()) {
    spdlog::error("root rotation not finished: {}", MessageOf(finished));
    return;
  }
  issuer_->UseCertificates(*next.issuer_cert, next.roots);
  absl::StatusOr<identity::Issued> own =
      issuer_->Renew(*next.node_cert, next.node_chain, node_key_->public_key(), now);
  if (!own.ok()) {
    spdlog::error("root rotation: this node's certificate not renewed: {}",
                  MessageOf(own.status()));
    return;
  }
  next.node_cert = own->cert;
  next.node_chain = own->chain;
  if (absl::Status saved = identity::SaveMesh(config_.StateDir(), next); !saved.ok()) {
    spdlog::error("root rotation not saved: {}", MessageOf(saved));
    return;
  }
  InstallCredentials(std::move(next));
  spdlog::info(
      "root rotation finished: every member trusts the new root, and this issuer signs under "
      "it; members take certificates under it at their next renewal");
}

Agent::~Agent() {
  // The workloads' processes end with the node (SIGTERM, then SIGKILL after their grace).
  StopLoadReports();
  // Services' own ports close; the workloads' models leave the mesh before the workloads stop.
  for (auto& [port, listener] : port_listeners_) listener.server->Stop();
  if (workloads_) workloads_->Stop();
  if (supervisor_) supervisor_->StopAll();
  for (const auto& [name, remove] : containers_) RemoveContainer(name);
  // No more announcements: the gossip node goes before the repository.
  if (repository_) repository_->SetOnChange(nullptr);
  // Answer every queued and running request while the I/O threads still run (Drain() has done
  // this already on the normal path): model workers must not call a responder after them.
  if (repository_) repository_->Drain();
  if (model_insights_) model_insights_->Stop();  // no window closes into a stopped delivery
  if (grpc_) grpc_->Shutdown(std::chrono::milliseconds(0));
  StopLoadReports();
  bus_closing_.store(true);
  if (insight_delivery_) insight_delivery_->Stop();
  if (mqtt_) mqtt_->Stop();
  if (peers_) peers_->Stop();
  if (workload_client_) workload_client_->Stop();
  if (gossip_) gossip_->Stop();
  if (http_) http_->Stop();
}

void Agent::StopLoadReports() {
  {
    absl::MutexLock lock(&load_mu_);
    stopping_ = true;
  }
  load_cv_.SignalAll();
  {
    absl::MutexLock lock(&revoke_mu_);
    revoke_stop_ = true;
    revoke_cv_.Signal();
  }
  if (revocation_thread_.joinable()) revocation_thread_.join();
  if (load_thread_.joinable()) load_thread_.join();
  if (renew_thread_.joinable()) renew_thread_.join();
}

void Agent::Start() {
  // Every member event wakes the watch thread: control versions and objects to fetch, and
  // workloads to place again when a member comes or goes.
  gossip_->Start([this](const membership::MemberEvent&) {
    absl::MutexLock lock(&revoke_mu_);
    revoke_check_ = true;
    revoke_cv_.Signal();
  });
  revocation_thread_ = std::thread([this] { WatchRevocations(); });
  load_thread_ = std::thread([this] { ReportLoad(); });
  renew_thread_ = std::thread([this] { RenewCertificates(); });
  http_->Start();
  spdlog::info("gossip on {} ({} profile, {}{})", gossip_->address(), config_.gossip_profile,
               gossip_->encrypted() ? "encrypted" : "plaintext",
               config_.join.empty() ? "" : ", joining " + config_.join);
  if (mesh_created_ && issuer_ != nullptr) {
    // Like `docker swarm init`: how to join, once, when the mesh is made.
    absl::StatusOr<identity::JoinToken> token = issuer_->CreateToken(
        identity::Role::kNode, std::chrono::hours(24), 0, std::chrono::system_clock::now());
    if (token.ok()) {
      spdlog::info(
          "other nodes join this mesh with: hivemesh agent --join {} --token {} (valid 24 h; "
          "`hivemesh token create` makes more)",
          gossip_->address(), token->ToString());
    }
  }
  if (!gossip_->encrypted()) {
    spdlog::warn(
        "gossip is not encrypted: anyone who can reach {} can read the membership, add members "
        "of its own (up to max_members), accuse members (they refute it) and forge load "
        "reports; names stay bound to their nodes' keys. Turn encryption on: `hivemesh keygen` "
        "makes a key; give it to every node with --gossip-keys",
        gossip_->address());
  }
  if (grpc_) {
    spdlog::info("KServe v2 gRPC on {}:{}",
                 config_.grpc_address.substr(0, config_.grpc_address.rfind(':')), grpc_->port());
  }
  spdlog::info("ready: KServe v2 REST on http://{}:{} serving models from {}", config_.http_host(),
               http_->port(), config_.model_repository);
}

bool Agent::Drain() {
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(config_.drain_timeout_ms);
  // Tell the mesh first and keep serving while it learns, so peers stop sending work here before
  // anything is refused; forwarded requests that still arrive after that are answered 503 and
  // their origins retry elsewhere.
  spdlog::info("draining: the mesh is told; answering every accepted request");
  kserve_->SetReady(false);
  bus_closing_.store(true);  // subscribers that leave now are not announced one by one
  {
    absl::MutexLock lock(&meta_mu_);
    draining_ = true;
  }
  AnnounceMeta();
  std::this_thread::sleep_for(std::chrono::milliseconds(config_.drain_announce_ms));
  dispatcher_->RefuseForwarded();
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
  // New gRPC calls are refused; calls still waiting (on a peer) get up to kGrpcGrace within the
  // drain timeout. The cap keeps an idle open ModelStreamInfer stream, which would otherwise be
  // waited for, from holding the drain for the whole timeout: it is cancelled instead.
  if (grpc_) {
    constexpr std::chrono::milliseconds kGrpcGrace(5000);
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    grpc_->Shutdown(std::clamp(left, std::chrono::milliseconds(0), kGrpcGrace));
  }
  http_->Stop();
  // Tell the mesh this node left, rather than letting it be detected as failed.
  StopLoadReports();
  gossip_->LeaveAndStop(std::chrono::milliseconds(2000));
  spdlog::info("drained; stopped");
  return complete;
}

uint16_t Agent::http_port() const { return http_->port(); }

absl::Status Agent::join_status() const {
  absl::MutexLock lock(&join_mu_);
  if (refused_by_.empty()) return absl::OkStatus();
  return absl::FailedPreconditionError(
      StrCat("the mesh at ", refused_by_,
             " encrypts its gossip and this node has no --gossip-keys: refusing to join"));
}

uint16_t Agent::grpc_port() const { return grpc_ ? grpc_->port() : 0; }

bool Agent::ServingAndJoined() const {
  return kserve_->ready() && (config_.join.empty() || gossip_->joined());
}

void Agent::CheckLoops() {
  for (int loop = 0; loop < io_->size(); ++loop) io_->RunOn(loop, [] {});
}

std::string Agent::ServiceStatus() const {
  size_t alive = 0;
  for (const membership::MemberInfo& m : gossip_->Members()) {
    alive += m.state == membership::MemberState::kAlive;
  }
  return StrCat("serving ", repository_->Runtimes().size(), " model version(s) on ", http_->port(),
                "; ", alive, " member(s) of the mesh alive");
}

int RunAgent(const AgentConfig& config, const ConfigSource& reload) {
  absl::StatusOr<telemetry::LogFormat> format = telemetry::ParseLogFormat(config.log_format);
  absl::Status log = format.ok()
                         ? telemetry::SetupLogging(config.node_name, config.log_level, *format)
                         : format.status();
  if (!log.ok()) {
    spdlog::error("{}", MessageOf(log));
    return 2;
  }
  // Block the stop signals in every thread; this thread waits for them below.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGHUP);
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
  Agent* const node = agent->get();
  auto notifier = std::make_unique<ServiceNotifier>([node] { return node->ServingAndJoined(); },
                                                    [node] { node->CheckLoops(); },
                                                    [node] { return node->ServiceStatus(); });
  int sig = 0;
  while (sigwait(&stop_signals, &sig) == 0 && sig == SIGHUP) {
    notifier->Reloading();
    absl::StatusOr<AgentConfig> updated = reload ? reload() : absl::StatusOr<AgentConfig>(config);
    if (!updated.ok()) {
      spdlog::error("SIGHUP: configuration not reloaded: {}", MessageOf(updated.status()));
      notifier->Reloaded();
      continue;
    }
    absl::Status applied = (*agent)->Reload(*updated);
    if (!applied.ok()) spdlog::error("SIGHUP: {}", MessageOf(applied));
    notifier->Reloaded();
  }
  notifier->Stopping();  // the watchdog is still pinged while the node drains
  if (absl::Status joining = (*agent)->join_status(); !joining.ok()) {
    spdlog::error("{}", MessageOf(joining));
    notifier.reset();
    agent->reset();
    return 1;
  }
  spdlog::info("received {}", sig == SIGTERM ? "SIGTERM" : "SIGINT");
  const bool complete = (*agent)->Drain();
  notifier.reset();  // before the node it asks
  agent->reset();
  return complete ? 0 : 1;
}

}  // namespace hivemesh
