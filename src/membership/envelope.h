// Envelope: what a gossip packet (UDP datagram, or the head of a TCP frame; see stream_frame.h)
// is wrapped in on the wire, and the checks an incoming one passes before the wire decoder
// (wire.h) sees it: size, authenticity, freshness, recipient and replay. Pure: time is a
// parameter, there are no clocks, sockets or threads.
//
// Keyed mode (a Keyring is configured). Wrap seals, with the keyring's primary key, envelope
// format 2:
//
//   [format: u8 = 2] [boot id: u64 LE] [counter: u64 LE] [unix time, ms: u64 LE]
//   [recipient kind: u8] [recipient length: u8] [recipient: that many bytes] [payload]
//
// The boot id is random per process start; the counter starts at 0 and grows by one per
// wrapped packet, over UDP and TCP alike. The recipient says whom the packet is for, so a packet
// captured on its way to one node is refused by every other (Recipient below):
//  - kind 1, an address: the receiver's gossip address (host:port) as the sender knows it, for
//    UDP datagrams and TCP requests;
//  - kind 2, a reply: the boot id and counter of the TCP request it answers (16 bytes), so a
//    reply is good for that one exchange only, and never as a request.
// Unwrap, in this order:
//  1. drops a packet over the size limit (kOversized), before any crypto work;
//  2. drops a packet no key authenticates (kUnauthenticated): wrong key or label, corrupted,
//     truncated, forged, or plaintext from a node without encryption. These are one reason on
//     purpose: to a receiver a misconfigured peer, a plaintext peer and line noise look the same,
//     and none of it is ever processed;
//  3. drops an authenticated packet that is not format 2 or too short for its header
//     (kMalformed: a key holder speaking another format, e.g. an older node);
//  4. drops a packet whose timestamp is more than max_clock_skew from `now`, either way
//     (kStale). Nodes need roughly synchronised clocks (NTP): a device that boots at 1970 is
//     isolated until it syncs, and says so in its counters;
//  5. drops a packet carrying this envelope's own boot id (kReplayed: our own traffic reflected
//     back);
//  6. drops a packet for another recipient than the one the caller expects (kMisdirected): a
//     packet replayed to another node, a reply replayed as a request or into another exchange.
//     The error names both ("addressed to X, arrived at Y"): a join seed given by an address
//     other than the one the seed advertises shows up here;
//  7. drops a replay (kReplayed): per sender boot id, a sliding window over the counter like
//     IPsec's (RFC 4303 section 3.4.3): the highest counter seen plus a 64-bit bitmap of the 64
//     counters below it. A counter in the window that was already seen, or older than the
//     window, is dropped; anything newer moves the window. Packets reordered by the network by
//     fewer than 64 positions are each accepted once.
// Only a packet that passes every check changes the window, so nothing unauthenticated, stale
// or misdirected can poison it.
//
// The body of a TCP frame travels in chunks sealed on their own (SealChunk/OpenChunk), each
// bound to its frame's head by the sender's boot id, the head's counter and its index, so the
// receiver authenticates every 64 KiB before it reads the next; chunks use no counter of their
// own and do not touch the replay window (the head did).
//
// Limits of the replay protection, by design:
//  - At most max_senders boot ids are remembered; the one heard from least recently is evicted.
//    A sender's window is also lost when this node restarts. A captured packet whose window is
//    gone is accepted once more by the node it was addressed to, but only within max_clock_skew
//    of when it was sent; the timestamp bounds what the bounded state cannot. (SWIM's
//    incarnation rules make a replayed membership message stale anyway; this stops the cheap
//    attack, not a clever one.)
//  - One Envelope serves UDP and TCP because a sender's counter is per boot id: two instances
//    with one boot id would reuse counters, and the receiver would drop the second stream as
//    replays. A TCP frame overtaken by 64 or more newer packets from the same sender (a
//    push-pull that takes seconds on a busy link) is dropped as too old; the sender seals a frame
//    just before writing it to keep that window short.
//
// Plaintext mode (no keyring): Wrap returns the payload unchanged and Unwrap returns the packet
// unchanged after the size check. There is no replay protection and no recipient: without a key
// anyone can forge any packet, so refusing a replayed one would stop no attacker and only cost
// state.
//
// Size limits: the constructor's max_packet_bytes applies to Unwrap without a limit; the other
// Unwrap takes the limit per call, so one Envelope can hold UDP datagrams to the UDP buffer size
// and TCP frame heads to a smaller one.
//
// Thread safety: none. One owner (the membership transport's strand) calls everything.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "membership/keyring.h"

namespace hivemesh::membership {

// Why gossip input was refused. The envelope's own reasons come first; the others are the TCP
// transport's (stream_frame.h, gossip_node.h). Only append: the names are metric label values.
enum class DropReason : uint8_t {
  kMalformed,              // authenticated but not an envelope of this format (header too short)
  kUnauthenticated,        // keyed mode: no key authenticates it (includes plaintext packets)
  kReplayed,               // seen before, older than the replay window, or our own reflected
  kStale,                  // timestamp further than max_clock_skew from now (past or future)
  kOversized,              // a datagram or frame head larger than the size limit
  kMisdirected,            // authenticated, but addressed to another node or exchange
  kBadFrame,               // TCP: not a frame of this framing version (or a notice as request)
  kFrameTooLarge,          // TCP: a frame declaring more than max_tcp_frame_bytes
  kConnectionLimit,        // TCP: the node's limit on gossip connections was reached
  kSourceConnectionLimit,  // TCP: one source address's limit on gossip connections was reached
  kBudget,                 // TCP: the node-wide budget for buffered gossip frames was spent
  kTimeout,                // TCP: a frame's head or the exchange did not complete in time
  kAcceptFailed,           // TCP: accept() failed (e.g. out of file descriptors); backing off
};
inline constexpr size_t kDropReasonCount = static_cast<size_t>(DropReason::kAcceptFailed) + 1;
// "malformed", "unauthenticated", "replayed", "stale", "oversized", "misdirected", "bad_frame",
// "frame_too_large", "connection_limit", "source_connection_limit", "budget", "timeout",
// "accept_failed" (metric label values).
std::string_view DropReasonName(DropReason reason);

// Packets, frames and connections dropped, by reason. Monotonic.
struct DropCounters {
  uint64_t malformed = 0;
  uint64_t unauthenticated = 0;
  uint64_t replayed = 0;
  uint64_t stale = 0;
  uint64_t oversized = 0;
  uint64_t misdirected = 0;
  uint64_t bad_frame = 0;
  uint64_t frame_too_large = 0;
  uint64_t connection_limit = 0;
  uint64_t source_connection_limit = 0;
  uint64_t budget = 0;
  uint64_t timeout = 0;
  uint64_t accept_failed = 0;

  void Add(DropReason reason);
  uint64_t of(DropReason reason) const;
  uint64_t total() const;
  DropCounters& operator+=(const DropCounters& other);
};

// Whom a sealed packet is for (see the header comment). A value type.
class Recipient {
 public:
  enum class Kind : uint8_t { kAddress = 1, kReply = 2 };
  // An address is at most this long (an IPv6 address with a port is 47 characters).
  static constexpr size_t kMaxAddressBytes = 255;

  // The receiver's gossip address, host:port, as the sender knows it. Longer than
  // kMaxAddressBytes: cut to it (no address of a node is that long; such a packet is refused as
  // misdirected).
  static Recipient Address(std::string_view host_port);
  // The reply to the TCP request that carried (boot id, counter).
  static Recipient Reply(uint64_t requester_boot_id, uint64_t request_counter);

  Kind kind() const { return kind_; }
  const std::string& bytes() const { return bytes_; }
  // "10.0.0.5:7946", or "the reply to exchange <boot id>/<counter>" (for logs and errors).
  std::string Describe() const;
  bool operator==(const Recipient& other) const = default;

 private:
  Recipient(Kind kind, std::string bytes) : kind_(kind), bytes_(std::move(bytes)) {}
  Kind kind_;
  std::string bytes_;
};

// An unwrapped packet: its payload, and which packet of which sender it was.
struct Opened {
  std::string payload;
  uint64_t sender = 0;   // the sender's boot id (0 in plaintext mode)
  uint64_t counter = 0;  // its counter (0 in plaintext mode): a reply is bound to it
};

struct EnvelopeOptions {
  // Largest accepted timestamp difference between sender and receiver, either direction. It
  // bounds how long a captured packet can be replayed to a receiver that no longer remembers
  // the sender's window. 60 s is far above NTP error on a LAN (milliseconds) and a gossip
  // packet's flight time, and short enough to make replays near-useless.
  std::chrono::milliseconds max_clock_skew{60000};
  // Largest packet Unwrap without a limit accepts, overhead included. 64 KiB covers any UDP
  // datagram.
  size_t max_packet_bytes = 65536;
  // Sender boot ids whose replay windows are remembered (about 40 bytes each). Must exceed the
  // cluster size, or live senders evict each other and fall back to the timestamp bound alone;
  // 4096 covers any edge cluster plus the stale boot ids of restarted nodes, in ~160 KiB.
  size_t max_senders = 4096;

  // max_clock_skew >= 0, max_packet_bytes >= 1, max_senders >= 1.
  absl::Status Validate() const;
};

class Envelope {
 public:
  static constexpr uint8_t kFormat = 2;
  // format, boot id, counter, unix ms, recipient kind and length (the recipient follows).
  static constexpr size_t kHeaderBytes = 1 + 8 + 8 + 8 + 1 + 1;
  static constexpr uint64_t kReplayWindow = 64;
  // A sealed chunk: [boot id u64][head counter u64][index u32][data], sealed.
  static constexpr size_t kChunkOverhead = 8 + 8 + 4 + Keyring::kOverhead;

  // `keyring` nullopt: plaintext mode. `boot_id`: random per process start (RandomBootId()).
  // REQUIRES: options.Validate().ok() (validate configuration once, at startup).
  Envelope(std::optional<Keyring> keyring, uint64_t boot_id, EnvelopeOptions options = {});

  // The packet to send for `payload` to `to`, stamped with `unix_ms` (wall-clock time,
  // milliseconds since the Unix epoch). Keyed: payload.size() + overhead(to) bytes; plaintext:
  // the payload. `counter`, if not null, receives the packet's counter (0 in plaintext mode):
  // the requester of a TCP exchange expects Recipient::Reply(boot_id(), *counter) back.
  std::string Wrap(std::string_view payload, const Recipient& to, int64_t unix_ms,
                   uint64_t* counter = nullptr);

  // The payload of an incoming packet meant for `expected`, or an error saying why it was
  // dropped. On error the drop counter for the reason is incremented and, if `why` is not null,
  // *why is set to the reason. `unix_ms` is the receiver's wall-clock time.
  absl::StatusOr<Opened> Unwrap(std::string_view packet, const Recipient& expected, int64_t unix_ms,
                                DropReason* why);
  // The same with a size limit for this call instead of options.max_packet_bytes.
  absl::StatusOr<Opened> Unwrap(std::string_view packet, const Recipient& expected, int64_t unix_ms,
                                DropReason* why, size_t max_packet_bytes);

  // Chunk `index` of the body of the frame whose head this node sealed with `head_counter`:
  // data.size() + kChunkOverhead bytes. REQUIRES: encrypted().
  std::string SealChunk(uint64_t head_counter, uint32_t index, std::string_view data) const;
  // The data of chunk `index` of the frame whose head `sender` sealed with `head_counter`, or
  // an error (counted like Unwrap's): kUnauthenticated if no key opens it, kReplayed if a key
  // holder sealed it for another frame or position. REQUIRES: encrypted().
  absl::StatusOr<std::string> OpenChunk(std::string_view sealed, uint64_t sender,
                                        uint64_t head_counter, uint32_t index, DropReason* why);

  // Bytes Wrap adds for `to`: kHeaderBytes + to's bytes + Keyring::kOverhead keyed, 0 in
  // plaintext mode.
  size_t overhead(const Recipient& to) const {
    return keyring_ ? kHeaderBytes + to.bytes().size() + Keyring::kOverhead : 0;
  }
  bool encrypted() const { return keyring_.has_value(); }
  // Seals and opens with `keyring` from now on (a key rotation, identity/mesh_files.h): the
  // replay windows stay. REQUIRES: encrypted() (plaintext gossip stays plaintext).
  void SetKeyring(Keyring keyring) { keyring_ = std::move(keyring); }
  uint64_t boot_id() const { return boot_id_; }
  const DropCounters& drops() const { return drops_; }
  // Sender boot ids currently remembered (<= options.max_senders).
  size_t remembered_senders() const { return windows_.size(); }

 private:
  // The replay window of one sender boot id.
  struct Window {
    uint64_t top = 0;       // highest counter accepted
    uint64_t bitmap = 0;    // bit i set: counter top - i accepted (bit 0 is top itself)
    uint64_t last_use = 0;  // use_tick_ when last accepted from; for eviction
  };

  absl::Status Drop(DropReason reason, absl::Status status, DropReason* why);
  // Checks `counter` against the sender's window and records it if new. False: replayed.
  bool AcceptCounter(uint64_t boot_id, uint64_t counter);

  std::optional<Keyring> keyring_;
  uint64_t boot_id_;
  EnvelopeOptions options_;
  uint64_t next_counter_ = 0;
  uint64_t use_tick_ = 0;
  std::unordered_map<uint64_t, Window> windows_;  // by sender boot id; size <= max_senders
  DropCounters drops_;
};

// A random 64-bit boot id (OpenSSL RAND_bytes). Aborts if the OS random source fails.
uint64_t RandomBootId();

}  // namespace hivemesh::membership
