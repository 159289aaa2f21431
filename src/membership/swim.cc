#include "membership/swim.h"

#include <algorithm>
#include <mutex>
#include <set>

#include "base/strings.h"
#include "membership/string_table.h"

namespace hivemesh::membership {

namespace {
// Bytes of load reports one packet may carry on top of its own messages.
constexpr size_t kLoadBudget = 256;
// An unchanged load report is re-announced every this many probe intervals.
constexpr int kLoadRefreshIntervals = 10;
// How soon after learning of a join a node gossips it (instead of waiting for the next tick).
constexpr Millis kEagerGossipDelay{5};
}  // namespace

// ---------------------------------------------------------------------------------------------
// Internal types

namespace {

// Never destroyed, so Swim instances destroyed at exit can still release their ids.
StringTable& Names() {
  static StringTable* t = new StringTable();
  return *t;
}
StringTable& Addrs() {
  static StringTable* t = new StringTable();
  return *t;
}
// Members' claims: public key and signature (96 bytes), shared by every Swim that holds the same.
StringTable& Claims() {
  static StringTable* t = new StringTable();
  return *t;
}

constexpr size_t kKeySize = identity::kPublicKeyBytes;

const std::string kEmpty;

}  // namespace

// One member as this node knows it: 32 bytes. Its name is its index in members_ (a Names() id);
// metadata, load and suspicion state are in side tables keyed by that id.
struct Swim::Member {
  SteadyTime since;  // when `state` last changed, on this node's clock
  // The highest incarnation the member signed a claim for (accusations never raise it).
  uint64_t incarnation = 0;
  uint32_t addr = 0;   // an Addrs() id
  uint32_t claim = 0;  // a Claims() id: the bound key, then the signature of the latest claim
  MemberState state = MemberState::kAlive;
  uint8_t protocol_min = 1;
  uint8_t protocol_max = 1;
  bool known = false;  // false: an empty slot
};

// Lifeguard suspicion of one member, while it is kSuspect.
struct Swim::Suspicion {
  SteadyTime start;
  Millis min{0};
  Millis max{0};
  int k = 0;
  std::set<std::string> confirmers;  // the accuser and every independent confirmer
  uint64_t generation = 0;           // the live timer's; a timer with another one is stale
};

struct Swim::LoadState {
  std::string load;
  uint64_t seq = 0;
  SteadyTime received;
  uint32_t age_ms = 0;
};

struct Swim::Probe {
  uint32_t target = 0;  // name id
  SteadyTime start;
  int expected_nacks = 0;
  int nacks = 0;
};

struct Swim::Relay {
  uint32_t seq = 0;  // the requester's sequence number
  std::string to;    // the requester's address
  bool want_nack = true;
};

std::string_view EventTypeName(EventType t) {
  switch (t) {
    case EventType::kJoined:
      return "joined";
    case EventType::kUpdated:
      return "updated";
    case EventType::kSuspect:
      return "suspect";
    case EventType::kAlive:
      return "alive";
    case EventType::kFailed:
      return "failed";
    case EventType::kLeft:
      return "left";
    case EventType::kRemoved:
      return "removed";
  }
  return "unknown";
}

void Output::Append(Output&& other) {
  for (auto& p : other.packets) packets.push_back(std::move(p));
  for (auto& e : other.events) events.push_back(std::move(e));
  if (other.reply) reply = std::move(other.reply);
}

namespace {
bool IsLive(MemberState s) { return s == MemberState::kAlive || s == MemberState::kSuspect; }

// The signature-check budget's burst: a join's push-pull of a full table passes at once.
double CheckBurst(const SwimConfig& c) {
  return std::max(static_cast<double>(c.max_claim_checks_per_second), 2.0 * c.max_members);
}
}  // namespace

// ---------------------------------------------------------------------------------------------
// Construction and public API

Swim::Swim(SwimConfig config, std::string name, std::string addr, std::string meta,
           identity::NodeKey key, uint64_t seed, SteadyTime now)
    : config_(std::move(config)),
      name_(std::move(name)),
      addr_(std::move(addr)),
      meta_(std::move(meta)),
      key_(std::move(key)),
      rng_(seed),
      broadcasts_(std::make_unique<BroadcastQueue>()) {
  check_tokens_ = CheckBurst(config_);
  check_refilled_ = now;
  // Spread the first probe and push-pull over one interval so nodes started together do not
  // act in lock step.
  std::uniform_int_distribution<int64_t> jitter(0, config_.probe_interval.count());
  next_probe_ = now + Millis(jitter(rng_));
  next_gossip_ = now + config_.gossip_interval;
  std::uniform_int_distribution<int64_t> pp(0, config_.push_pull_interval.count());
  next_push_pull_ = now + config_.push_pull_interval + Millis(pp(rng_));
  next_reap_ = now + Millis(1000);
  next_reconnect_ = now + config_.reconnect_interval;
  self_load_.name = name_;
  // Announce ourselves: once we know peers, gossip carries our alive to everyone.
  SignSelf();
  QueueBroadcast(name_, self_alive_);
}

Swim::~Swim() {
  std::vector<uint32_t> names, addrs, claims;
  names.reserve(num_members_);
  addrs.reserve(num_members_);
  claims.reserve(num_members_);
  for (uint32_t id = 0; id < members_.size(); ++id) {
    if (!members_[id].known) continue;
    names.push_back(id);
    addrs.push_back(members_[id].addr);
    claims.push_back(members_[id].claim);
  }
  Names().Release(names);
  Addrs().Release(addrs);
  Claims().Release(claims);
}

Output Swim::Bootstrap(const PushPull& state, SteadyTime now) {
  Output out;
  // Size the table once: the ids of a converged cluster's names are known up front.
  uint32_t max_id = 0;
  for (const PushPullMember& p : state.members) {
    if (std::optional<uint32_t> id = Names().Find(p.node)) max_id = std::max(max_id, *id);
  }
  // Room for a few joins (1/16) without reallocating: at 10,000 members per node a regrown
  // table both copies and leaves behind a hole the size of the table.
  const size_t room = state.members.size() / 16 + 16;
  members_.reserve(std::max<size_t>(members_.size(), max_id + 1) + room);
  probe_list_.reserve(state.members.size() + room);
  quiet_ = true;
  trusted_ = true;
  MergePushPull(state, now, out);
  trusted_ = false;
  quiet_ = false;
  broadcasts_->Remove(name_);  // our own announcement: everyone knows us already
  joined_ = true;
  return out;
}

Output Swim::Join(const std::vector<std::string>& seeds, SteadyTime now) {
  (void)now;
  Output out;
  const PushPull state = LocalState(/*join=*/true);
  for (const std::string& seed : seeds) {
    if (seed == addr_) continue;
    ++stats_.push_pulls;
    SendTcp(seed, state, out);
  }
  return out;
}

Output Swim::Leave(SteadyTime now) {
  (void)now;
  leaving_ = true;
  Dead leave{incarnation_, name_, name_, ""};
  leave.sig = key_.Sign(LeaveClaimBytes(leave));
  QueueBroadcast(name_, leave);
  return Output{};
}

bool Swim::LeaveDone() const {
  // Done once the news has been sent its retransmit limit, or when nobody is left to tell.
  return leaving_ && (!broadcasts_->Contains(name_) || num_alive_ <= 1);
}

Output Swim::UpdateMeta(std::string meta, SteadyTime now) {
  (void)now;
  meta_ = std::move(meta);
  ++incarnation_;
  SignSelf();
  QueueBroadcast(name_, self_alive_);
  return Output{};
}

void Swim::SetLoadSequenceBase(uint64_t base) {
  if (load_seq_ == 0) load_seq_ = base;
}

void Swim::SetLoad(std::string payload, SteadyTime now) {
  // An unchanged report is re-announced only every kLoadRefreshIntervals probe intervals; a
  // changed one at once. Readers see each report's age either way.
  if (self_load_.load_seq > 0 && payload == self_load_.load &&
      now - self_load_.load_received < config_.probe_interval * kLoadRefreshIntervals) {
    return;
  }
  ++load_seq_;
  self_load_.load = payload;
  self_load_.load_seq = load_seq_;
  self_load_.load_received = now;
  self_load_.load_age_ms = 0;
  Load l{name_, load_seq_, 0, std::move(payload)};
  std::string bytes = EncodeMessage(l);
  broadcasts_->Queue("load/" + name_, 1, std::move(bytes), std::move(l), now);
}

SteadyTime Swim::NextTimer() const {
  SteadyTime t = std::min({next_gossip_, next_reap_});
  if (!leaving_) t = std::min({t, next_probe_, next_push_pull_, next_reconnect_});
  if (!timers_.empty()) t = std::min(t, timers_.front().at);
  return t;
}

Output Swim::Tick(SteadyTime now) {
  Output out;
  if (!leaving_ && now >= next_probe_) {
    StartProbe(now, out);
    next_probe_ = now + Scaled(config_.probe_interval);
  }
  if (now >= next_gossip_) {
    Gossip(now, out);
    next_gossip_ = now + config_.gossip_interval;
  }
  if (!leaving_ && now >= next_push_pull_) {
    StartPushPull(now, out);
    next_push_pull_ = now + PushPullInterval(config_, static_cast<int>(num_members_) + 1);
  }
  if (!leaving_ && now >= next_reconnect_) {
    Reconnect(now, out);
    next_reconnect_ = now + config_.reconnect_interval;
  }
  if (now >= next_reap_) {
    Reap(now, out);
    next_reap_ = now + Millis(1000);
  }
  while (!timers_.empty() && timers_.front().at <= now) {
    std::pop_heap(timers_.begin(), timers_.end(), std::greater<>());
    Timer t = std::move(timers_.back());
    timers_.pop_back();
    switch (t.kind) {
      case TimerKind::kProbeDeadline:
        ProbeDeadline(t.seq, now, out);
        break;
      case TimerKind::kProbeEnd:
        ProbeEnd(t.seq, now, out);
        break;
      case TimerKind::kRelayDeadline:
        RelayDeadline(t.seq, out);
        break;
      case TimerKind::kSuspicion:
        SuspicionExpired(t.node, t.generation, now, out);
        break;
    }
  }
  return out;
}

std::optional<DecodedPacket> Swim::Decode(std::string_view packet) {
  ++stats_.packets_in;
  absl::StatusOr<DecodedPacket> decoded = DecodePacket(packet);
  if (!decoded.ok()) {
    ++stats_.malformed_in;
    return std::nullopt;
  }
  stats_.unknown_messages += decoded->unknown_skipped;
  return *std::move(decoded);
}

Output Swim::HandlePacket(std::string_view from, std::string_view packet, Channel channel,
                          SteadyTime now) {
  Output out;
  std::optional<DecodedPacket> decoded = Decode(packet);
  if (!decoded) return out;
  for (const Message& m : decoded->messages) Dispatch(from, m, channel, now, out);
  return out;
}

Output Swim::HandleStream(std::string_view from, std::string_view packet, SteadyTime now) {
  Output out;
  std::optional<DecodedPacket> decoded = Decode(packet);
  if (!decoded) return out;
  for (const Message& m : decoded->messages) {
    if (const auto* pp = std::get_if<PushPull>(&m)) {
      MergePushPull(*pp, now, out);
      // Our state goes back on the same connection.
      std::string reply = EncodePacket({EncodeMessage(LocalState(false))});
      ++stats_.packets_out;
      stats_.bytes_out += reply.size();
      out.reply = std::move(reply);
    } else {
      Dispatch(from, m, Channel::kTcp, now, out);
    }
  }
  return out;
}

std::vector<MemberInfo> Swim::Members() const {
  std::vector<MemberInfo> out;
  out.reserve(num_members_ + 1);
  MemberInfo self = self_load_;
  self.name = name_;
  self.addr = addr_;
  self.meta = meta_;
  self.key = key_.public_key();
  self.incarnation = incarnation_;
  self.state = leaving_ ? MemberState::kLeft : MemberState::kAlive;
  self.protocol_min = config_.protocol_min;
  self.protocol_max = config_.protocol_max;
  out.push_back(std::move(self));
  for (uint32_t id = 0; id < members_.size(); ++id) {
    if (members_[id].known) out.push_back(InfoOf(id, members_[id]));
  }
  std::sort(out.begin(), out.end(),
            [](const MemberInfo& a, const MemberInfo& b) { return a.name < b.name; });
  return out;
}

std::optional<MemberInfo> Swim::Find(std::string_view name) const {
  if (name == name_) return std::nullopt;
  uint32_t id = kNoId;
  const Member* m = Lookup(name, &id);
  if (m == nullptr) return std::nullopt;
  return InfoOf(id, *m);
}

std::optional<MemberState> Swim::StateOf(std::string_view name) const {
  if (name == name_) return std::nullopt;
  uint32_t id = kNoId;
  const Member* m = Lookup(name, &id);
  if (m == nullptr) return std::nullopt;
  return m->state;
}

int Swim::NumAlive() const { return num_alive_; }

size_t Swim::QueuedBroadcasts() const { return broadcasts_->size(); }

// ---------------------------------------------------------------------------------------------
// Message handling

void Swim::Dispatch(std::string_view from, const Message& m, Channel channel, SteadyTime now,
                    Output& out) {
  std::visit(
      [&](const auto& msg) {
        using T = std::decay_t<decltype(msg)>;
        if constexpr (std::is_same_v<T, Ping>) {
          OnPing(from, msg, channel, now, out);
        } else if constexpr (std::is_same_v<T, IndirectPing>) {
          OnIndirectPing(from, msg, now, out);
        } else if constexpr (std::is_same_v<T, Ack>) {
          OnAck(msg, now, out);
        } else if constexpr (std::is_same_v<T, Nack>) {
          OnNack(msg);
        } else if constexpr (std::is_same_v<T, Suspect>) {
          OnSuspect(msg, now, out);
        } else if constexpr (std::is_same_v<T, Alive>) {
          OnAlive(msg, now, out, false);
        } else if constexpr (std::is_same_v<T, Dead>) {
          OnDead(msg, now, out);
        } else if constexpr (std::is_same_v<T, PushPull>) {
          // A push-pull reply to an exchange this node started.
          MergePushPull(msg, now, out);
          joined_ = true;
        } else if constexpr (std::is_same_v<T, Load>) {
          OnLoad(msg, now);
        }
      },
      m);
}

void Swim::OnPing(std::string_view from, const Ping& m, Channel channel, SteadyTime now,
                  Output& out) {
  if (!m.target.empty() && m.target != name_) return;  // meant for a former owner of this address
  if (channel == Channel::kTcp) {
    std::string reply = EncodePacket({EncodeMessage(Ack{m.seq})});
    ++stats_.packets_out;
    stats_.bytes_out += reply.size();
    out.reply = std::move(reply);
    return;
  }
  SendUdp(std::string(from), {EncodeMessage(Ack{m.seq})}, now, out);
}

void Swim::OnIndirectPing(std::string_view from, const IndirectPing& m, SteadyTime now,
                          Output& out) {
  if (leaving_) return;
  const uint32_t seq = ++next_seq_;
  relays_[seq] = Relay{m.seq, std::string(from), m.want_nack};
  SendUdp(m.target_addr, {EncodeMessage(Ping{seq, m.target, name_, addr_})}, now, out);
  // Lifeguard: the nack goes out at 80% of the probe timeout, so it reaches the requester before
  // its own deadline (a late nack would count against the requester's health).
  timers_.push_back(
      Timer{now + config_.probe_timeout * 4 / 5, TimerKind::kRelayDeadline, seq, kNoId, 0});
  std::push_heap(timers_.begin(), timers_.end(), std::greater<>());
}

void Swim::OnAck(const Ack& m, SteadyTime now, Output& out) {
  if (auto r = relays_.find(m.seq); r != relays_.end()) {
    SendUdp(r->second.to, {EncodeMessage(Ack{r->second.seq})}, now, out);
    relays_.erase(r);
    return;
  }
  auto p = probes_.find(m.seq);
  if (p == probes_.end()) return;  // late or unknown
  ++stats_.acks_received;
  ApplyAwareness(-1);
  probes_.erase(p);
}

void Swim::OnNack(const Nack& m) {
  auto p = probes_.find(m.seq);
  if (p == probes_.end()) return;
  ++stats_.nacks_received;
  ++p->second->nacks;
}

void Swim::OnAlive(const Alive& m, SteadyTime now, Output& out, bool from_push_pull) {
  // News learnt in a push-pull is re-gossiped like any other (as memberlist does): suppressing
  // it was measured to leave nodes unaware of joins, because most nodes learn a joiner through
  // a push-pull and only the few that re-gossip would spread it.
  (void)from_push_pull;
  if (!trusted_ && (m.key.empty() || m.sig.empty())) {
    ++stats_.claims_bad_signature;  // an unsigned claim speaks for nobody
    return;
  }
  if (m.node == name_) {
    // Only this node's own key speaks for its name; an old or echoed announcement of ourselves
    // is ignored, and anything newer that we really signed (our previous life's state, learnt
    // back from the mesh after a restart) is a claim we must contradict.
    if (m.key != key_.public_key()) {
      ++stats_.claims_name_taken;
      return;
    }
    if (m.incarnation < incarnation_) return;
    if (m.incarnation == incarnation_ && m.addr == addr_ && m.meta == meta_) return;
    if (leaving_) return;
    if (!CheckClaim(m.key, AliveClaimBytes(m), m.sig, now)) return;
    Refute(m.incarnation, now);
    return;
  }
  if (m.node.empty() || m.addr.empty()) return;
  uint32_t id = kNoId;
  Member* found = Lookup(m.node, &id);
  if (found == nullptr) {
    if (num_members_ >= static_cast<size_t>(config_.max_members) && !MakeRoom(now, out)) {
      ++stats_.members_refused;
      return;
    }
    if (!CheckClaim(m.key, AliveClaimBytes(m), m.sig, now)) return;
    Member& member = Insert(m.node, m.addr, &id, now);
    member.incarnation = m.incarnation;
    member.protocol_min = m.protocol_min;
    member.protocol_max = m.protocol_max;
    SetClaim(member, m.key, m.sig);
    SetMeta(id, m.meta);
    ++num_alive_;
    AddToProbeList(id);
    out.events.push_back({EventType::kJoined, m.node});
    // News of a join goes out at once rather than at the next gossip tick: a joining device
    // becomes visible mesh-wide in a few round trips.
    next_gossip_ = std::min(next_gossip_, now + kEagerGossipDelay);
    QueueBroadcast(m.node, m);
    return;
  }
  Member& cur = *found;
  if (!KeyOf(cur).empty() && KeyOf(cur) != m.key) {
    // Another key for a known name: only once the name is free (its node left or has been dead
    // for dead_node_reclaim_time; 0: never, until the entry is forgotten).
    const bool reclaimable = (cur.state == MemberState::kLeft || cur.state == MemberState::kDead) &&
                             config_.dead_node_reclaim_time.count() > 0 &&
                             now - cur.since >= config_.dead_node_reclaim_time;
    if (!reclaimable) {
      ++stats_.claims_name_taken;
      return;
    }
  } else if (m.incarnation <= cur.incarnation) {
    return;  // old news (a signed claim moves a name only forward, address changes included)
  }
  if (!CheckClaim(m.key, AliveClaimBytes(m), m.sig, now)) return;
  const MemberState before = cur.state;
  const bool meta_changed = MetaOf(id) != m.meta;
  const bool addr_changed = AddrOf(cur) != m.addr;
  cur.incarnation = m.incarnation;
  if (addr_changed) {
    const uint32_t old = cur.addr;
    cur.addr = Addrs().Acquire(m.addr);
    Addrs().Release(old);
  }
  if (meta_changed) SetMeta(id, m.meta);
  SetClaim(cur, m.key, m.sig);
  cur.protocol_min = m.protocol_min;
  cur.protocol_max = m.protocol_max;
  suspicions_.erase(id);  // cancels any suspicion timer
  if (before != MemberState::kAlive) {
    SetState(id, cur, MemberState::kAlive, now);
    out.events.push_back({EventType::kAlive, m.node});
  } else if (meta_changed || addr_changed) {
    out.events.push_back({EventType::kUpdated, m.node});
  }
  QueueBroadcast(m.node, m);
}

void Swim::OnSuspect(const Suspect& m, SteadyTime now, Output& out) {
  if (m.node == name_) {
    if (leaving_ || m.incarnation < incarnation_) return;
    if (m.incarnation > incarnation_) {
      // Nobody can know an incarnation of ours that we never signed; a restart's lost one
      // comes back with our signature in a push-pull (OnAlive above).
      ++stats_.accusations_ignored;
      return;
    }
    ApplyAwareness(1);  // Lifeguard: being suspected hints that we are the slow one
    Refute(m.incarnation, now);
    return;
  }
  uint32_t id = kNoId;
  Member* found = Lookup(m.node, &id);
  if (found == nullptr) return;
  Member& cur = *found;
  // An accusation is taken at the member's own incarnation at most: it never raises it.
  if (m.incarnation < cur.incarnation) return;
  if (cur.state == MemberState::kSuspect) {
    // An independent confirmation, from a member we know, shortens the timer; new information
    // is re-gossiped.
    if (m.from != name_ && !StateOf(m.from).has_value()) return;
    Suspicion& s = suspicions_[id];
    if (s.confirmers.insert(m.from).second) {
      const int confirmations = static_cast<int>(s.confirmers.size()) - 1;
      const Millis timeout = SuspicionTimeout(s.min, s.max, confirmations, s.k);
      s.generation = ++next_generation_;
      timers_.push_back(Timer{s.start + timeout, TimerKind::kSuspicion, 0, id, s.generation});
      std::push_heap(timers_.begin(), timers_.end(), std::greater<>());
      QueueBroadcast(m.node, Suspect{cur.incarnation, m.node, m.from});
    }
    return;
  }
  if (cur.state != MemberState::kAlive) return;
  SetState(id, cur, MemberState::kSuspect, now);
  ++stats_.suspicions;
  const int n = static_cast<int>(num_members_) + 1;
  Suspicion& s = suspicions_[id];
  s.start = now;
  s.k = SuspicionConfirmations(config_, n);
  s.min = SuspicionMinTimeout(config_, n);
  s.max = s.min * config_.suspicion_max_timeout_mult;
  s.confirmers.clear();
  s.confirmers.insert(m.from);
  s.generation = ++next_generation_;
  const Millis timeout = SuspicionTimeout(s.min, s.max, 0, s.k);
  timers_.push_back(Timer{now + timeout, TimerKind::kSuspicion, 0, id, s.generation});
  std::push_heap(timers_.begin(), timers_.end(), std::greater<>());
  out.events.push_back({EventType::kSuspect, m.node});
  QueueBroadcast(m.node, Suspect{cur.incarnation, m.node, m.from});
}

void Swim::OnDead(const Dead& m, SteadyTime now, Output& out) {
  const bool leave = m.from == m.node;
  if (m.node == name_) {
    if (leaving_ || m.incarnation < incarnation_) return;
    if (leave) {
      // "We left" is only true if we signed it (a previous life's leave, learnt back).
      if (!CheckClaim(key_.public_key(), LeaveClaimBytes(m), m.sig, now)) return;
    } else if (m.incarnation > incarnation_) {
      ++stats_.accusations_ignored;
      return;
    }
    Refute(m.incarnation, now);
    return;
  }
  uint32_t id = kNoId;
  Member* found = Lookup(m.node, &id);
  if (found == nullptr) return;
  Member& cur = *found;
  // An accusation is taken at the member's own incarnation at most: it never raises it.
  if (m.incarnation < cur.incarnation || !IsLive(cur.state)) return;
  // Only the member itself can say it left.
  if (leave && !CheckClaim(KeyOf(cur), LeaveClaimBytes(m), m.sig, now)) return;
  suspicions_.erase(id);  // cancels any suspicion timer
  if (leave) {
    cur.incarnation = m.incarnation;
    SetClaim(cur, KeyOf(cur), m.sig);
  }
  SetState(id, cur, leave ? MemberState::kLeft : MemberState::kDead, now);
  ++stats_.deaths;
  out.events.push_back({leave ? EventType::kLeft : EventType::kFailed, m.node});
  QueueBroadcast(m.node, leave ? m : Dead{cur.incarnation, m.node, m.from, ""});
}

void Swim::OnLoad(const Load& m, SteadyTime now) {
  if (m.node == name_) return;
  uint32_t id = kNoId;
  if (Lookup(m.node, &id) == nullptr) return;
  auto existing = loads_.find(id);
  // A report orders the ones after it only while it is fresh: one that nothing newer replaced
  // for three refresh periods (its node re-announces every kLoadRefreshIntervals probe
  // intervals) no longer does, so neither a restarted node's new sequence nor a forged report
  // with a huge number can silence a node's reports for good.
  const bool stale =
      existing != loads_.end() &&
      now - existing->second.received > config_.probe_interval * (3 * kLoadRefreshIntervals);
  if (!stale && m.seq <= (existing != loads_.end() ? existing->second.seq : 0)) return;
  LoadState& cur = existing != loads_.end() ? existing->second : loads_[id];
  cur.load = m.payload;
  cur.seq = m.seq;
  cur.received = now;
  cur.age_ms = m.age_ms;
  broadcasts_->Queue("load/" + m.node, 1, EncodeMessage(m), m, now);
}

void Swim::MergePushPull(const PushPull& m, SteadyTime now, Output& out) {
  for (const PushPullMember& p : m.members) {
    switch (p.state) {
      case MemberState::kAlive:
        OnAlive(AliveOf(p), now, out, true);
        break;
      case MemberState::kLeft:
        OnDead(Dead{p.incarnation, p.node, p.node, p.sig}, now, out);
        break;
      case MemberState::kDead:
      case MemberState::kSuspect:
        // Another node's verdict is only a suspicion here: let our own timer decide. The entry
        // carries the member's own signed claim at that incarnation: learn an unknown member
        // from it (as last known alive), and, about ourselves, take it as proof of a previous
        // life's incarnation to refute.
        if (p.node == name_ || !StateOf(p.node).has_value()) {
          OnAlive(AliveOf(p), now, out, true);
        }
        OnSuspect(Suspect{p.incarnation, p.node, name_}, now, out);
        break;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Timers

void Swim::StartProbe(SteadyTime now, Output& out) {
  const Member* target = nullptr;
  uint32_t target_id = kNoId;
  for (size_t tries = 0; tries < probe_list_.size() && target == nullptr; ++tries) {
    if (probe_index_ >= probe_list_.size()) {
      std::shuffle(probe_list_.begin(), probe_list_.end(), rng_);
      probe_index_ = 0;
    }
    const uint32_t id = probe_list_[probe_index_++];
    const Member* m = Get(id);
    if (m != nullptr && IsLive(m->state)) {
      target = m;
      target_id = id;
    }
  }
  if (target == nullptr) return;
  const uint32_t seq = ++next_seq_;
  auto probe = std::make_unique<Probe>();
  probe->target = target_id;
  probe->start = now;
  probes_[seq] = std::move(probe);
  ++stats_.probes;
  const std::string& target_name = NameOf(target_id);
  std::vector<std::string> msgs = {EncodeMessage(Ping{seq, target_name, name_, addr_})};
  if (target->state == MemberState::kSuspect) {
    // Carry the suspicion, so the target can refute at once.
    msgs.push_back(EncodeMessage(Suspect{target->incarnation, target_name, name_}));
  }
  SendUdp(AddrOf(*target), std::move(msgs), now, out);
  timers_.push_back(
      Timer{now + Scaled(config_.probe_timeout), TimerKind::kProbeDeadline, seq, kNoId, 0});
  std::push_heap(timers_.begin(), timers_.end(), std::greater<>());
  timers_.push_back(
      Timer{now + Scaled(config_.probe_interval), TimerKind::kProbeEnd, seq, kNoId, 0});
  std::push_heap(timers_.begin(), timers_.end(), std::greater<>());
}

void Swim::ProbeDeadline(uint32_t seq, SteadyTime now, Output& out) {
  auto p = probes_.find(seq);
  if (p == probes_.end()) return;  // acked
  Probe& probe = *p->second;
  const Member* t = Get(probe.target);
  if (t == nullptr) return;
  const Member& target = *t;
  const std::string& target_name = NameOf(probe.target);
  const std::string& target_addr = AddrOf(target);
  std::vector<uint32_t> peers =
      RandomMembers(static_cast<size_t>(config_.indirect_checks), probe.target, false, now);
  for (uint32_t peer_id : peers) {
    const Member& peer = *Get(peer_id);
    if (peer.state != MemberState::kAlive) continue;
    SendUdp(AddrOf(peer),
            {EncodeMessage(IndirectPing{seq, target_name, target_addr, true, name_, addr_})}, now,
            out);
    ++probe.expected_nacks;
  }
  ++stats_.indirect_probes;
  // A TCP ping in parallel catches networks that drop UDP.
  SendTcp(target_addr, Ping{seq, target_name, name_, addr_}, out);
}

void Swim::ProbeEnd(uint32_t seq, SteadyTime now, Output& out) {
  auto p = probes_.find(seq);
  if (p == probes_.end()) return;  // acked
  const Probe probe = *p->second;
  probes_.erase(p);
  ++stats_.probe_failures;
  // Lifeguard: missing nacks mean our own links or CPU may be at fault.
  if (probe.expected_nacks > 0) {
    if (probe.nacks < probe.expected_nacks) ApplyAwareness(probe.expected_nacks - probe.nacks);
  } else {
    ApplyAwareness(1);
  }
  const Member* t = Get(probe.target);
  if (t == nullptr || !IsLive(t->state)) return;
  OnSuspect(Suspect{t->incarnation, NameOf(probe.target), name_}, now, out);
}

void Swim::RelayDeadline(uint32_t seq, Output& out) {
  auto r = relays_.find(seq);
  if (r == relays_.end()) return;
  if (r->second.want_nack) {
    const std::string to = r->second.to;
    const uint32_t orig = r->second.seq;
    relays_.erase(r);
    SendUdp(to, {EncodeMessage(Nack{orig})}, SteadyTime{}, out);
    return;
  }
  relays_.erase(r);
}

void Swim::SuspicionExpired(uint32_t node, uint64_t generation, SteadyTime now, Output& out) {
  const Member* m = Get(node);
  if (m == nullptr || m->state != MemberState::kSuspect) return;
  auto s = suspicions_.find(node);
  if (s == suspicions_.end() || s->second.generation != generation) return;
  OnDead(Dead{m->incarnation, NameOf(node), name_}, now, out);
}

void Swim::Gossip(SteadyTime now, Output& out) {
  // Load reports alone never start a gossip round: they ride on packets that go out anyway
  // (pings, acks, membership gossip), so a mesh at rest stays as quiet as its probes.
  if (!broadcasts_->HasMembershipUpdates()) return;
  const int n = static_cast<int>(num_members_) + 1;
  const int limit = RetransmitLimit(config_, n);
  for (uint32_t peer : RandomMembers(static_cast<size_t>(config_.gossip_nodes), kNoId, true, now)) {
    const size_t budget = static_cast<size_t>(config_.udp_buffer_size) - 4;
    std::vector<std::string> msgs = broadcasts_->Take(budget, limit, now, kLoadBudget);
    if (msgs.empty()) break;
    std::string packet = EncodePacket(msgs);
    ++stats_.packets_out;
    stats_.bytes_out += packet.size();
    out.packets.push_back(Outgoing{AddrOf(*Get(peer)), Channel::kUdp, std::move(packet)});
  }
}

void Swim::StartPushPull(SteadyTime now, Output& out) {
  std::vector<uint32_t> peer = RandomMembers(1, kNoId, false, now);
  if (peer.empty()) return;
  const Member& m = *Get(peer[0]);
  if (m.state != MemberState::kAlive) return;
  ++stats_.push_pulls;
  SendTcp(AddrOf(m), LocalState(false), out);
}

void Swim::Reconnect(SteadyTime now, Output& out) {
  (void)now;
  // Sample a few random members; try the first one held dead (not left).
  if (probe_list_.empty()) return;
  std::uniform_int_distribution<size_t> pick(0, probe_list_.size() - 1);
  for (int i = 0; i < 8; ++i) {
    const Member* m = Get(probe_list_[pick(rng_)]);
    if (m == nullptr || m->state != MemberState::kDead) continue;
    ++stats_.push_pulls;
    SendTcp(AddrOf(*m), LocalState(false), out);
    return;
  }
}

void Swim::Reap(SteadyTime now, Output& out) {
  while (!departed_.empty() && now - departed_.front().second >= config_.dead_node_forget_time) {
    const auto [id, since] = departed_.front();
    departed_.pop_front();
    const Member* m = Get(id);
    // Skip entries made stale by a return to life (or a later departure, queued again).
    if (m == nullptr || IsLive(m->state) || m->since != since) continue;
    auto pos = std::find(probe_list_.begin(), probe_list_.end(), id);
    if (pos != probe_list_.end()) {
      std::swap(*pos, probe_list_.back());
      probe_list_.pop_back();
    }
    out.events.push_back({EventType::kRemoved, NameOf(id)});
    Erase(id);
  }
  if (probe_index_ > probe_list_.size()) probe_index_ = probe_list_.size();
}

// ---------------------------------------------------------------------------------------------
// Helpers

void Swim::Refute(uint64_t accused_incarnation, SteadyTime now) {
  (void)now;
  // Callers pass only incarnations this node signed (or its current one), so this moves one
  // step past our own claims; at 2^64 - 1 (never reached: a step per refutation or metadata
  // change) the node would stay where it is rather than wrap.
  const uint64_t highest = std::max(incarnation_, accused_incarnation);
  if (highest == UINT64_MAX) return;
  incarnation_ = highest + 1;
  ++stats_.refutations;
  SignSelf();
  QueueBroadcast(name_, self_alive_);
}

void Swim::SignSelf() {
  self_alive_ =
      Alive{incarnation_,      name_, addr_, meta_, config_.protocol_min, config_.protocol_max,
            key_.public_key(), ""};
  self_alive_.sig = key_.Sign(AliveClaimBytes(self_alive_));
}

bool Swim::CheckClaim(std::string_view key, std::string_view bytes, std::string_view sig,
                      SteadyTime now) {
  if (trusted_) return true;
  if (key.empty() || sig.empty()) {
    ++stats_.claims_bad_signature;
    return false;
  }
  // The budget refills continuously at max_claim_checks_per_second, up to its burst.
  const double burst = CheckBurst(config_);
  if (now > check_refilled_) {
    const double seconds = std::chrono::duration<double>(now - check_refilled_).count();
    check_tokens_ = std::min(burst, check_tokens_ + seconds * config_.max_claim_checks_per_second);
    check_refilled_ = now;
  }
  if (check_tokens_ < 1) {
    ++stats_.claims_over_budget;
    return false;
  }
  check_tokens_ -= 1;
  if (!identity::VerifySignature(key, bytes, sig)) {
    ++stats_.claims_bad_signature;
    return false;
  }
  return true;
}

bool Swim::MakeRoom(SteadyTime now, Output& out) {
  // The member that departed longest ago goes first, as Reap would take it later.
  while (!departed_.empty()) {
    const auto [id, since] = departed_.front();
    departed_.pop_front();
    const Member* m = Get(id);
    if (m == nullptr || IsLive(m->state) || m->since != since) continue;  // stale entry
    auto pos = std::find(probe_list_.begin(), probe_list_.end(), id);
    if (pos != probe_list_.end()) {
      std::swap(*pos, probe_list_.back());
      probe_list_.pop_back();
    }
    if (probe_index_ > probe_list_.size()) probe_index_ = probe_list_.size();
    out.events.push_back({EventType::kRemoved, NameOf(id)});
    Erase(id);
    return true;
  }
  (void)now;
  return false;
}

void Swim::SendUdp(const std::string& to, std::vector<std::string> messages, SteadyTime now,
                   Output& out) {
  size_t used = 4;
  for (const std::string& m : messages) used += m.size() + 2;
  const size_t size = static_cast<size_t>(config_.udp_buffer_size);
  if (used < size) {
    const int n = static_cast<int>(num_members_) + 1;
    for (std::string& extra :
         broadcasts_->Take(size - used, RetransmitLimit(config_, n), now, kLoadBudget)) {
      messages.push_back(std::move(extra));
    }
  }
  std::string packet = EncodePacket(messages);
  ++stats_.packets_out;
  stats_.bytes_out += packet.size();
  out.packets.push_back(Outgoing{to, Channel::kUdp, std::move(packet)});
}

void Swim::SendTcp(const std::string& to, const Message& m, Output& out) {
  std::string packet = EncodePacket({EncodeMessage(m)});
  ++stats_.packets_out;
  stats_.bytes_out += packet.size();
  out.packets.push_back(Outgoing{to, Channel::kTcp, std::move(packet)});
}

PushPull Swim::LocalState(bool join) const {
  PushPull pp;
  pp.join = join;
  pp.members.reserve(num_members_ + 1);
  PushPullMember self{name_,
                      addr_,
                      incarnation_,
                      leaving_ ? MemberState::kLeft : MemberState::kAlive,
                      meta_,
                      config_.protocol_min,
                      config_.protocol_max,
                      key_.public_key(),
                      self_alive_.sig};
  if (leaving_) {
    Dead leave{incarnation_, name_, name_, ""};
    self.sig = key_.Sign(LeaveClaimBytes(leave));
  }
  pp.members.push_back(std::move(self));
  // In probe-list order (which holds every member), not by id: ids depend on what else the
  // process interned, and a run must not (see SimCluster's reproducibility).
  for (uint32_t id : probe_list_) {
    const Member& m = members_[id];
    pp.members.push_back(PushPullMember{NameOf(id), AddrOf(m), m.incarnation, m.state, MetaOf(id),
                                        m.protocol_min, m.protocol_max, std::string(KeyOf(m)),
                                        std::string(SigOf(m))});
  }
  return pp;
}

void Swim::QueueBroadcast(const std::string& key, const Message& m) {
  if (quiet_) return;
  broadcasts_->Queue(key, 0, EncodeMessage(m), std::nullopt, SteadyTime{});
}

std::vector<uint32_t> Swim::RandomMembers(size_t k, uint32_t exclude, bool include_recently_dead,
                                          SteadyTime now) {
  std::vector<uint32_t> out;
  if (k == 0 || probe_list_.empty()) return out;
  std::uniform_int_distribution<size_t> pick(0, probe_list_.size() - 1);
  // Random draws with a bounded number of tries: cheap for large tables, exact for small ones.
  const size_t tries =
      std::max<size_t>(3 * k, probe_list_.size() <= 64 ? 4 * probe_list_.size() : 3 * k);
  for (size_t i = 0; i < tries && out.size() < k; ++i) {
    const uint32_t id = probe_list_[pick(rng_)];
    if (id == exclude) continue;
    const Member* m = Get(id);
    if (m == nullptr) continue;
    const bool eligible =
        IsLive(m->state) || (include_recently_dead && m->state == MemberState::kDead &&
                             now - m->since < config_.gossip_to_the_dead_time);
    if (!eligible || std::find(out.begin(), out.end(), id) != out.end()) continue;
    out.push_back(id);
  }
  return out;
}

void Swim::AddToProbeList(uint32_t node) {
  // At a random position (swapped in, O(1)), so a new node is probed within about one round.
  probe_list_.push_back(node);
  std::uniform_int_distribution<size_t> pos(0, probe_list_.size() - 1);
  std::swap(probe_list_.back(), probe_list_[pos(rng_)]);
}

void Swim::ApplyAwareness(int delta) {
  awareness_ = std::clamp(awareness_ + delta, 0, config_.awareness_max_multiplier - 1);
}

Millis Swim::Scaled(Millis base) const { return base * (awareness_ + 1); }

void Swim::SetState(uint32_t id, Member& m, MemberState state, SteadyTime now) {
  if (IsLive(m.state) && !IsLive(state)) --num_alive_;
  if (!IsLive(m.state) && IsLive(state)) ++num_alive_;
  m.state = state;
  m.since = now;
  if (!IsLive(state)) departed_.emplace_back(id, now);
}

// ---------------------------------------------------------------------------------------------
// Member storage

Swim::Member* Swim::Get(uint32_t id) {
  return id < members_.size() && members_[id].known ? &members_[id] : nullptr;
}

const Swim::Member* Swim::Get(uint32_t id) const {
  return id < members_.size() && members_[id].known ? &members_[id] : nullptr;
}

Swim::Member* Swim::Lookup(std::string_view name, uint32_t* id) {
  const std::optional<uint32_t> found = Names().Find(name);
  if (!found.has_value()) return nullptr;
  *id = *found;
  return Get(*found);
}

const Swim::Member* Swim::Lookup(std::string_view name, uint32_t* id) const {
  const std::optional<uint32_t> found = Names().Find(name);
  if (!found.has_value()) return nullptr;
  *id = *found;
  return Get(*found);
}

Swim::Member& Swim::Insert(std::string_view name, std::string_view addr, uint32_t* id,
                           SteadyTime now) {
  const uint32_t i = Names().Acquire(name);
  if (i >= members_.size()) {
    // Grow by an eighth (not double): at 10,000 members per node the slack is what costs.
    if (i >= members_.capacity()) {
      members_.reserve(std::max<size_t>(i + 1, members_.capacity() + members_.capacity() / 8 + 16));
    }
    members_.resize(i + 1);
  }
  Member& m = members_[i];
  m = Member{};
  m.known = true;
  m.addr = Addrs().Acquire(addr);
  m.claim = Claims().Acquire("");
  m.state = MemberState::kAlive;
  m.since = now;
  ++num_members_;
  *id = i;
  return m;
}

void Swim::Erase(uint32_t id) {
  Member& m = members_[id];
  Addrs().Release(m.addr);
  Claims().Release(m.claim);
  m = Member{};
  metas_.erase(id);
  loads_.erase(id);
  suspicions_.erase(id);
  --num_members_;
  Names().Release(id);
  // Trailing empty slots are returned, so a table shrinks back after departures.
  while (!members_.empty() && !members_.back().known) members_.pop_back();
}

const std::string& Swim::NameOf(uint32_t id) const { return Names().Get(id); }

const std::string& Swim::AddrOf(const Member& m) const { return Addrs().Get(m.addr); }

const std::string& Swim::MetaOf(uint32_t id) const {
  auto it = metas_.find(id);
  return it == metas_.end() ? kEmpty : it->second;
}

std::string_view Swim::KeyOf(const Member& m) const {
  return std::string_view(Claims().Get(m.claim)).substr(0, kKeySize);
}

std::string_view Swim::SigOf(const Member& m) const {
  const std::string& claim = Claims().Get(m.claim);
  return claim.size() > kKeySize ? std::string_view(claim).substr(kKeySize) : std::string_view();
}

void Swim::SetClaim(Member& m, std::string_view key, std::string_view sig) {
  std::string claim;
  if (!key.empty()) {
    claim.reserve(key.size() + sig.size());
    claim.append(key).append(sig);
  }
  const uint32_t old = m.claim;
  m.claim = Claims().Acquire(claim);
  Claims().Release(old);
}

void Swim::SetMeta(uint32_t id, std::string_view meta) {
  if (meta.empty()) {
    metas_.erase(id);
  } else {
    metas_[id] = std::string(meta);
  }
}

MemberInfo Swim::InfoOf(uint32_t id, const Member& m) const {
  MemberInfo info;
  info.name = NameOf(id);
  info.addr = AddrOf(m);
  info.meta = MetaOf(id);
  info.key = std::string(KeyOf(m));
  info.incarnation = m.incarnation;
  info.state = m.state;
  info.since = m.since;
  info.protocol_min = m.protocol_min;
  info.protocol_max = m.protocol_max;
  if (auto it = loads_.find(id); it != loads_.end()) {
    info.load = it->second.load;
    info.load_seq = it->second.seq;
    info.load_received = it->second.received;
    info.load_age_ms = it->second.age_ms;
  }
  return info;
}

}  // namespace hivemesh::membership
