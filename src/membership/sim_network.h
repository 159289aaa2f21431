// SimCluster: a discrete-event simulator that runs the real Swim state machine (swim.h) for N
// nodes in one process, over a simulated network, in virtual time.
//
// Nothing here reads a real clock, sleeps or starts a thread. The cluster owns a virtual clock
// and one event queue ordered by (time, insertion order): packet deliveries, each node's next
// timer (re-queued from Swim::NextTimer() after every call into that node) and join retries.
// Every random choice (latency jitter, loss, each node's Swim seed) comes from `options.seed`, so
// the same options and the same sequence of calls give the same event trace.
//
// Network model:
//  - Latency: every one-way hop takes base_latency + uniform[0, jitter).
//  - UDP (Channel::kUdp): each datagram is lost independently with probability `loss`.
//  - TCP (Channel::kTcp): an exchange is reliable. The request reaches the target's
//    HandleStream after a connection handshake (one round trip) plus one hop; the Output::reply,
//    if any, reaches the opener's HandlePacket(from, reply, kTcp) one hop later. The exchange
//    fails silently (no reply, as a connect timeout would) when the endpoints are partitioned or
//    either side is down when the request or the reply arrives.
//  - Partitions: each node belongs to one group (0 by default); packets only flow within a group.
//  - Crash: the node stops processing; packets to it vanish and it sends nothing. Packets it
//    sent before crashing are still delivered. Restart builds a fresh Swim (same name and
//    address, incarnation 0) that joins through seeds, retrying every `join_retry`.
//  - Leave: Swim::Leave(); the node keeps running until Swim::LeaveDone(), then stops.
//
// Nodes are numbered 0..size()-1 and named "n<i>" at address "n<i>:7946".
//
// Thread safety: none; one thread owns a SimCluster and everything it returns.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/clock.h"
#include "membership/config.h"
#include "membership/swim.h"

namespace hivemesh::membership {

using Micros = std::chrono::microseconds;

struct SimOptions {
  // The profile every node runs.
  SwimConfig swim = SwimConfig::Lan();
  // One-way latency = base_latency + uniform[0, jitter). A LAN: about half a millisecond.
  Micros base_latency{300};
  Micros jitter{400};
  // Probability that one UDP datagram is lost (independently of every other).
  double loss = 0.0;
  // Seeds the network's choices and, derived from it, every node's Swim.
  uint64_t seed = 1;
  // How often a node that has not joined yet calls Swim::Join again.
  Millis join_retry{1000};
  // Whether MemberEvents are recorded in events() (switch off for huge bootstraps).
  bool record_events = true;
};

// One MemberEvent, as emitted by `observer`'s Swim at virtual time `at`.
struct SimEvent {
  SteadyTime at;
  int observer = 0;
  EventType type = EventType::kJoined;
  int subject = -1;  // node index; -1 if the name is not a node of this cluster
  bool operator==(const SimEvent&) const = default;
};

// Traffic a node produced (requests and TCP replies it wrote), since the last ResetCounters().
struct SimCounters {
  uint64_t udp_packets = 0;
  uint64_t udp_bytes = 0;
  uint64_t tcp_packets = 0;  // TCP requests opened and replies written
  uint64_t tcp_bytes = 0;
  uint64_t packets() const { return udp_packets + tcp_packets; }
  uint64_t bytes() const { return udp_bytes + tcp_bytes; }
};

// Whole-network statistics since construction.
struct SimNetworkStats {
  uint64_t events = 0;           // queue entries processed
  uint64_t udp_lost = 0;         // dropped by `loss`
  uint64_t partitioned = 0;      // dropped because the endpoints are in different groups
  uint64_t to_down_node = 0;     // dropped because the target is crashed or stopped
  uint64_t unknown_address = 0;  // addressed to no node of this cluster
  uint64_t timer_stalls = 0;     // Tick() left NextTimer() at or before `now` (a Swim bug)
};

class SimCluster {
 public:
  explicit SimCluster(SimOptions options);
  ~SimCluster();
  SimCluster(const SimCluster&) = delete;
  SimCluster& operator=(const SimCluster&) = delete;

  // ---- Building a cluster ----

  // Creates a node (not joined, not running until Join or Bootstrap) and returns its index.
  int AddNode(std::string meta = "");
  // Adds `n` nodes and makes them one converged cluster without network traffic: one PushPull
  // snapshot listing all of them (alive, incarnation 0) is built once and every node adopts it
  // with Swim::Bootstrap, which queues no broadcast (the cluster is taken to have converged
  // already), so the cluster is at rest from the start. Costs n^2 member merges and no
  // encoding; nothing is counted as traffic and, when `keep_events` is false, the merges'
  // events are not recorded.
  // REQUIRES: size() == 0.
  void Bootstrap(int n, std::string meta = "", bool keep_events = false);
  // Starts node `i` (if it is not running) and has it join through `seeds` (node indices),
  // retrying every options.join_retry until Swim::joined(). No seeds: it starts a cluster alone.
  void Join(int i, const std::vector<int>& seeds);

  // ---- Faults and changes ----

  // Node `i` stops: no timers, no packets in or out.
  void Crash(int i);
  // Node `i` comes back as a fresh Swim (incarnation 0, same name and address) and joins
  // through `seeds`. REQUIRES: node `i` is down (crashed or left).
  void Restart(int i, const std::vector<int>& seeds);
  // Node `i` leaves gracefully; it stops once Swim::LeaveDone().
  void Leave(int i);
  // Node `i` announces new metadata.
  void UpdateMeta(int i, std::string meta);
  // Splits the network: nodes in different listed groups cannot reach each other; nodes not
  // listed form one more group together.
  void Partition(const std::vector<std::vector<int>>& groups);
  void Heal();

  // ---- Running ----

  SteadyTime now() const { return now_; }
  // Processes every event due at or before `until`, then sets now() = until.
  void RunUntil(SteadyTime until);
  void RunFor(Nanos d) { RunUntil(now_ + d); }
  // Runs until `done()` holds (checked every `check_every`) or `limit` has passed. Returns
  // whether `done()` held.
  bool RunUntilTrue(const std::function<bool()>& done, Nanos limit, Nanos check_every);

  // ---- Observing ----

  int size() const { return static_cast<int>(nodes_.size()); }
  static std::string NameOf(int i);
  static std::string AddrOf(int i);
  // REQUIRES: node `i` has a Swim (it was added; a crashed node keeps its last one).
  const Swim& node(int i) const { return *nodes_[i].swim; }
  // Running: started and neither crashed nor stopped after leaving.
  bool up(int i) const { return nodes_[i].up; }
  int NumUp() const;
  // The state node `observer` holds for `subject`, or nullopt if it does not know it.
  std::optional<MemberState> StateAt(int observer, int subject) const;
  // Every up node sees every up node alive and every down node not alive.
  bool Converged() const;
  // How many up nodes other than `subject` see `subject` in `state`.
  int CountSeeing(int subject, MemberState state) const;

  const std::vector<SimEvent>& events() const { return events_; }
  void set_record_events(bool on) { options_.record_events = on; }
  // Called for every event as it happens (in addition to recording), e.g. for streaming stats.
  void set_event_listener(std::function<void(const SimEvent&)> f) { listener_ = std::move(f); }

  const SimCounters& counters(int i) const { return nodes_[i].counters; }
  SimCounters TotalCounters() const;
  void ResetCounters();
  const SimNetworkStats& network_stats() const { return stats_; }

 private:
  enum class Kind : uint8_t { kTimer, kUdp, kTcpRequest, kTcpReply, kJoinRetry };
  struct Event {
    SteadyTime at;
    uint64_t seq;  // insertion order: breaks ties so runs are reproducible
    Kind kind;
    int to;
    int from;
    uint64_t epoch;  // kTimer: timer version; others: epoch of the node they belong to
    std::string packet;
  };
  struct Later {
    bool operator()(const Event& a, const Event& b) const {
      return a.at != b.at ? a.at > b.at : a.seq > b.seq;
    }
  };
  struct Node {
    std::unique_ptr<Swim> swim;
    std::optional<identity::NodeKey> key;  // kept across restarts, as a real node's
    std::string meta;
    bool up = false;
    bool leaving = false;        // Leave() called; stops at LeaveDone()
    uint64_t epoch = 0;          // bumped at every (re)start and crash
    uint64_t timer_version = 0;  // only the newest queued timer event is live
    SteadyTime timer_at = SteadyTime::max();
    std::vector<int> seeds;
    SimCounters counters;
    int group = 0;
  };

  void Push(SteadyTime at, Kind kind, int to, int from, uint64_t epoch, std::string packet);
  Nanos Hop();
  bool Reachable(int a, int b) const { return nodes_[a].group == nodes_[b].group; }
  // Sends `out`'s packets from node `i`, records its events and re-arms its timer.
  void Handle(int i, Output&& out);
  void Rearm(int i);
  void Dispatch(Event& e);
  void StartSwim(int i);
  int IndexOfAddr(std::string_view addr) const;
  int IndexOfName(std::string_view name) const;
  uint64_t NodeSeed(int i, uint64_t epoch) const;

  SimOptions options_;
  SteadyTime now_{};
  uint64_t next_seq_ = 0;
  std::mt19937_64 rng_;
  std::vector<Event> queue_;  // a heap ordered by Later (earliest first)
  std::vector<Node> nodes_;
  std::vector<SimEvent> events_;
  std::function<void(const SimEvent&)> listener_;
  SimNetworkStats stats_;
};

}  // namespace hivemesh::membership
