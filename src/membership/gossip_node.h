// GossipNode: runs a Swim state machine over real UDP and TCP sockets (Boost.Asio, one thread of
// its own so that inference load never delays probes and acks), with the Envelope for
// encryption, recipient and replay checks. Kept free of Asio types so that including it stays
// cheap.
//
// UDP carries pings, acks, indirect probes and gossip, one Envelope-wrapped packet per datagram,
// addressed to the receiver's gossip address. TCP carries push-pull state exchanges, joins and
// TCP pings: one request frame and one reply frame per connection, in the framing of
// stream_frame.h (version 2); a request is addressed to the receiver's address, a reply to the
// request it answers.
//
// What a stranger on the network can make a node hold is bounded (GossipOptions): gossip TCP
// connections in total and per source address; bytes buffered by all of them together (a keyed
// node buffers nothing beyond a frame's small head until the head has authenticated); the time
// a connection may take to send its frame's head and to finish. A bad frame closes its
// connection at once. Accept errors (e.g. out of file descriptors) back off exponentially.
// Every refusal is counted by reason (GossipStats::drops) and logged at most once a second per
// reason.
//
// A keyed node answers a TCP frame no key authenticates with the fixed "requires encryption"
// notice. A node without keys that gets it in answer to a join stops joining: joining failed for
// good (join_status(), GossipOptions::on_encryption_required).
//
// Thread safety: every public method may be called from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "base/clock.h"
#include "identity/node_key.h"
#include "membership/config.h"
#include "membership/envelope.h"
#include "membership/keyring.h"
#include "membership/swim.h"
#include "transport/tls.h"

namespace hivemesh::membership {

// The first byte of a gossip TCP exchange over TLS (a sealed frame starts with 'H', a join's or
// renewal's TLS handshake with 0x16).
inline constexpr char kTlsExchangeByte = 'T';

struct GossipOptions {
  std::string name;
  // This node's own key: it signs the node's claims about itself (swim.h). The agent passes the
  // one kept in its state folder, so that the node keeps its name across restarts.
  identity::NodeKey node_key = identity::NodeKey::Generate();
  // host:port, an IP address peers reach: it is what this node advertises and what sealed
  // packets to it must name. Port 0 picks a free one. Not 0.0.0.0 or ::.
  std::string bind_address = "127.0.0.1:7946";
  SwimConfig swim = SwimConfig::Lan();
  std::optional<Keyring> keyring;  // nullopt: plaintext gossip
  // Seeds (IP:port, each the address the seed advertises); retried until one answers.
  std::vector<std::string> join;
  std::chrono::milliseconds join_retry{1000};
  // Called once, on the gossip thread, when a seed answers a join with the "requires
  // encryption" notice and this node has no keys: joining has stopped for good. Argument: the
  // seed. May be empty.
  std::function<void(const std::string& seed)> on_encryption_required;
  // A TCP connection whose first byte is a TLS handshake record (0x16) is not gossip: when set,
  // it is handed over (after the connection limits admitted it) as a descriptor the function
  // owns from then on, with the peer's address. Called on the gossip thread; must not block.
  // Unset: such a connection is refused as a bad frame, like any other.
  std::function<void(int fd, const std::string& peer)> on_tls_connection;

  // Mutual TLS for every gossip TCP exchange (push-pull, joins, watches) of a secure mesh
  // (docs/identity.md): the connecting side sends kTlsExchangeByte, then a TLS 1.3 handshake
  // with the node's certificate, and both sides check the other's with `tls->Check` (a member's:
  // a client certificate's holder is refused). The frames inside are sealed as before. A plain
  // frame is refused, even one sealed with the mesh's keys (unauthenticated), after the
  // "requires encryption" notice where it cannot be opened. Null: plain frames (insecure mesh).
  std::shared_ptr<TlsSettings> tls;

  // Largest TCP frame body (a push-pull carries the whole member table): 16 MiB holds the state
  // of ~100,000 members, far past any edge mesh.
  size_t max_tcp_frame_bytes = 16u << 20;
  // Bytes all gossip TCP connections may buffer together (frames being read, served and our
  // own exchanges' replies). A frame that does not fit is refused and its connection closed.
  // 32 MiB: two of the largest frames at once; a mesh of a few thousand nodes exchanges states
  // of well under a MiB. A share (1/8) is kept for frames under 64 KiB, so a flood of large
  // frames does not stop the small exchanges of a normal mesh. REQUIRES: >= max_tcp_frame_bytes.
  size_t tcp_buffer_bytes = 32u << 20;
  // Gossip TCP connections served at once, in total and from one source IP. A node serves about
  // one exchange per member per push-pull interval (30 s, scaled up past 32 members), each over
  // in milliseconds, plus joins and the TCP pings of failing probes: a mesh of a few thousand
  // nodes keeps a handful open. 256 and 16 are far above that and far below the file
  // descriptors a node has.
  size_t max_tcp_connections = 256;
  size_t max_tcp_connections_per_source = 16;
  // A served connection's frame head (preamble and lengths; sealed: the authenticated head)
  // must arrive within this time, and the whole exchange within swim.tcp_timeout: a peer with
  // nothing to say is cut in 2 s, not held for tcp_timeout (10 s on a LAN). 2 s is hundreds of
  // round trips on a LAN and still several on a WAN.
  std::chrono::milliseconds tcp_head_timeout{2000};
  // After a failed accept() (out of file descriptors, ...) the next one waits this long,
  // doubling after each failure up to accept_backoff_max, instead of retrying at once and
  // spinning a core. 10 ms to 1 s: a brief shortage costs little latency, a long one little CPU.
  std::chrono::milliseconds accept_backoff_min{10};
  std::chrono::milliseconds accept_backoff_max{1000};

  // Checks the limits above (names, ranges); Create() calls it.
  absl::Status Validate() const;
};

struct GossipStats {
  SwimStats swim;
  DropCounters drops;
  uint64_t udp_bytes_out = 0;  // on the wire, envelope included
  uint64_t udp_packets_out = 0;
  uint64_t tcp_bytes_out = 0;
  uint64_t tcp_exchanges_failed = 0;
  uint64_t udp_packets_in = 0;      // datagrams received, dropped ones included
  uint64_t udp_bytes_in = 0;        // on the wire, envelope included
  uint64_t tcp_bytes_in = 0;        // frames read, framing included (requests served, replies)
  uint64_t tcp_connections = 0;     // gossip TCP connections being served now
  uint64_t tcp_buffered_bytes = 0;  // bytes of gossip frames buffered now (tcp_buffer_bytes)
  uint64_t watching = 0;            // watch connections this node holds open to members now
  uint64_t watched_by = 0;          // members' watch connections this node serves now
  uint64_t alive = 0;               // members alive or suspect, this node included
  // Mutual-TLS exchanges this node started (GossipOptions::tls), and how many of those resumed
  // an earlier session with the same peer.
  uint64_t tls_handshakes = 0;
  uint64_t tls_resumed = 0;
};

class GossipNode {
 public:
  using EventCallback = std::function<void(const MemberEvent&)>;

  // Binds UDP and TCP on the same port. `meta` is this node's initial metadata. `clock` is the
  // state machine's time and LeaveAndStop's; it must outlive the node (the agent passes
  // SystemClock::Get()).
  static absl::StatusOr<std::unique_ptr<GossipNode>> Create(GossipOptions options, std::string meta,
                                                            Clock& clock);
  virtual ~GossipNode() = default;

  // The address peers reach this node at (the bound address, with the chosen port).
  virtual std::string address() const = 0;
  // Starts the thread, and joining if seeds were given. `on_event` runs on the gossip thread.
  virtual void Start(EventCallback on_event) = 0;
  // Leaves gracefully (waits up to `timeout`, on the node's clock, for the news to spread), then
  // stops.
  virtual void LeaveAndStop(std::chrono::milliseconds timeout) = 0;
  // Stops without leaving (peers will detect the failure).
  virtual void Stop() = 0;

  virtual void UpdateMeta(std::string meta) = 0;
  // Swim::PushSelfToAll, after the metadata given so far (calls are taken in order).
  virtual void PushSelfToAll() = 0;
  virtual void SetLoad(std::string payload) = 0;
  // Swim::RevokeKey: the member bound to `key` is dead here, and its claims are refused.
  virtual void RevokeKey(std::string key) = 0;
  // Seals and opens gossip with `keyring` from now on (a gossip key rotation). FAILED_PRECONDITION
  // on a node whose gossip is not encrypted.
  virtual absl::Status SetKeyring(Keyring keyring) = 0;

  virtual std::vector<MemberInfo> Members() const = 0;
  // One member (Swim::Find: never this node), without copying the others.
  virtual std::optional<MemberInfo> Find(std::string_view name) const = 0;
  virtual GossipStats Stats() const = 0;
  virtual bool joined() const = 0;
  // OK while joining or joined; FailedPrecondition, saying why, once joining has stopped for
  // good (a seed requires encryption and this node has no keys).
  virtual absl::Status join_status() const = 0;
  // True when gossip is sealed with keys; false: plaintext (anyone who reaches the gossip
  // address can read the membership and forge messages).
  virtual bool encrypted() const = 0;
};

}  // namespace hivemesh::membership
