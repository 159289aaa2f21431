// AgentConfig: every setting of one node, in one place, with its default and the reason for it.
// Settings come from defaults, then a YAML file (`--config node.yaml`, keys as below), then
// command-line flags (`--node-name` for node_name, and so on); later sources win.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace CLI {
class App;
}

namespace hivemesh {

struct AgentConfig {
  // Name of this node in logs, metadata and (later) the mesh. Default: the host name.
  std::string node_name;
  // host:port of the KServe v2 REST API. Loopback by default: exposing a node is a decision.
  std::string http_address = "127.0.0.1:8000";
  // Folder of models: <repo>/<model>/config.yaml and <repo>/<model>/<version>/.
  std::string model_repository = "models";
  // Models of the repository this node loads, "name[,name...]": a fleet shares one repository
  // and each device loads what fits it. Empty: every model. A name the repository lacks stops
  // start-up.
  std::string models;
  // How the set of models and versions changes while the node runs (docs/serving.md):
  //   none      what start-up loaded stays loaded (the default: a device's models change with
  //             its deployment, not behind its back)
  //   poll      the repository folder is rescanned every repository_poll_ms; new and changed
  //             versions are loaded, removed ones unloaded
  //   explicit  only through the repository API (REST /v2/repository/models/<m>/load|unload,
  //             gRPC RepositoryModelLoad/Unload)
  std::string model_control_mode = "none";
  // Who may load and unload models through the repository API (REST and gRPC; api/admin_access.h):
  //   loopback  only clients on this node itself (127.0.0.0/8, ::1). The default: the API
  //             listens on loopback by default too, and a node exposed to a network should not
  //             let the network change what it serves.
  //   token     any address with `Authorization: Bearer <token>`, the token being the content of
  //             admin_token_file (at least 16 characters; `openssl rand -hex 32` makes one)
  //   any       anyone who reaches the API (labs only; the node warns at start)
  // Reading (index, metadata, health, statistics, metrics, /v1/mesh/*) and inferring need none.
  std::string admin_access = "loopback";
  // admin_access: token: the file holding the token (keep it readable by the node's user only).
  std::string admin_token_file;
  // Poll mode's rescan period. A scan reads folder metadata and config files, not model files;
  // 5 s finds a new version quickly without keeping a small device's storage busy.
  int repository_poll_ms = 5000;
  // host:port of the KServe v2 gRPC API (inference.GRPCInferenceService; docs/serving.md), on
  // its own port: 8001 beside REST's 8000, as in Triton and KServe. "off" (or empty): no gRPC,
  // and the gRPC plugin is not even loaded (about 6 MiB less resident). Several nodes on one host
  // each need their own, like http_address.
  std::string grpc_address = "127.0.0.1:8001";

  bool grpc_enabled() const { return !grpc_address.empty() && grpc_address != "off"; }
  // Largest gRPC message received or sent; beyond it a call fails RESOURCE_EXHAUSTED. The same
  // as max_body_bytes by default, so both APIs take the same tensors.
  uint64_t grpc_max_message_bytes = 64ull << 20;
  // Memory gRPC may hold of messages being read and written (its resource quota), in MiB, over
  // every connection together; past it gRPC slows its readers and then cancels streams. gRPC
  // reads a whole message before the service sees it, so without a quota 40 clients sending
  // 60 MB each hold 2.4 GB. The quota is part of memory_budget_mb (what is left of it is the
  // budget for requests in flight), so the budget stays the node's bound. 0: a quarter of the
  // budget, but at least one message (grpc_max_message_bytes) and 16 MiB more; never more than
  // half the budget.
  uint64_t grpc_memory_quota_mb = 0;
  // The quota in bytes, with 0 resolved as described above.
  uint64_t GrpcMemoryQuotaBytes() const;
  // I/O threads for HTTP. Two keep a 2-core device busy without starving model workers.
  int http_threads = 2;
  // Worker instances for models whose config does not set `instances`. One per model keeps a
  // small device from oversubscribing its cores.
  int default_instances = 1;
  // Queue bound for models whose config does not set `queue_limit`; beyond it requests are shed
  // with 503 at once rather than waiting without bound.
  int default_queue_limit = 64;
  // Largest request body accepted (413 beyond). 64 MiB fits a few raw 4K frames.
  uint64_t max_body_bytes = 64ull << 20;
  // Memory the node may hold for requests in flight, in MiB, all connections and models
  // together: bodies, tensors decoded from them, decoded images, answers being written
  // (base/memory_budget.h). Past it, requests get 503 with Retry-After instead of the node
  // growing until the kernel kills it. 0: a quarter of the device's memory, at least 256 MiB and
  // at most 1 GiB (an edge device also runs its models and OS). Must hold two of the largest
  // bodies (besides gRPC's quota, grpc_memory_quota_mb, which is part of it when gRPC is on).
  uint64_t memory_budget_mb = 0;
  // The budget in bytes, with 0 resolved as described above.
  uint64_t MemoryBudgetBytes() const;
  // Most pixels (width x height) of an image the vision backends (hog-people, cascade) decode,
  // for models whose config does not set options.max_image_pixels; a larger one is refused with
  // 400 before a pixel is decoded. 8K UHD (7680 x 4320): the largest frame common cameras make,
  // while a JPEG or PNG of a few hundred bytes can declare 65535 x 65535 (12 GiB of pixels).
  // Within it, the memory budget still decides what the node can process at once.
  int64_t max_image_pixels = int64_t{7680} * 4320;
  // A request's headers must arrive within this time (idle keep-alive time counts), else the
  // connection is closed: slow or stuck clients cannot hold connections forever.
  int header_timeout_ms = 10000;
  // Time allowed to receive a body once its headers have arrived, and to send a response.
  int body_timeout_ms = 60000;
  // Connections open at once, plain and mesh links together (one more is closed at once after a
  // short 503). 0: half of the process's descriptor limit (RLIMIT_NOFILE), at most 1024, so that
  // connections alone cannot take the descriptors that model files, gossip and peer connections
  // need, and their buffers stay within about 200 MiB.
  int max_connections = 0;
  // The same from one source address (an IPv6 /64 counts as one), so that one client or
  // stranger cannot take them all. 0: half of max_connections, at most 256: far above a busy
  // client, a benchmark (32 connections) or a peer's links (one per I/O thread), all of which
  // may come from one address.
  int max_connections_per_source = 0;
  // A mesh link with no open request and no bytes arriving for this long is closed (peers open
  // a new one when they next forward). A minute keeps a busy peer's links across the pauses
  // between its requests, where reopening costs a round trip, while a stranger's or a vanished
  // peer's idle link holds a descriptor no longer than that.
  int idle_link_timeout_ms = 60000;
  // A request for a Service with no ready endpoint (its replica restarting after a crash, or
  // moving to another node), or whose endpoints all refused it before it reached a workload,
  // waits up to this long (within its Hivemesh-Timeout-Ms) for one, then gets 503. Ten seconds
  // cover a workload's first restarts (the supervisor waits 1 s, then 2 s, 4 s) and readiness.
  int service_hold_ms = 10000;
  // A connection relayed at a Service's port (connection-level pass-through, and the tunnel to
  // the node that runs its endpoint) through which nothing has passed either way for this long
  // is closed: an hour, as long-lived quiet protocols (a database's, a device's) need, while a
  // vanished client's relay holds its descriptors no longer than that.
  int relay_idle_timeout_ms = 3600000;
  // On SIGTERM, the longest wait for queued and running requests before exiting anyway.
  int drain_timeout_ms = 30000;
  // trace, debug, info, warn, error or off. At debug every inference gets a log line (model,
  // route, status, duration, trace id).
  std::string log_level = "info";
  // text (lines for people) or json (one JSON object per line, for log collectors). Either way
  // each line carries the node name (docs/telemetry.md).
  std::string log_format = "text";

  // Gossip (membership) UDP and TCP address, host:port. Peers must reach it: on a real network
  // set the device's IP. Port 0 picks a free port (tests).
  std::string gossip_address = "127.0.0.1:7946";
  // Seeds to join, "host:port[,host:port...]"; tried until one answers. Empty: start alone.
  std::string join;
  // A join token (HM1-...; docs/identity.md): with `join`, the node gets its certificate from a
  // seed on first start (one without a certificate in its state folder). Never logged.
  std::string token;
  // Runs the node outside any mesh's certificates (docs/identity.md): it creates no mesh and
  // joins without a token; connections between nodes are plain TCP, members proved by gossip
  // keys and member credentials only. It says so at start, in /v2 and in `hivemesh members`.
  // A node of a secure mesh refuses its links and forwarded requests. Default: secure (a node
  // without --join creates a mesh, one with --join needs --token or a certificate).
  bool insecure = false;
  // How long the node certificates this node issues live (an issuer node: the one that created
  // the mesh): a duration, "90s", "30m", "24h", "7d". Nodes renew at two thirds of it.
  std::string certificate_ttl = "7d";
  int64_t CertificateTtlSeconds() const;
  // lan, wan or local: the timing profile (see membership/config.h).
  std::string gossip_profile = "lan";
  // Base64 AES keys (16, 24 or 32 bytes; `hivemesh keygen` makes one), comma-separated. The
  // first encrypts, all decrypt, so keys rotate without downtime. Empty: plaintext gossip.
  std::string gossip_keys;
  // Authenticated with every gossip packet: nodes with another label never talk, even with the
  // same key.
  std::string cluster_label;
  // Where the node keeps what must survive restarts: its node key (node.key), which the mesh
  // binds its name to (docs/security.md). Empty: /var/lib/hivemesh for root, else
  // $XDG_STATE_HOME/hivemesh (~/.local/state/hivemesh). Nodes sharing a host may share it (they
  // then share a key); give each its own to keep them apart.
  std::string state_dir;
  // state_dir with the default resolved.
  std::string StateDir() const;
  // Gossip TCP connections served at once, in total and from one source IP; beyond them a new
  // connection is closed at once. A mesh of a few thousand nodes keeps a handful open (one
  // push-pull per member per interval, over in milliseconds); these are far above that and far
  // below the node's file descriptors, so one host cannot take them all.
  int gossip_max_connections = 256;
  int gossip_max_connections_per_source = 16;
  // Memory, in MiB, that all gossip TCP connections may buffer together (frames being read).
  // Beyond it a frame is refused. 32 MiB holds two of the largest frames (16 MiB: the state of
  // ~100,000 members); a node with gossip keys buffers nothing for a peer that has not proven it
  // holds one.
  int gossip_buffer_mb = 32;
  // A gossip TCP connection must send its frame's head within this time, or it is closed (then
  // the whole exchange within the profile's tcp_timeout): a peer with nothing to say is cut in
  // 2 s instead of holding a connection for 10 s.
  int gossip_head_timeout_ms = 2000;
  // Most members the node keeps (membership/config.h, max_members): the bound on what forged
  // joins can make it hold. Raise it on every node of a mesh larger than this.
  int gossip_max_members = 4096;
  // Members each node keeps an idle TCP watch connection to, to learn of a crash at once (its
  // kernel closes the connection): see docs/membership.md. 0: none (probes alone).
  int gossip_watchers = 3;
  // This node's labels, "key=value[,key=value...]", e.g. "zone=line-1,hardware=jetson". The
  // `zone` label bounds where models with `dataPolicy: zone` send their data.
  std::string labels;

  // The MQTT broker the node forwards insights to (docs/insights.md, "Store-and-forward"):
  // mqtt://host[:port] or mqtts://host[:port]; empty: none. What goes: the MQTT filters of
  // mqtt_topics (comma-separated; empty: all). The outbox (<state>/insights-outbox.db) holds at
  // most mqtt_queue_mb; when full, mqtt_queue_full: drop-oldest or refuse-new.
  std::string mqtt_url;
  std::string mqtt_topics;
  std::string mqtt_username;
  std::string mqtt_password_file;  // the password, on the file's first line
  std::string mqtt_ca;             // mqtts: the CA bundle (PEM); empty: the system's
  int mqtt_queue_mb = 1024;
  std::string mqtt_queue_full = "drop-oldest";
  // What waited in the outbox when the broker connected drains at most this many insights a
  // second, behind the live ones (0: no limit).
  int mqtt_backlog_rate = 1000;

  // Where inferences run. hivemesh: here when this node can serve in time, else on the peer
  // predicted to finish first; local: never offload a model this node hosts (models it does not
  // host still go to peers); random: any node hosting the model, uniformly (for comparison).
  std::string routing_mode = "hivemesh";
  // This node serves a model it hosts while its predicted completion time is within this
  // fraction (plus local_margin_ms) of the best peer's: local work avoids a network hop.
  double local_margin = 0.25;
  int local_margin_ms = 2;
  // Hops a request may make between nodes. 1: a forwarded request is served where it lands.
  int max_hops = 1;
  // A request for a model no peer hosts while the mesh's view is settling (a member came, went or
  // is suspect; or the model was announced within the last minute) waits up to this long for a
  // host, then gets 503 with Retry-After instead of 404. 0: 404 at once.
  int settle_hold_ms = 1000;
  // host:port other nodes use to reach this node's API, when it differs from http_address
  // (NAT, containers, a proxy in front). Empty: http_address with the bound port.
  std::string http_advertise_address;
  // On SIGTERM, time between telling the mesh this node is draining and closing the listener,
  // so peers stop sending it work first.
  int drain_announce_ms = 500;

  // Checks values that types alone do not (ranges, address syntax).
  absl::Status Validate() const;
  // Splits http_address into host and port. REQUIRES: Validate() passed.
  std::string http_host() const;
  uint16_t http_port() const;
  std::vector<std::string> JoinList() const;
  std::vector<std::string> ModelList() const;
  std::map<std::string, std::string> LabelMap() const;
};

// Registers every setting as a flag on `app`, plus `--config FILE`. After app.parse(), call
// Resolve() to merge defaults, the YAML file and the flags that were given.
class AgentFlags {
 public:
  explicit AgentFlags(CLI::App& app);
  absl::StatusOr<AgentConfig> Resolve() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

// Applies YAML text to `config`; errors name the file and key.
absl::Status ApplyYaml(const std::string& yaml_text, const std::string& file, AgentConfig* config);

}  // namespace hivemesh
