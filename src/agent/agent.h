// Agent: one hivemesh node, wired from its AgentConfig: the model repository, the KServe v2 REST
// API (and its gRPC API unless grpc_address is off), gossip membership (metadata and load reports),
// the node's metrics (GET /metrics) and their orderly shutdown.
//
// Life cycle: Create() loads models and binds the port; Start() serves; Drain() stops accepting,
// answers every accepted request (queued ones included), then closes; the destructor stops
// whatever is left.
//
// Thread safety: Create/Start/Drain are called from one controlling thread.
#pragma once

#include "absl/synchronization/mutex.h"

#include <atomic>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "agent/agent_config.h"
#include "api/service_proxy.h"
#include "base/clock.h"
#include "services/manifest.h"
#include "services/object_store.h"
#include "transport/tls.h"

namespace hivemesh {

class GrpcServer;
class HttpServer;
class IoThreads;
class InferenceObserver;
class ModelInsights;
class KServeHandler;
class MemberCheck;
class MeshHandler;
class IssuerHandler;
class MetricsHandler;
class ObjectsHandler;
class InsightsHandler;
class MeshPolicy;
class PolicyHandler;
class PolicyHolder;
struct SignedGossipKeys;
namespace telemetry {
class Registry;
}
namespace bus {
class LocalBus;
class MeshDelivery;
class MqttBridge;
}  // namespace bus
namespace services {
class ObjectService;
class WorkloadWatcher;
class Supervisor;
}  // namespace services
namespace membership {
class GossipNode;
}
namespace identity {
class Certificate;
struct MeshCredentials;
class IssuerService;
class NodeKey;
struct ClientToken;
class PeerVerifier;
}  // namespace identity
class JoinService;
namespace routing {
class Dispatcher;
class Forwarder;
class MeshDirectory;
}  // namespace routing
class PeerClient;
class ModelRepository;
class BackendRegistry;
class MemoryBudget;
class Rejections;

class Agent {
 public:
  static absl::StatusOr<std::unique_ptr<Agent>> Create(const AgentConfig& config);
  ~Agent();

  void Start();
  // Stops accepting, waits (up to drain_timeout_ms) until every accepted request is answered,
  // then closes all connections. Returns false if the timeout cut the wait short.
  bool Drain();
  uint16_t http_port() const;
  // OK unless joining the mesh failed for good (a seed's mesh encrypts its gossip and this node
  // has no --gossip-keys); the agent then stops, and this says why.
  absl::Status join_status() const;
  // The bound gRPC port; 0 when gRPC is off.
  uint16_t grpc_port() const;
  // Applies what may change while running (today: labels), and tells the mesh.
  absl::Status Reload(const AgentConfig& updated);
  // For the service manager (agent/service_notify.h): true once the node serves and has joined
  // its mesh (at once for a node given no seeds); returns once every I/O loop has run a task
  // (blocks while one hangs); one line of what the node does.
  bool ServingAndJoined() const;
  void CheckLoops();
  std::string ServiceStatus() const;

 private:
  Agent() = default;
  absl::Status StartGossip();
  // This node's metadata for the mesh, and telling the mesh of it.
  absl::StatusOr<std::string> EncodedMeta() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(meta_mu_);
  void AnnounceMeta();
  // AnnounceMeta, and this node's entry pushed to every live member over TCP at once: for a
  // change of the control versions made here (a revocation, a policy, gossip keys, a root), which
  // a broadcast may miss a member of for longer than the 5 s the mesh promises (a missed
  // broadcast is otherwise repaired by the next load report refresh or push-pull, ~10-15 s).
  void AnnounceControlChange();
  std::string LoadReport() const;
  void ReportLoad();
  void StopLoadReports();
  AgentConfig config_;
  // The node's metrics (GET /metrics). First, so that it is destroyed last: components keep
  // references to their metrics.
  std::unique_ptr<telemetry::Registry> metrics_;
  std::unique_ptr<MetricsHandler> metrics_handler_;
  // What the node refused or cut off, by reason (hivemesh_rejected_total); shared with the
  // components that refuse.
  std::shared_ptr<Rejections> rejections_;
  // Memory for requests in flight, all connections and models together (memory_budget_mb).
  std::shared_ptr<MemoryBudget> memory_budget_;
  std::unique_ptr<BackendRegistry> registry_;
  std::unique_ptr<ModelRepository> repository_;
  // The models' insight rules at work (null without a bus); observer_ hands it results.
  std::unique_ptr<ModelInsights> model_insights_;
  // Every answered inference is counted and logged by observer_; dispatcher_ is the one path an
  // inference takes through the node (REST and gRPC alike).
  std::unique_ptr<InferenceObserver> observer_;
  std::unique_ptr<routing::Dispatcher> dispatcher_;
  std::unique_ptr<KServeHandler> kserve_;
  std::unique_ptr<GrpcServer> grpc_;  // null: gRPC off; uses kserve_, so declared after it
  std::shared_ptr<IoThreads> io_;     // shared by http_ and peers_; joined after both are gone
  std::unique_ptr<HttpServer> http_;
  // Joins over TLS on the gossip port; declared before gossip_, whose thread hands it
  // connections, so that it is destroyed after gossip_.
  std::unique_ptr<JoinService> join_;
  std::shared_ptr<identity::IssuerService> issuer_;  // null: no issuer rights
  std::unique_ptr<membership::GossipNode> gossip_;
  // The node's certificate, issuer rights and trust bundle (docs/identity.md); empty when the
  // node joined without a token. Replaced by each renewal.
  std::shared_ptr<const identity::MeshCredentials> Credentials() const;
  // The key `name` is bound to in gossip (the node itself included), if any.
  std::optional<std::string> KeyOf(std::string_view name) const;
  // Mutual TLS between nodes (docs/identity.md): null on an insecure node. The HTTP server and
  // the peer client share it; its contexts are made from the node's certificate when the mesh
  // credentials are loaded, and again at each renewal (PresentCertificate).
  std::shared_ptr<TlsSettings> tls_;
  // Remembers the peer certificates verified (a reconnecting peer costs a hash).
  std::unique_ptr<identity::PeerVerifier> peer_verifier_;
  absl::Status PresentCertificate(const identity::MeshCredentials& mesh);
  // TlsSettings' check: the peer's certificate chains to the mesh's roots (through what it sent
  // or this node's own issuer), is valid now, is `expected`'s if given, and its key is the one
  // gossip binds its name to (if gossip knows the name). Returns the member's name.
  absl::StatusOr<std::string> CheckPeer(const PeerChain& chain, std::string_view expected) const;
  // Revocations spread (docs/identity.md): an issuer announces how many keys it has revoked in
  // its gossip metadata; a node that sees the count grow fetches the signed list from it over
  // mutual TLS, refuses those keys from then on and closes their connections. WatchRevocations
  // runs on its own thread, woken by member events.
  void WatchRevocations();
  void FetchRevocations(const std::string& member, const std::string& api_address, uint64_t count);
  void ApplyRevocations(const std::string& body, const std::string& from, uint64_t count);
  std::thread revocation_thread_;
  absl::Mutex revoke_mu_;
  absl::CondVar revoke_cv_;
  // A member changed: look again. True at first, so that the first look is at start (what the
  // thread does is done once while the node has all its resources).
  bool revoke_check_ ABSL_GUARDED_BY(revoke_mu_) = true;
  bool revoke_stop_ ABSL_GUARDED_BY(revoke_mu_) = false;
  // Per issuer: the revocation count fetched and applied; and those being fetched now.
  std::map<std::string, uint64_t> revocations_seen_ ABSL_GUARDED_BY(revoke_mu_);
  std::set<std::string> revocations_fetching_ ABSL_GUARDED_BY(revoke_mu_);
  mutable absl::Mutex revoked_mu_;
  std::set<std::string, std::less<>> revoked_keys_ ABSL_GUARDED_BY(revoked_mu_);  // learnt
  // Per client: its bearer tokens issued at or before this (unix s) are revoked (learnt).
  std::map<std::string, int64_t, std::less<>> tokens_revoked_before_ ABSL_GUARDED_BY(revoked_mu_);
  // True if `key` is revoked: by this node (an issuer), or by an issuer whose signed list this
  // node fetched.
  bool KeyRevoked(std::string_view key) const;
  // Set once a revoked key is an issuer's: from then on, CheckPeer looks at every certificate
  // of a peer's chain.
  std::atomic<bool> issuer_revoked_{false};
  // More than one issuer (docs/identity.md): every issuer certificate of the mesh this node
  // knows (identity::MeshIssuers) but those whose key is revoked. What is signed under any of
  // them (revocations, policies, gossip keys, bearer tokens, peers' certificates) is taken.
  std::vector<identity::Certificate> TrustedIssuers(const identity::MeshCredentials& mesh) const;
  // The other issuers alive in the membership (name -> API address), and whether `name` is one.
  std::map<std::string, std::string> OtherIssuers() const;
  bool IsIssuerMember(std::string_view name) const;
  // The issuer that holds the control versions (gossip key rotation): the one that created the
  // mesh, not one granted its rights by a join.
  bool ControlOwner() const;
  // Join tokens spread between issuers (docs/identity.md): the whole list is pushed to every
  // other issuer (POST /v1/mesh/issuer/tokens) when a token is made here, and every 5 s.
  void PushTokens();
  // Issuer certificates spread like the control versions: a node that sees a member announce
  // more fetches them (GET /v1/mesh/issuers) and keeps those the roots signed.
  void FetchIssuers(const std::string& member, const std::string& api_address);
  absl::Status TakeIssuers(const std::vector<identity::Certificate>& offered,
                           const std::string& from);
  bool issuers_fetching_ ABSL_GUARDED_BY(revoke_mu_) = false;
  // Applied objects spread by anti-entropy (docs/services.md): every node announces a
  // fingerprint of its objects; a node that sees a member announce another one compares indexes
  // with it (GET /v1/objects/index) and pulls what it lacks or holds older (POST
  // /v1/objects/pull), on the same thread as the revocations, one member at a time.
  void SyncObjects(const std::string& member, const std::string& api_address, uint64_t fingerprint);
  bool objects_syncing_ ABSL_GUARDED_BY(revoke_mu_) = false;
  // Per member: the fingerprint it announced when this node last compared with it.
  std::map<std::string, uint64_t> objects_synced_ ABSL_GUARDED_BY(revoke_mu_);
  // This node's latest object fingerprints (the watch thread's): members announcing one of them
  // are behind, not ahead.
  std::deque<uint64_t> objects_past_;
  // The manifests of the applied objects, parsed, by object and version (the watch thread's).
  std::map<std::pair<services::Kind, std::string>,
           std::pair<services::Version, std::optional<services::Manifest>>>
      parsed_manifests_;
  // Workloads (docs/services.md): the applied Deployments placed on this node (services/
  // placement.h over the live members) run under the supervisor, started and stopped to match
  // on the watch thread, which alone reads and writes running_ (name -> the version running,
  // "<ms>.<counter>.<origin>")
  // and workload_errors_ (each workload version's error, logged once).
  void ReconcileWorkloads();
  std::unique_ptr<services::Supervisor> supervisor_;
  // The workloads this node runs, watched: their readiness, and the models of the KServe v2
  // ones (attached to the repository).
  std::unique_ptr<services::WorkloadWatcher> workloads_;
  std::map<std::string, std::string> running_;
  // Workloads running an image: the command that removes the container (the watch thread's,
  // and the destructor's once it has joined it).
  std::map<std::string, std::vector<std::string>> containers_;
  void RemoveContainer(const std::string& workload);
  std::set<std::string> workload_errors_;
  // Services reached by name (api/service_proxy.h): the routes ReconcileWorkloads computes (by
  // Service name), read by the proxy at each request; and the plain HTTP client to this node's
  // own workloads on loopback.
  std::unique_ptr<PeerClient> workload_client_;
  std::unique_ptr<ServiceProxy> service_proxy_;
  // Each Service's port, listened on where it is free (docs/services.md): opened and closed by
  // ReconcileWorkloads on the watch thread; what each Service's port is here, for `get services`.
  void UpdateServicePorts(const std::vector<services::Manifest>& service_objects,
                          const std::set<uint16_t>& workload_ports);
  std::string ServicePortStatus(std::string_view service) const;
  struct PortListener {
    std::string service;
    bool connection_level = false;  // every connection relayed (ServicePort::ConnectionLevel)
    std::unique_ptr<HttpServer> server;
  };
  HttpServerOptions service_port_options_;
  std::map<uint16_t, PortListener> port_listeners_;  // the watch thread's
  mutable absl::Mutex port_status_mu_;
  // "service port" -> why that port is not listened on here, as last logged.
  std::map<std::string, std::string> port_problems_ ABSL_GUARDED_BY(port_status_mu_);
  std::map<std::string, std::string, std::less<>> port_status_ ABSL_GUARDED_BY(port_status_mu_);
  mutable absl::Mutex routes_mu_;
  std::shared_ptr<const std::map<std::string, ServiceProxy::Route, std::less<>>> routes_
      ABSL_GUARDED_BY(routes_mu_);
  // Refuses a bearer token its issuer revoked (here or learnt): PERMISSION_DENIED saying so.
  absl::Status CheckTokenNotRevoked(const identity::ClientToken& token) const;
  // The mesh's authorization policy (api/mesh_policy.h): what the front ends enforce, the signed
  // document in force (null on an insecure node), and its REST calls. The same thread as the
  // revocations fetches a newer version from a member that announces one.
  std::shared_ptr<PolicyHolder> policy_holder_;
  std::shared_ptr<MeshPolicy> mesh_policy_;
  std::unique_ptr<PolicyHandler> policy_api_;
  void FetchPolicy(const std::string& member, const std::string& api_address);
  // MeshPolicy's OperatorCheck: `signer` (PEM) is an operator certificate of the mesh, valid at
  // `at_unix`, its key not revoked, and the key made `signature` over `message`.
  absl::StatusOr<std::string> CheckOperatorSignature(std::string_view signer,
                                                     std::string_view message,
                                                     std::string_view signature,
                                                     int64_t at_unix) const;
  // A revoked key's holder (`name`, a member or a client certificate's): its connections and
  // links are closed, and gossip drops it.
  void CutOff(const std::string& name, const std::string& key);
  // The control versions the node announces (NodeMeta and LoadReport have the same three
  // fields: the revocation count, the policy version, the roots trusted).
  template <typename Announcement>
  void FillControlVersions(Announcement& out) const;
  bool policy_fetching_ ABSL_GUARDED_BY(revoke_mu_) = false;
  // Gossip keys (identity/mesh_files.h): a node that sees a member announce a newer version
  // fetches the signed keys from it over mutual TLS (the same thread as the revocations) and
  // seals and opens gossip with them at once (InstallCredentials).
  void FetchGossipKeys(const std::string& member, const std::string& api_address);
  absl::Status TakeGossipKeys(const SignedGossipKeys& offered, const std::string& from);
  bool gossip_keys_fetching_ ABSL_GUARDED_BY(revoke_mu_) = false;
  // Gossip key rotation, at an issuer: started by an operator (POST /v1/mesh/gossip-keys/rotate)
  // or by a revocation (the revoked member holds the keys in force); each next step once every
  // live member announces the last version.
  absl::StatusOr<uint64_t> StartGossipKeyRotation();
  void RotateGossipKeysAfterRevocation();
  void MaybeAdvanceGossipKeyRotation();
  // True (at most every 10 s) once a node with seeds has seen no other member alive or suspect
  // for 10 s:
  // it may hold gossip keys the mesh no longer uses (offline or cut off through a rotation),
  // and renews to get those in force. Renewal thread only.
  bool LonelyTooLong(SteadyTime now);
  std::optional<SteadyTime> lonely_since_;
  mutable absl::Mutex creds_mu_;
  std::shared_ptr<const identity::MeshCredentials> mesh_credentials_ ABSL_GUARDED_BY(creds_mu_);
  std::shared_ptr<const identity::NodeKey> node_key_;
  bool mesh_created_ = false;  // this start created the mesh
  // Renews the certificate at two thirds of its life (and at once when it has expired), from
  // this node's issuer or from any member that holds issuer rights.
  void RenewCertificates();
  bool RenewOnce();
  // Serializes what replaces the mesh credentials (renewal, root and gossip key rotation, keys
  // fetched): each reads the current ones and installs the next.
  absl::Mutex rotate_mu_;
  bool rotate_keys_again_ ABSL_GUARDED_BY(rotate_mu_) = false;  // a revocation during a rotation
  // Presents `next` to joiners and peers, seals and opens gossip with its keys if they changed
  // (and announces their version), and makes it the node's credentials. The caller saved it.
  void InstallCredentials(identity::MeshCredentials next);
  // Root rotation (identity/mesh_files.h), at the node holding the root key: the new root goes
  // into the trust bundle now; once every live member announces as many roots as this node
  // (they renew at once when they see a member trust more), the issuer signs under it.
  absl::StatusOr<std::string> StartRootRotation();
  // The root key offline (docs/identity.md): ExportRootKey returns it (PEM) and, with `remove`,
  // drops it from the node (memory and state folder); ImportRootKey takes it back if it is the
  // key of the mesh's first root. FAILED_PRECONDITION where there is no such key, or during a
  // root rotation; INVALID_ARGUMENT for another key.
  absl::StatusOr<std::string> ExportRootKey(bool remove);
  absl::Status ImportRootKey(std::string_view pem);
  void MaybeFinishRootRotation();
  std::thread renew_thread_;
  std::unique_ptr<MeshHandler> mesh_;
  std::unique_ptr<IssuerHandler> issuer_api_;  // tokens and revocations, for an issuer's operators
  // The objects applied to the mesh (docs/services.md), kept in <state>/objects, and their REST
  // calls (/v1/objects).
  std::shared_ptr<services::ObjectService> objects_;
  std::unique_ptr<ObjectsHandler> objects_api_;
  // This node's end of the insight bus (docs/insights.md) and its REST calls (/v1/insights).
  std::shared_ptr<bus::LocalBus> bus_;
  std::unique_ptr<InsightsHandler> insights_api_;
  // The insights forwarded to the MQTT broker (mqtt_url), through the outbox; null without one.
  std::unique_ptr<bus::MqttBridge> mqtt_;
  std::unique_ptr<routing::MeshDirectory> directory_;
  // Who peers' links and forwarded requests come from, checked against keys from directory_.
  std::shared_ptr<const MemberCheck> member_check_;
  std::unique_ptr<PeerClient> peers_;
  // The insights published here, sent to the members that want them (over peers_, so declared
  // after it: destroyed first). Null without a bus.
  std::unique_ptr<bus::MeshDelivery> insight_delivery_;
  // The insight filters last announced in this node's metadata.
  absl::Mutex filters_mu_;
  std::vector<std::string> announced_filters_ ABSL_GUARDED_BY(filters_mu_);
  std::atomic<bool> bus_closing_{false};  // set as the node stops: no more announcements
  // In an insecure mesh, what proves this node to a peer (the credential function peers_ has);
  // null in a secure mesh (certificates do). Set by StartGossip, before any listener runs.
  std::function<std::string(std::string_view peer, std::string_view purpose)> peer_credential_;
  std::unique_ptr<routing::Forwarder> forwarder_;

  // The load reporter refreshes this node's gossiped load every probe interval.
  std::thread load_thread_;
  absl::Mutex load_mu_;
  absl::CondVar load_cv_;
  bool stopping_ ABSL_GUARDED_BY(load_mu_) = false;
  bool renew_now_ ABSL_GUARDED_BY(load_mu_) = false;  // a member trusts more roots than we do
  // Serializes encoding and announcing the metadata (the signal thread's drain and reloads, and
  // the repository's changes) and guards what it reads of config_ and draining_.
  absl::Mutex meta_mu_;
  bool draining_ ABSL_GUARDED_BY(meta_mu_) = false;  // announced in the metadata
  // The seed that answered a join with "this mesh requires gossip encryption" (set once, by the
  // gossip thread; empty otherwise).
  mutable absl::Mutex join_mu_;
  std::string refused_by_ ABSL_GUARDED_BY(join_mu_);
};

// Re-reads the configuration (the file and the flags) for SIGHUP.
using ConfigSource = std::function<absl::StatusOr<AgentConfig>()>;

// Runs an agent until SIGTERM or SIGINT, then drains; SIGHUP reloads the labels through
// `reload`. Returns the process exit code.
int RunAgent(const AgentConfig& config, const ConfigSource& reload = nullptr);

}  // namespace hivemesh
