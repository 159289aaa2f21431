#include "membership/sim_network.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "base/strings.h"
#include "membership/wire.h"

namespace hivemesh::membership {
namespace {

constexpr std::string_view kPort = ":7946";

uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Parses "n<digits>" at the start of `s`; returns the number and how many characters it took,
// or -1.
int ParseIndex(std::string_view s, size_t* used) {
  if (s.size() < 2 || s[0] != 'n') return -1;
  int64_t v = 0;
  size_t k = 1;
  for (; k < s.size() && s[k] >= '0' && s[k] <= '9' && k < 11; ++k) v = v * 10 + (s[k] - '0');
  if (k == 1 || v > INT32_MAX) return -1;
  *used = k;
  return static_cast<int>(v);
}

}  // namespace

SimCluster::SimCluster(SimOptions options)
    : options_(std::move(options)),
      // Virtual time starts an hour after the epoch, so `now - x` never underflows in Swim.
      now_(SteadyTime{} + std::chrono::hours(1)),
      rng_(SplitMix64(options_.seed)) {}

SimCluster::~SimCluster() = default;

std::string SimCluster::NameOf(int i) { return StrCat("n", i); }
std::string SimCluster::AddrOf(int i) { return StrCat("n", i, kPort); }

int SimCluster::IndexOfName(std::string_view name) const {
  size_t used = 0;
  int i = ParseIndex(name, &used);
  if (i < 0 || used != name.size() || i >= size()) return -1;
  return i;
}

int SimCluster::IndexOfAddr(std::string_view addr) const {
  size_t used = 0;
  int i = ParseIndex(addr, &used);
  if (i < 0 || addr.substr(used) != kPort || i >= size()) return -1;
  return i;
}

uint64_t SimCluster::NodeSeed(int i, uint64_t epoch) const {
  return SplitMix64(SplitMix64(options_.seed) ^ SplitMix64(static_cast<uint64_t>(i) << 20 ^ epoch));
}

int SimCluster::AddNode(std::string meta) {
  Node n;
  n.meta = std::move(meta);
  // A key from the run's seed and the node's index: the same run after run.
  std::string seed(32, '\0');
  for (size_t k = 0; k < seed.size(); k += 8) {
    const uint64_t word = SplitMix64(NodeSeed(static_cast<int>(nodes_.size()), 0) ^ (k + 1));
    std::memcpy(seed.data() + k, &word, 8);
  }
  n.key = identity::NodeKey::FromSeed(seed);
  nodes_.push_back(std::move(n));
  return size() - 1;
}

void SimCluster::StartSwim(int i) {
  Node& n = nodes_[i];
  ++n.epoch;
  n.swim = std::make_unique<Swim>(options_.swim, NameOf(i), AddrOf(i), n.meta, *n.key,
                                  NodeSeed(i, n.epoch), now_);
  n.up = true;
  n.leaving = false;
  ++n.timer_version;
  n.timer_at = SteadyTime::max();
}

void SimCluster::Bootstrap(int n, std::string meta, bool keep_events) {
  PushPull snapshot;
  snapshot.join = false;
  snapshot.members.reserve(n);
  for (int k = 0; k < n; ++k) {
    int i = AddNode(meta);
    // Each entry is its node's own signed claim, as a real push-pull carries it (the snapshot is
    // adopted unchecked, but members pass it on to nodes that join later).
    PushPullMember entry{NameOf(i), AddrOf(i), 0, MemberState::kAlive, nodes_[i].meta};
    entry.key = nodes_[i].key->public_key();
    entry.sig = nodes_[i].key->Sign(AliveClaimBytes(AliveOf(entry)));
    snapshot.members.push_back(std::move(entry));
  }
  const bool record = options_.record_events;
  options_.record_events = keep_events;
  auto listener = std::move(listener_);
  listener_ = nullptr;
  for (int i = 0; i < n; ++i) {
    StartSwim(i);
    Handle(i, nodes_[i].swim->Bootstrap(snapshot, now_));
  }
  options_.record_events = record;
  listener_ = std::move(listener);
  ResetCounters();
}

void SimCluster::Join(int i, const std::vector<int>& seeds) {
  if (!nodes_[i].up) StartSwim(i);
  Node& n = nodes_[i];
  n.seeds = seeds;
  std::vector<std::string> addrs;
  for (int s : seeds) addrs.push_back(AddrOf(s));
  Handle(i, n.swim->Join(addrs, now_));
  if (seeds.empty()) return;  // the first node: it starts the cluster alone
  Push(now_ + options_.join_retry, Kind::kJoinRetry, i, i, n.epoch, "");
}

void SimCluster::Crash(int i) {
  Node& n = nodes_[i];
  n.up = false;
  ++n.epoch;
  ++n.timer_version;
  n.timer_at = SteadyTime::max();
}

void SimCluster::Restart(int i, const std::vector<int>& seeds) {
  StartSwim(i);
  Join(i, seeds);
}

void SimCluster::Leave(int i) {
  Node& n = nodes_[i];
  if (!n.up) return;
  n.leaving = true;
  Handle(i, n.swim->Leave(now_));
}

void SimCluster::UpdateMeta(int i, std::string meta) {
  Node& n = nodes_[i];
  n.meta = meta;
  if (n.up) Handle(i, n.swim->UpdateMeta(std::move(meta), now_));
}

void SimCluster::Partition(const std::vector<std::vector<int>>& groups) {
  for (Node& n : nodes_) n.group = 0;
  for (size_t g = 0; g < groups.size(); ++g) {
    for (int i : groups[g]) nodes_[i].group = static_cast<int>(g) + 1;
  }
}

void SimCluster::Heal() {
  for (Node& n : nodes_) n.group = 0;
}

void SimCluster::Push(SteadyTime at, Kind kind, int to, int from, uint64_t epoch,
                      std::string packet) {
  queue_.push_back(Event{at, next_seq_++, kind, to, from, epoch, std::move(packet)});
  std::push_heap(queue_.begin(), queue_.end(), Later{});
}

Nanos SimCluster::Hop() {
  Nanos d = options_.base_latency;
  if (options_.jitter.count() > 0) {
    d += Micros(static_cast<int64_t>(rng_() % static_cast<uint64_t>(options_.jitter.count())));
  }
  return d;
}

void SimCluster::Handle(int i, Output&& out) {
  Node& n = nodes_[i];
  for (Outgoing& p : out.packets) {
    const int j = IndexOfAddr(p.to);
    if (p.channel == Channel::kUdp) {
      n.counters.udp_packets++;
      n.counters.udp_bytes += p.packet.size();
    } else {
      n.counters.tcp_packets++;
      n.counters.tcp_bytes += p.packet.size();
    }
    if (j < 0) {
      stats_.unknown_address++;
      continue;
    }
    if (p.channel == Channel::kUdp) {
      if (options_.loss > 0 && static_cast<double>(rng_() >> 11) * 0x1.0p-53 < options_.loss) {
        stats_.udp_lost++;
        continue;
      }
      Push(now_ + Hop(), Kind::kUdp, j, i, 0, std::move(p.packet));
    } else {
      // Connection handshake (one round trip), then the request.
      const Nanos d = Hop() + Hop() + Hop();
      Push(now_ + d, Kind::kTcpRequest, j, i, n.epoch, std::move(p.packet));
    }
  }
  if (options_.record_events || listener_) {
    for (const MemberEvent& ev : out.events) {
      SimEvent se{now_, i, ev.type, IndexOfName(ev.node)};
      if (listener_) listener_(se);
      if (options_.record_events) events_.push_back(se);
    }
  }
  if (n.leaving && n.swim->LeaveDone()) {
    n.up = false;
    n.leaving = false;
    ++n.epoch;
    ++n.timer_version;
    n.timer_at = SteadyTime::max();
    return;
  }
  Rearm(i);
}

void SimCluster::Rearm(int i) {
  Node& n = nodes_[i];
  if (!n.up) return;
  SteadyTime t = n.swim->NextTimer();
  if (t == SteadyTime::max()) return;
  if (t < now_) t = now_;
  if (t == n.timer_at) return;
  n.timer_at = t;
  Push(t, Kind::kTimer, i, i, ++n.timer_version, "");
}

void SimCluster::Dispatch(Event& e) {
  Node& to = nodes_[e.to];
  // A packet reaches `to` only if it is up and not cut off from the sender (counted otherwise).
  auto deliverable = [&] {
    if (!to.up) {
      stats_.to_down_node++;
      return false;
    }
    if (!Reachable(e.from, e.to)) {
      stats_.partitioned++;
      return false;
    }
    return true;
  };
  switch (e.kind) {
    case Kind::kTimer: {
      if (!to.up || e.epoch != to.timer_version) return;
      to.timer_at = SteadyTime::max();
      Handle(e.to, to.swim->Tick(now_));
      if (to.up && to.swim->NextTimer() <= now_) {
        // Tick() should have advanced every due timer; avoid spinning on a stuck one.
        stats_.timer_stalls++;
        to.timer_at = now_ + Millis(1);
        Push(to.timer_at, Kind::kTimer, e.to, e.to, ++to.timer_version, "");
      }
      return;
    }
    case Kind::kJoinRetry: {
      if (!to.up || e.epoch != to.epoch || to.swim->joined()) return;
      Join(e.to, std::vector<int>(to.seeds));
      return;
    }
    case Kind::kUdp: {
      if (!deliverable()) return;
      Handle(e.to, to.swim->HandlePacket(AddrOf(e.from), e.packet, Channel::kUdp, now_));
      return;
    }
    case Kind::kTcpRequest: {
      if (!deliverable()) return;
      Output out = to.swim->HandleStream(AddrOf(e.from), e.packet, now_);
      std::optional<std::string> reply = std::move(out.reply);
      Handle(e.to, std::move(out));
      if (reply.has_value()) {
        to.counters.tcp_packets++;
        to.counters.tcp_bytes += reply->size();
        Push(now_ + Hop(), Kind::kTcpReply, e.from, e.to, e.epoch, std::move(*reply));
      }
      return;
    }
    case Kind::kTcpReply: {
      // The connection belongs to the opener's incarnation of the process that sent it.
      if (!to.up || e.epoch != to.epoch) {
        stats_.to_down_node++;
        return;
      }
      if (!Reachable(e.from, e.to)) {
        stats_.partitioned++;
        return;
      }
      Handle(e.to, to.swim->HandlePacket(AddrOf(e.from), e.packet, Channel::kTcp, now_));
      return;
    }
  }
}

void SimCluster::RunUntil(SteadyTime until) {
  while (!queue_.empty() && queue_.front().at <= until) {
    std::pop_heap(queue_.begin(), queue_.end(), Later{});
    Event e = std::move(queue_.back());
    queue_.pop_back();
    now_ = std::max(now_, e.at);
    stats_.events++;
    Dispatch(e);
  }
  now_ = std::max(now_, until);
}

bool SimCluster::RunUntilTrue(const std::function<bool()>& done, Nanos limit, Nanos check_every) {
  const SteadyTime deadline = now_ + limit;
  while (true) {
    if (done()) return true;
    if (now_ >= deadline) return false;
    RunUntil(std::min(now_ + check_every, deadline));
  }
}

int SimCluster::NumUp() const {
  int k = 0;
  for (const Node& n : nodes_) k += n.up ? 1 : 0;
  return k;
}

std::optional<MemberState> SimCluster::StateAt(int observer, int subject) const {
  const Node& n = nodes_[observer];
  if (!n.swim) return std::nullopt;
  return n.swim->StateOf(NameOf(subject));
}

bool SimCluster::Converged() const {
  const int up = NumUp();
  for (int i = 0; i < size(); ++i) {
    if (!nodes_[i].up) continue;
    if (nodes_[i].swim->NumAlive() != up) return false;
    for (int j = 0; j < size(); ++j) {
      if (j == i) continue;
      const std::optional<MemberState> s = StateAt(i, j);
      const bool alive = s.has_value() && *s == MemberState::kAlive;
      if (alive != nodes_[j].up) return false;
    }
  }
  return true;
}

int SimCluster::CountSeeing(int subject, MemberState state) const {
  int k = 0;
  for (int i = 0; i < size(); ++i) {
    if (i == subject || !nodes_[i].up) continue;
    const std::optional<MemberState> s = StateAt(i, subject);
    k += s.has_value() && *s == state ? 1 : 0;
  }
  return k;
}

SimCounters SimCluster::TotalCounters() const {
  SimCounters t;
  for (const Node& n : nodes_) {
    t.udp_packets += n.counters.udp_packets;
    t.udp_bytes += n.counters.udp_bytes;
    t.tcp_packets += n.counters.tcp_packets;
    t.tcp_bytes += n.counters.tcp_bytes;
  }
  return t;
}

void SimCluster::ResetCounters() {
  for (Node& n : nodes_) n.counters = SimCounters{};
}

}  // namespace hivemesh::membership
