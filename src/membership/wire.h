// The membership wire format: a versioned, compact binary encoding of SWIM messages.
//
// A packet (after decryption, if a key is configured) is
//   [wire version: u8 = kWireVersion] [message type: u8] [body]
// or, to carry several messages in one UDP datagram,
//   [kWireVersion] [kCompound] [count: varint] ([length: varint] [type] [body])...
// Integers are LEB128 varints, strings and byte fields a varint length then the bytes.
// Message types are append-only. Inside a compound packet a message of a type this node does
// not know is skipped (so newer nodes can add types); anywhere else it is an error.
//
// Decoding is total: any byte string yields either messages or an error, never a crash; field
// sizes are bounded (names, addresses, metadata, member counts).
//
// Version 2 (this one) signs what a node says about itself: an alive message carries the node's
// public key and its Ed25519 signature over the message (AliveClaimBytes), a leave (dead sent by
// the node itself) its signature (LeaveClaimBytes), and a push-pull entry the signature of the
// member's latest claim; incarnations are 64-bit. Version 1 nodes are not understood (their
// packets fail to decode and are counted as malformed).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"

namespace hivemesh::membership {

inline constexpr uint8_t kWireVersion = 2;
inline constexpr size_t kMaxNameBytes = 128;
inline constexpr size_t kMaxAddrBytes = 64;
inline constexpr size_t kMaxMetaBytes = 1024;
inline constexpr size_t kMaxLoadBytes = 1024;
inline constexpr size_t kMaxPushPullMembers = 100000;
inline constexpr size_t kMaxCompoundMessages = 255;

// Only append: these values are on the wire.
enum class MessageType : uint8_t {
  kPing = 1,
  kIndirectPing = 2,
  kAck = 3,
  kNack = 4,
  kSuspect = 5,
  kAlive = 6,
  kDead = 7,
  kPushPull = 8,
  kCompound = 9,
  kLoad = 10,
  kWatch = 11,        // protocol 2: opens a watch connection (TCP only)
  kDigest = 12,       // protocol 3: opens an anti-entropy exchange with a summary (TCP only)
  kDigestReply = 13,  // protocol 3: what the other side lacks, and what it wants (TCP only)
};

enum class MemberState : uint8_t { kAlive = 0, kSuspect = 1, kDead = 2, kLeft = 3 };
std::string_view MemberStateName(MemberState s);  // "alive", "suspect", "dead", "left"

struct Ping {
  uint32_t seq = 0;
  std::string target;  // the name the sender believes is at this address
  std::string source;
  std::string source_addr;
};
struct IndirectPing {
  uint32_t seq = 0;
  std::string target;
  std::string target_addr;
  bool want_nack = true;
  std::string source;
  std::string source_addr;
};
struct Ack {
  uint32_t seq = 0;
};
struct Nack {
  uint32_t seq = 0;
};
struct Alive {
  uint64_t incarnation = 0;
  std::string node;
  std::string addr;
  std::string meta;  // opaque to the protocol (NodeMeta, encoded)
  uint8_t protocol_min = 1;
  uint8_t protocol_max = 1;
  std::string key;  // the node's public key (identity::kPublicKeyBytes), or empty
  std::string sig;  // the node's signature of AliveClaimBytes(*this), or empty
};
struct Suspect {
  uint64_t incarnation = 0;
  std::string node;
  std::string from;
};
struct Dead {
  uint64_t incarnation = 0;
  std::string node;
  std::string from;  // == node: the node left gracefully
  std::string sig;   // a leave: the node's signature of LeaveClaimBytes(*this); else empty
};
struct PushPullMember {
  std::string node;
  std::string addr;
  uint64_t incarnation = 0;
  MemberState state = MemberState::kAlive;
  std::string meta;
  uint8_t protocol_min = 1;
  uint8_t protocol_max = 1;
  std::string key;  // the member's public key
  // The member's own signature of its latest claim: of its leave (LeaveClaimBytes) when `state`
  // is left, else of its alive message at `incarnation` with these fields (AliveClaimBytes).
  std::string sig;
};
struct PushPull {
  bool join = false;  // the sender is joining: answer even if we are alone
  std::vector<PushPullMember> members;
};
// A node's load report, relayed by gossip. `age_ms` is how old the report was when this copy
// was sent (each relay adds the time it held it), so readers know its freshness without
// synchronized clocks; `seq` orders reports from one node.
struct Load {
  std::string node;
  uint64_t seq = 0;
  uint32_t age_ms = 0;
  std::string payload;  // opaque to the protocol (LoadReport, encoded)
};

// The first frame of a watch connection (SwimConfig::watchers): `source` watches the receiver.
// The receiver answers with an Ack and keeps the connection open, idle, until either side goes.
struct Watch {
  std::string source;
};

// Anti-entropy by digest (protocol 3). The node that starts an exchange sends a Digest: for
// itself and every member it knows, the name, incarnation and state, not the entries (about 15
// bytes a member instead of 150). The other side answers with a DigestReply: the full entries of
// what it knows better (a member missing from the digest, a higher incarnation, or a stronger
// state at the same incarnation), and the names of those the digest knows better, which the
// starter then sends as a second DigestReply on a new connection (answered by an empty one).
// A mesh at rest exchanges digests and empty replies.
struct DigestEntry {
  std::string node;
  uint64_t incarnation = 0;
  MemberState state = MemberState::kAlive;
};
struct Digest {
  std::vector<DigestEntry> entries;
};
struct DigestReply {
  std::vector<PushPullMember> members;
  std::vector<std::string> want;
};

using Message = std::variant<Ping, IndirectPing, Ack, Nack, Suspect, Alive, Dead, PushPull, Load,
                             Watch, Digest, DigestReply>;

MessageType TypeOf(const Message& m);

// What a node signs for an alive message about itself: a domain tag, then every field of `m`
// but `sig`, encoded as on the wire.
std::string AliveClaimBytes(const Alive& m);
// What a node signs when it leaves: a domain tag, the incarnation and the name.
std::string LeaveClaimBytes(const Dead& m);
// The alive message a push-pull entry stands for (state aside), its signature included.
Alive AliveOf(const PushPullMember& p);

// [type][body] of one message.
std::string EncodeMessage(const Message& m);
// A packet holding `encoded` messages (each from EncodeMessage): a plain packet for one, a
// compound packet for several. REQUIRES: 1 <= encoded.size() <= kMaxCompoundMessages.
std::string EncodePacket(const std::vector<std::string>& encoded);

struct DecodedPacket {
  std::vector<Message> messages;
  int unknown_skipped = 0;  // messages of newer types skipped inside a compound packet
};
absl::StatusOr<DecodedPacket> DecodePacket(std::string_view packet);

}  // namespace hivemesh::membership
