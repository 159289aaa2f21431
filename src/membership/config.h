// SwimConfig: every tunable of the SWIM + Lifeguard membership protocol, in one place, with the
// default and the reason for it. Named profiles (LAN, WAN, Local) derive from one base, as in
// HashiCorp memberlist's DefaultLANConfig / DefaultWANConfig / DefaultLocalConfig, whose values
// are the reference these defaults follow.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace hivemesh::membership {

using Millis = std::chrono::milliseconds;

struct SwimConfig {
  // How often a node probes one random peer. Failure detection time scales with it; one second
  // keeps a LAN's per-node probe load at one ping per second regardless of cluster size (SWIM).
  Millis probe_interval{1000};
  // How long a direct ping waits for its ack before indirect probing starts. Must sit well above
  // the network's 99th percentile RTT (LAN: 500 ms).
  Millis probe_timeout{500};
  // Peers asked to ping a target on our behalf when the direct ping fails. Three give independent
  // paths so one lossy link does not condemn a healthy node (SWIM's k).
  int indirect_checks = 3;
  // Suspicion timeout = suspicion_mult x max(1, log10(n)) x probe_interval: long enough for the
  // suspect to hear the rumour and refute it, growing slowly with cluster size.
  int suspicion_mult = 4;
  // Lifeguard: the timeout starts at max = this x the minimum and shrinks toward the minimum as
  // independent confirmations arrive, so a lone (perhaps slow) accuser cannot kill a node fast.
  int suspicion_max_timeout_mult = 6;
  // Each piggybacked update is sent retransmit_mult x ceil(log10(n + 1)) times: enough to reach
  // every node with high probability (epidemic spread), without resending forever.
  int retransmit_mult = 4;
  // How often a node gossips queued updates to gossip_nodes random peers. 200 ms x fan-out 3
  // spreads an update through 1000 nodes in about 2 s.
  Millis gossip_interval{200};
  int gossip_nodes = 3;
  // Dead nodes still receive gossip for this long, so a node that was wrongly declared dead
  // hears of it and refutes.
  Millis gossip_to_the_dead_time{30000};
  // Full state exchange over TCP with one random peer (anti-entropy): repairs anything gossip
  // missed. Scaled up past 32 nodes: interval x (ceil(log2 n - log2 32) + 1).
  Millis push_pull_interval{30000};
  // TCP connect + exchange limit for push-pull, TCP pings and joins.
  Millis tcp_timeout{10000};
  // Local health (Lifeguard): a node that misses acks and nacks slows its own probing and
  // lengthens its timeouts by up to this factor, so an overloaded node does not accuse others.
  int awareness_max_multiplier = 8;
  // Largest UDP payload (before encryption overhead); fits a 1500-byte Ethernet MTU.
  int udp_buffer_size = 1400;
  // A name is bound to the key of the node that first claimed it (docs/membership.md, "Who may
  // say what"). Another key may take it over only once its node left or has been dead this long;
  // 0 = never: only after the old entry is forgotten (dead_node_forget_time). Names are
  // identities: whoever holds another key must not steal one, and a node that merely looks dead
  // to some members (a partition, a forged accusation) must not lose its name. A node that moves
  // to a new address keeps its key and simply announces the new address.
  Millis dead_node_reclaim_time{0};
  // Dead members are forgotten (removed from the table) after this long. Long, so that a
  // partition that heals within it reconnects (below); left members go after the same time.
  Millis dead_node_forget_time{3600000};
  // Every reconnect_interval a node tries a push-pull with one random member it holds dead
  // (not left): after a partition heals, the two sides find each other again within about
  // this interval even though neither gossips to the other any more (Serf's reconnect).
  Millis reconnect_interval{30000};

  // Most members a node keeps (alive, suspect, dead and left, itself excluded). Past it, a new
  // name is taken only if a departed member can be forgotten to make room; otherwise the claim
  // is dropped and counted. Each member costs a few KiB with its metadata, so this bounds what
  // forged joins can make a node hold (about 30 MiB at 4096). An edge site or a fleet region is
  // far smaller; larger fleets run several meshes.
  int max_members = 4096;
  // Ed25519 signature checks of members' claims per second (a token bucket of this rate, with a
  // burst of max(rate, 2 x max_members) so that a join's push-pull of a full table passes at
  // once). A check takes about 70 us: this caps what forged claims can cost the gossip thread
  // (7% of a core at 1000/s) while real claims (joins, metadata changes, refutations) stay far
  // below it. Claims over the budget are dropped and counted; push-pull repairs them later.
  int max_claim_checks_per_second = 1000;

  // Each node keeps an idle TCP "watch" connection to this many other members (its successors on
  // a ring ordered by a hash of the names), so each member is watched by about as many. A crashed
  // process's kernel closes its connections at once: a watch that closes without a word makes
  // the watcher probe the member at once (not at its probe turn), and a failed probe starts a
  // suspicion of `watch_suspicion_timeout` instead of the usual minutes-scale one. A hung node
  // (no close) is found by the usual probes. 0: no watches.
  int watchers = 3;
  // The suspicion that follows a watch closed and a failed probe. 0: probe_interval.
  Millis watch_suspicion_timeout{0};

  // Protocol versions this node speaks (append-only message types; see wire.h).
  // 2: watch connections (Watch). Members announcing 1 are not watched.
  // 3: anti-entropy by digest (Digest, DigestReply). Members announcing less get full push-pulls.
  uint8_t protocol_min = 1;
  uint8_t protocol_max = 3;

  absl::Status Validate() const;

  static SwimConfig Lan();    // memberlist DefaultLANConfig
  static SwimConfig Wan();    // memberlist DefaultWANConfig: slower, more tolerant
  static SwimConfig Local();  // memberlist DefaultLocalConfig: loopback / one host
  // "lan", "wan" or "local".
  static absl::StatusOr<SwimConfig> Profile(const std::string& name);
};

// Suspicion minimum timeout: suspicion_mult x max(1, log10(max(1, n))) x probe_interval.
Millis SuspicionMinTimeout(const SwimConfig& c, int cluster_size);
// Retransmit limit for a piggybacked update: retransmit_mult x ceil(log10(n + 1)).
int RetransmitLimit(const SwimConfig& c, int cluster_size);
// Push-pull interval scaled for cluster size (memberlist pushPullScale).
Millis PushPullInterval(const SwimConfig& c, int cluster_size);
// Lifeguard: confirmations needed = suspicion_mult - 2 (0 if n - 2 < that).
int SuspicionConfirmations(const SwimConfig& c, int cluster_size);
// (SuspicionTimeout, the curve between the two, is in suspicion.h.)

}  // namespace hivemesh::membership
