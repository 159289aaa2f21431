// GossipNode: runs a Swim state machine over real UDP and TCP sockets (Boost.Asio, one thread of
// its own so that inference load never delays probes and acks), with the Envelope for
// encryption and replay checks. Kept free of Asio types so that including it stays cheap.
//
// UDP carries pings, acks, indirect probes and gossip. TCP carries push-pull state exchanges,
// joins and TCP pings, one framed request and one framed reply per connection:
//   [length: u32 big-endian] [envelope-wrapped packet]
//
// Thread safety: every public method may be called from any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "identity/node_key.h"
#include "membership/config.h"
#include "membership/envelope.h"
#include "membership/keyring.h"
#include "membership/swim.h"

namespace hivemesh::membership {

struct GossipOptions {
  std::string name;
  // This node's own key: it signs the node's claims about itself (swim.h). The agent passes the
  // one kept in its state folder, so that the node keeps its name across restarts.
  identity::NodeKey node_key = identity::NodeKey::Generate();
  std::string bind_address = "127.0.0.1:7946";  // host:port; port 0 picks a free one
  SwimConfig swim = SwimConfig::Lan();
  std::optional<Keyring> keyring;  // nullopt: plaintext gossip
  std::vector<std::string> join;   // seeds (host:port); retried until one answers
  std::chrono::milliseconds join_retry{1000};
  size_t max_tcp_frame_bytes = 16u << 20;
};

struct GossipStats {
  SwimStats swim;
  DropCounters drops;
  uint64_t udp_bytes_out = 0;  // on the wire, envelope included
  uint64_t udp_packets_out = 0;
  uint64_t tcp_bytes_out = 0;
  uint64_t tcp_exchanges_failed = 0;
  uint64_t udp_packets_in = 0;  // datagrams received, dropped ones included
  uint64_t udp_bytes_in = 0;    // on the wire, envelope included
  uint64_t tcp_bytes_in = 0;    // frames read, length prefix included (requests served, replies)
};

class GossipNode {
 public:
  using EventCallback = std::function<void(const MemberEvent&)>;

  // Binds UDP and TCP on the same port. `meta` is this node's initial metadata.
  static absl::StatusOr<std::unique_ptr<GossipNode>> Create(GossipOptions options,
                                                            std::string meta);
  virtual ~GossipNode() = default;

  // The address peers reach this node at (the bound address, with the chosen port).
  virtual std::string address() const = 0;
  // Starts the thread, and joining if seeds were given. `on_event` runs on the gossip thread.
  virtual void Start(EventCallback on_event) = 0;
  // Leaves gracefully (waits up to `timeout` for the news to spread), then stops.
  virtual void LeaveAndStop(std::chrono::milliseconds timeout) = 0;
  // Stops without leaving (peers will detect the failure).
  virtual void Stop() = 0;

  virtual void UpdateMeta(std::string meta) = 0;
  virtual void SetLoad(std::string payload) = 0;

  virtual std::vector<MemberInfo> Members() const = 0;
  virtual GossipStats Stats() const = 0;
  virtual bool joined() const = 0;
};

}  // namespace hivemesh::membership
