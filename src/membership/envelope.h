// Envelope: what a gossip packet (UDP datagram or TCP frame) is wrapped in on the wire, and the
// checks an incoming one passes before the wire decoder (wire.h) sees it: size, authenticity,
// freshness and replay. Pure: time is a parameter, there are no clocks, sockets or threads.
//
// Keyed mode (a Keyring is configured). Wrap seals, with the keyring's primary key,
//
//   [boot id: u64 LE] [counter: u64 LE] [unix time, ms: u64 LE] [payload]
//
// The boot id is random per process start; the counter starts at 0 and grows by one per
// wrapped packet, over UDP and TCP alike. Unwrap, in this order:
//  1. drops a packet over the size limit (kOversized), before any crypto work;
//  2. drops a packet no key authenticates (kUnauthenticated): wrong key or label, corrupted,
//     truncated, forged, or plaintext from a node without encryption. These are one reason on
//     purpose: to a receiver a misconfigured peer, a plaintext peer and line noise look the same,
//     and none of it is ever processed;
//  3. drops an authenticated packet too short for the header above (kMalformed: a key holder
//     speaking another format);
//  4. drops a packet whose timestamp is more than max_clock_skew from `now`, either way
//     (kStale). Nodes need roughly synchronised clocks (NTP): a device that boots at 1970 is
//     isolated until it syncs, and says so in its counters;
//  5. drops a replay (kReplayed): per sender boot id, a sliding window over the counter like
//     IPsec's (RFC 4303 section 3.4.3): the highest counter seen plus a 64-bit bitmap of the 64
//     counters below it. A counter in the window that was already seen, or older than the
//     window, is dropped; anything newer moves the window. Packets reordered by the network by
//     fewer than 64 positions are each accepted once. A packet carrying this envelope's own boot
//     id (a reflection of our own traffic) is dropped as a replay too.
// Only a packet that passes every check changes the window, so nothing unauthenticated or stale
// can poison it.
//
// Limits of the replay protection, by design:
//  - At most max_senders boot ids are remembered; the one heard from least recently is evicted.
//    A sender's window is also lost when this node restarts. A captured packet whose window is
//    gone is accepted once more, but only within max_clock_skew of when it was sent; the
//    timestamp bounds what the bounded state cannot. (SWIM's incarnation rules make a replayed
//    membership message stale anyway; this stops the cheap attack, not a clever one.)
//  - One Envelope serves UDP and TCP because a sender's counter is per boot id: two instances
//    with one boot id would reuse counters, and the receiver would drop the second stream as
//    replays. A TCP frame overtaken by 64 or more newer packets from the same sender (a
//    push-pull that takes seconds on a busy link) is dropped as too old; the sender seals a frame
//    just before writing it to keep that window short.
//
// Plaintext mode (no keyring): Wrap returns the payload unchanged and Unwrap returns the packet
// unchanged after the size check. There is no replay protection: without a key anyone can forge
// any packet, so refusing a replayed one would stop no attacker and only cost state.
//
// Size limits: the constructor's max_packet_bytes applies to Unwrap(packet, now, why); the
// four-argument Unwrap takes the limit per call, so one Envelope can hold UDP datagrams to the
// UDP buffer size and TCP frames to a larger one.
//
// Thread safety: none. One owner (the membership transport's strand) calls everything.
#pragma once

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

enum class DropReason : uint8_t {
  kMalformed,        // authenticated but not an envelope (header too short)
  kUnauthenticated,  // keyed mode: no key authenticates it (includes plaintext packets)
  kReplayed,         // seen before, older than the replay window, or our own packet reflected
  kStale,            // timestamp further than max_clock_skew from now (past or future)
  kOversized,        // larger than the size limit
};
// "malformed", "unauthenticated", "replayed", "stale", "oversized" (metric label values).
std::string_view DropReasonName(DropReason reason);

// Packets Unwrap dropped, by reason. Monotonic.
struct DropCounters {
  uint64_t malformed = 0;
  uint64_t unauthenticated = 0;
  uint64_t replayed = 0;
  uint64_t stale = 0;
  uint64_t oversized = 0;
};

struct EnvelopeOptions {
  // Largest accepted timestamp difference between sender and receiver, either direction. It
  // bounds how long a captured packet can be replayed to a receiver that no longer remembers
  // the sender's window. 60 s is far above NTP error on a LAN (milliseconds) and a gossip
  // packet's flight time, and short enough to make replays near-useless.
  std::chrono::milliseconds max_clock_skew{60000};
  // Largest packet Unwrap(packet, now, why) accepts, overhead included. 64 KiB covers any UDP
  // datagram and a typical push-pull frame; a TCP reader expecting the full state of a large
  // cluster passes its own limit to the four-argument Unwrap.
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
  static constexpr size_t kHeaderBytes = 8 + 8 + 8;  // boot id, counter, unix ms
  static constexpr uint64_t kReplayWindow = 64;

  // `keyring` nullopt: plaintext mode. `boot_id`: random per process start (RandomBootId()).
  // REQUIRES: options.Validate().ok() (validate configuration once, at startup).
  Envelope(std::optional<Keyring> keyring, uint64_t boot_id, EnvelopeOptions options = {});

  // The packet to send for `payload`, stamped with `unix_ms` (wall-clock time, milliseconds
  // since the Unix epoch). Keyed: payload.size() + overhead() bytes; plaintext: the payload.
  std::string Wrap(std::string_view payload, int64_t unix_ms);

  // The payload of an incoming packet, or an error saying why it was dropped. On error the drop
  // counter for the reason is incremented and, if `why` is not null, *why is set to the reason.
  // `unix_ms` is the receiver's wall-clock time.
  absl::StatusOr<std::string> Unwrap(std::string_view packet, int64_t unix_ms, DropReason* why);
  // The same with a size limit for this call instead of options.max_packet_bytes.
  absl::StatusOr<std::string> Unwrap(std::string_view packet, int64_t unix_ms, DropReason* why,
                                     size_t max_packet_bytes);

  // Bytes Wrap adds: kHeaderBytes + Keyring::kOverhead keyed (53), 0 in plaintext mode.
  size_t overhead() const { return keyring_ ? kHeaderBytes + Keyring::kOverhead : 0; }
  bool encrypted() const { return keyring_.has_value(); }
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
