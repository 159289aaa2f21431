// Swim: the SWIM + Lifeguard membership state machine of one node. Pure: no sockets, threads or
// clocks. Every call takes `now` and returns the packets to send and the membership changes;
// the transport delivers packets and calls Tick() at NextTimer().
//
// Protocol (HashiCorp memberlist's semantics; see ../../docs/membership.md):
//  - Probing: every probe interval one peer (round-robin over a shuffled list) gets a UDP ping.
//    No ack within the probe timeout: `indirect_checks` random peers are asked to ping it (and
//    answer nack if they hear nothing), and a TCP ping goes out in parallel. No ack by the end
//    of the interval: the peer becomes suspect.
//  - Suspicion (Lifeguard, suspicion.h): the timeout starts at max and shrinks toward min with
//    each independent confirmation; on expiry the peer is declared dead. Only the first k
//    confirmations from distinct members are counted and re-gossiped; later ones change nothing
//    and are not passed on.
//    A node hearing itself suspected or declared dead refutes with a higher incarnation.
//  - Local health (Lifeguard): missed acks/nacks raise an awareness score that scales the probe
//    interval and timeout; successful probes lower it.
//  - Dissemination: updates are piggybacked on every UDP packet and gossiped to `gossip_nodes`
//    peers every gossip interval, each sent at most RetransmitLimit(n) times, fewest-sent first.
//  - Anti-entropy: periodic full-state push-pull over TCP with one random peer; joins use it.
//  - Leave: a node announces its own death (left) and stops probing.
//  - Load reports: each node's latest report is gossiped with a sequence number and an age.
//  - Who may say what (docs/membership.md): a node signs what it says about itself (alive, leave)
//    with its node key; a member's name is bound to the key of its first verified claim, and only
//    that key may announce, move or retire it (another key only once the name is free: see
//    SwimConfig::dead_node_reclaim_time). Anyone may accuse (suspect, dead), as in SWIM, but an
//    accusation never raises a member's incarnation above one the member signed itself, and a
//    node refutes only accusations at its own incarnation or proven by its own signature: so
//    incarnations move only by the owner's own steps, one at a time, and cannot be pushed to the
//    end of their range. Incarnations are 64-bit.
//
// Storage: members live in a MemberTable (member_table.h: one compact slot per member, strings
// interned process-wide). Load reports and Lifeguard suspicion state live in side tables that
// hold only members that have them.
//
// Code: swim.cc holds the public calls, dispatch, timers and sending; swim_probe.cc probing and
// local health; swim_suspicion.cc accusations, refutation and forgetting; swim_merge.cc claims,
// push-pull and load reports.
//
// Thread safety: none; one owner (the transport's strand) calls everything. Different Swim
// instances may run on different threads (the shared name tables lock internally).
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/clock.h"
#include "identity/node_key.h"
#include "membership/broadcast_queue.h"
#include "membership/config.h"
#include "membership/member_table.h"
#include "membership/suspicion.h"
#include "membership/wire.h"

namespace hivemesh::membership {

enum class Channel : uint8_t { kUdp, kTcp };

struct Outgoing {
  std::string to;  // host:port
  Channel channel = Channel::kUdp;
  std::string packet;  // plaintext packet (see wire.h); the transport may encrypt it
};

enum class EventType : uint8_t {
  kJoined,   // a node appeared
  kUpdated,  // its metadata changed
  kSuspect,  // it is suspected of having failed
  kAlive,    // a suspect, dead or left node is alive again
  kFailed,   // declared dead
  kLeft,     // left gracefully
  kRemoved,  // a dead or left node was forgotten
};
std::string_view EventTypeName(EventType t);

struct MemberEvent {
  EventType type;
  std::string node;
};

struct Output {
  std::vector<Outgoing> packets;
  std::vector<MemberEvent> events;
  std::optional<std::string> reply;  // HandleStream only: written back on the same connection
  // HandleStream only: the stream opened a watch of this node by the member named here; the
  // transport keeps the connection open (idle) after writing `reply`.
  std::optional<std::string> watched_by;
  void Append(Output&& other);
};

struct MemberInfo {
  std::string name;
  std::string addr;
  std::string meta;
  std::string key;  // the public key the member's name is bound to (empty: none yet)
  uint64_t incarnation = 0;
  MemberState state = MemberState::kAlive;
  SteadyTime since;  // when `state` last changed, on this node's clock
  uint8_t protocol_min = 1;
  uint8_t protocol_max = 1;
  // The latest load report heard for this node (empty if none).
  std::string load;
  uint64_t load_seq = 0;
  SteadyTime load_received;
  uint32_t load_age_ms = 0;  // age of the report when it was received
};

struct SwimStats {
  uint64_t probes = 0;
  uint64_t probe_failures = 0;
  uint64_t indirect_probes = 0;
  uint64_t acks_received = 0;
  uint64_t nacks_received = 0;
  uint64_t refutations = 0;
  uint64_t suspicions = 0;   // members this node started or joined suspecting
  uint64_t deaths = 0;       // members this node declared or heard declared dead
  uint64_t push_pulls = 0;   // exchanges started
  uint64_t packets_out = 0;  // UDP + TCP packets produced
  uint64_t bytes_out = 0;
  uint64_t packets_in = 0;
  uint64_t malformed_in = 0;  // packets that failed to decode
  uint64_t unknown_messages = 0;
  // Claims (alive, leave) refused, by why (each also counted nowhere else):
  uint64_t claims_bad_signature = 0;  // unsigned, or the signature does not verify
  uint64_t claims_name_taken = 0;     // a known name claimed by another key
  uint64_t claims_over_budget = 0;    // not checked: the signature-check budget was spent
  uint64_t claims_revoked = 0;        // signed by a key the mesh revoked (RevokeKey)
  uint64_t members_refused = 0;       // a new name while the table is full (max_members)
  uint64_t accusations_ignored = 0;   // of this node, at an incarnation it never signed
  uint64_t watch_closed = 0;          // watch connections closed without a word: probed at once
};

// A member this node keeps a watch connection to (SwimConfig::watchers).
struct WatchTarget {
  std::string name;
  std::string addr;
  bool operator==(const WatchTarget&) const = default;
};

class Swim {
 public:
  // `key` is this node's own key: it signs this node's claims. `seed` drives every random
  // choice, so a run is reproducible.
  Swim(SwimConfig config, std::string name, std::string addr, std::string meta,
       identity::NodeKey key, uint64_t seed, SteadyTime now);
  ~Swim();
  Swim(const Swim&) = delete;
  Swim& operator=(const Swim&) = delete;

  // Adopts `state` (a push-pull snapshot of a cluster that has already converged, typically
  // listing this node too) without gossiping it: members are merged as from a push-pull, but no
  // broadcast is queued, not even this node's own announcement, since every member is taken to
  // know it already. The snapshot is trusted: its claims are not checked (their keys, if any,
  // are bound). joined() turns true. Used by the simulator to start large clusters converged.
  // REQUIRES: called once, before any other call that changes membership.
  Output Bootstrap(const PushPull& state, SteadyTime now);

  // Sends a joining push-pull over TCP to each seed (host:port). joined() turns true when one
  // answers; the caller retries Join while it is false.
  Output Join(const std::vector<std::string>& seeds, SteadyTime now);
  bool joined() const { return joined_; }

  // Announces that this node leaves. It keeps gossiping (Tick) until LeaveDone(), then may stop.
  Output Leave(SteadyTime now);
  bool LeaveDone() const;

  // New metadata for this node: incarnation + 1, and the change is gossiped.
  Output UpdateMeta(std::string meta, SteadyTime now);
  // Refuses, for good, every claim signed by `key` (raw Ed25519): a member's key its mesh
  // revoked (docs/identity.md). The member bound to it is declared dead here at once, without
  // gossiping it (every node revokes it itself, from the issuer's signed list), and its
  // refutations and leaves are refused from then on (claims_revoked); its name is free for
  // another key once dead_node_reclaim_time passes. Taking a key already revoked is a no-op.
  Output RevokeKey(std::string key, SteadyTime now);
  // This node's own entry (its latest metadata), pushed over TCP to every live member at once,
  // beside the broadcast that reaches most of them: for a change every member must see within
  // seconds (the control versions of the node's metadata: a revocation, a policy, keys). It goes
  // as a digest reply, whose answer is empty, so a push costs one entry each way per member;
  // members on protocol 2 get it as a push-pull (and answer with their state). Counted in
  // push_pulls.
  Output PushSelfToAll(SteadyTime now);
  // Replaces this node's load report; it rides on gossip (no message of its own is sent now).
  void SetLoad(std::string payload, SteadyTime now);
  // Numbers this node's load reports from base + 1. A node that restarts must not count from 1
  // again, or peers holding its previous life's reports ignore the new ones until those go
  // stale: the transport passes the wall-clock time in milliseconds, which a new life exceeds
  // by more than the old one reported. REQUIRES: before the first SetLoad.
  void SetLoadSequenceBase(uint64_t base);

  // The members this node should watch now: up to `watchers` alive members speaking protocol 2,
  // its successors on a ring ordered by a hash of the names (so each member has about as many
  // watchers). Empty while leaving.
  std::vector<WatchTarget> WatchTargets() const;
  // The watch connection to `name` closed without a word (the transport tells a purposeful
  // close apart): a crashed process's kernel closes its connections. The member is probed at
  // once, directly and indirectly; if that fails, it is suspected with the short
  // watch_suspicion_timeout. At most once per two probe intervals per member.
  Output WatchClosed(std::string_view name, SteadyTime now);

  // Runs every timer due at or before `now`.
  Output Tick(SteadyTime now);
  // When Tick should next be called.
  SteadyTime NextTimer() const;

  // A packet from `from` (its source address): a UDP datagram, or the reply to a TCP exchange
  // this node started (channel kTcp).
  Output HandlePacket(std::string_view from, std::string_view packet, Channel channel,
                      SteadyTime now);
  // A packet another node sent over a TCP connection it opened (push-pull or TCP ping). The
  // answer, if any, is in Output::reply.
  Output HandleStream(std::string_view from, std::string_view packet, SteadyTime now);

  const std::string& name() const { return name_; }
  const std::string& addr() const { return addr_; }
  uint64_t incarnation() const { return incarnation_; }
  const std::string& public_key() const { return key_.public_key(); }
  int awareness() const { return awareness_; }
  const SwimStats& stats() const { return stats_; }
  const SwimConfig& config() const { return config_; }

  // Every member including this node, sorted by name (a copy).
  std::vector<MemberInfo> Members() const;
  // A copy of what this node holds about `name`; nullopt if unknown or `name` is this node.
  std::optional<MemberInfo> Find(std::string_view name) const;
  // Only the state of `name` (cheap: no copy of strings); nullopt as for Find.
  std::optional<MemberState> StateOf(std::string_view name) const;
  size_t NumMembers() const { return table_.size(); }  // known members, excluding this node
  int NumAlive() const;                                // alive + suspect, including this node
  size_t QueuedBroadcasts() const;

 private:
  static constexpr uint32_t kNoId = MemberTable::kNoId;
  using Member = MemberTable::Member;

  // A member in kSuspect: its Lifeguard suspicion, and the generation of its live timer.
  struct Suspected {
    Suspicion suspicion;
    uint64_t generation = 0;  // a suspicion timer with another generation is stale
  };
  // The latest load report heard from a member.
  struct LoadState {
    std::string load;
    uint64_t seq = 0;
    SteadyTime received;
    uint32_t age_ms = 0;
  };
  // A probe this node sent, until it is acked or its interval ends.
  struct Probe {
    uint32_t target = 0;  // name id
    SteadyTime start;
    int expected_nacks = 0;
    int nacks = 0;
    bool watch = false;  // sent because the member's watch connection closed
  };
  // An indirect ping this node relays for another member.
  struct Relay {
    uint32_t seq = 0;  // the requester's sequence number
    std::string to;    // the requester's address
    bool want_nack = true;
  };
  enum class TimerKind : uint8_t { kProbeDeadline, kProbeEnd, kRelayDeadline, kSuspicion };
  struct Timer {
    SteadyTime at;
    TimerKind kind;
    uint32_t seq;         // probes and relays
    uint32_t node;        // suspicions: the member's name id
    uint64_t generation;  // suspicions: matches Suspected::generation while valid
    bool operator>(const Timer& o) const { return at > o.at; }
  };

  // swim.cc: decoding, dispatch, timers, sending and gossip.
  // Decodes a received packet, counting it (and counting it malformed if it fails).
  std::optional<DecodedPacket> Decode(std::string_view packet);
  void Dispatch(std::string_view from, const Message& m, Channel channel, SteadyTime now,
                Output& out);
  void PushTimer(const Timer& t);
  void Gossip(SteadyTime now, Output& out);
  void SendUdp(const std::string& to, std::vector<std::string> messages, SteadyTime now,
               Output& out);
  // The answer to a stream (HandleStream), in Output::reply.
  void Reply(const Message& m, Output& out);
  void SendTcp(const std::string& to, const Message& m, Output& out);
  void QueueBroadcast(const std::string& key, const Message& m);
  // Name ids of up to `k` distinct random members (never `exclude`, a name id or kNoId).
  std::vector<uint32_t> RandomMembers(size_t k, uint32_t exclude, bool include_recently_dead,
                                      SteadyTime now);
  MemberInfo InfoOf(uint32_t id, const Member& m) const;

  // swim_probe.cc: probing, relaying indirect probes, local health.
  void OnPing(std::string_view from, const Ping& m, Channel channel, SteadyTime now, Output& out);
  void OnIndirectPing(std::string_view from, const IndirectPing& m, SteadyTime now, Output& out);
  void OnAck(const Ack& m, SteadyTime now, Output& out);
  void OnNack(const Nack& m);
  void StartProbe(SteadyTime now, Output& out);
  // Pings `target_id` now; its deadlines run as any probe's.
  void ProbeMember(uint32_t target_id, const Member& target, bool watch, SteadyTime now,
                   Output& out);
  void ProbeDeadline(uint32_t seq, SteadyTime now, Output& out);
  void ProbeEnd(uint32_t seq, SteadyTime now, Output& out);
  void RelayDeadline(uint32_t seq, Output& out);
  void AddToProbeList(uint32_t node);
  void ApplyAwareness(int delta);
  Millis Scaled(Millis base) const;

  // swim_suspicion.cc: accusations (suspect, dead, leave), refutation, forgetting the departed.
  // `fast` > 0: this node's own suspicion after a watch closed and a probe failed: it expires
  // after `fast` (a running suspicion is shortened to it).
  void OnSuspect(const Suspect& m, SteadyTime now, Output& out, Millis fast = Millis(0));
  void OnDead(const Dead& m, SteadyTime now, Output& out);
  void SuspicionExpired(uint32_t node, uint64_t generation, SteadyTime now, Output& out);
  void Refute(uint64_t accused_incarnation, SteadyTime now);
  void SetState(uint32_t id, Member& m, MemberState state, SteadyTime now);
  void Reap(SteadyTime now, Output& out);
  // Forgets the member that departed longest ago, if any, to make room for a new one.
  bool MakeRoom(SteadyTime now, Output& out);
  // Removes departed member `id` from the table, the probe list and the side tables.
  void Forget(uint32_t id, Output& out);

  // swim_merge.cc: claims (alive), remote state (push-pull, anti-entropy), load reports.
  void OnAlive(const Alive& m, SteadyTime now, Output& out);
  void MergePushPull(const PushPull& m, SteadyTime now, Output& out);
  void OnLoad(const Load& m, SteadyTime now);
  void StartPushPull(SteadyTime now, Output& out);
  void Reconnect(SteadyTime now, Output& out);
  PushPull LocalState(bool join) const;
  // This node's own push-pull entry, and the one for member `id`.
  PushPullMember SelfEntry() const;
  PushPullMember EntryOf(uint32_t id) const;
  Digest LocalDigest() const;
  // The answer to a digest (see wire.h): the entries this node knows better, and the names the
  // digest knows better.
  DigestReply AnswerDigest(const Digest& d) const;
  // The reply to a digest this node sent to `from`: merges what it carries and, if `from`
  // wants entries, sends them on a new connection.
  void OnDigestReply(std::string_view from, const DigestReply& m, SteadyTime now, Output& out);
  // Signs this node's alive message anew (after its incarnation or metadata changed).
  void SignSelf();
  // True if `sig` is `key`'s signature of `bytes`, within the signature-check budget; counts
  // why not. Always true while adopting a trusted snapshot (Bootstrap).
  bool CheckClaim(std::string_view key, std::string_view bytes, std::string_view sig,
                  SteadyTime now);

  const SwimConfig config_;
  const std::string name_;
  const std::string addr_;
  std::string meta_;
  const identity::NodeKey key_;
  uint64_t incarnation_ = 0;
  Alive self_alive_;  // this node's alive message at incarnation_, signed
  bool joined_ = false;
  bool leaving_ = false;
  int awareness_ = 0;
  uint32_t next_seq_ = 0;
  uint64_t next_generation_ = 0;
  uint64_t load_seq_ = 0;
  std::mt19937_64 rng_;

  MemberTable table_;                                      // every member but this node
  std::unordered_map<uint32_t, LoadState> loads_;          // latest load report, by name id
  std::unordered_map<uint32_t, Suspected> suspicions_;     // exactly the members in kSuspect
  std::unordered_map<uint32_t, SteadyTime> watch_probed_;  // last WatchClosed probe, by name id
  // Addresses this node sent a digest to, and when: only their replies may ask for entries.
  std::unordered_map<std::string, SteadyTime> digests_sent_;
  bool quiet_ = false;                               // Bootstrap: merge without queueing broadcasts
  bool trusted_ = false;                             // Bootstrap: claims are adopted unchecked
  std::set<std::string, std::less<>> revoked_keys_;  // RevokeKey: their claims are refused
  double check_tokens_ = 0;                          // the signature-check budget (a token bucket)
  SteadyTime check_refilled_;
  int num_alive_ = 1;                 // alive + suspect, including this node
  std::vector<uint32_t> probe_list_;  // name ids of exactly the members, in probing order
  size_t probe_index_ = 0;
  std::unordered_map<uint32_t, std::unique_ptr<Probe>> probes_;
  std::unordered_map<uint32_t, Relay> relays_;
  std::unique_ptr<BroadcastQueue> broadcasts_;
  std::vector<Timer> timers_;  // a min-heap on `at`

  SteadyTime next_probe_;
  SteadyTime next_gossip_;
  SteadyTime next_push_pull_;
  SteadyTime next_reap_;
  SteadyTime next_reconnect_;
  // Dead and left members in the order they went (name id, since): Reap looks only at the front.
  std::deque<std::pair<uint32_t, SteadyTime>> departed_;

  MemberInfo self_load_;  // this node's own load report
  SwimStats stats_;
};

}  // namespace hivemesh::membership
