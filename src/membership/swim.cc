#include "membership/swim.h"

#include <algorithm>

#include "base/strings.h"

namespace hivemesh::membership {

// ---------------------------------------------------------------------------------------------
// Internal types

struct Swim::Member : MemberInfo {
  // Lifeguard suspicion, while state == kSuspect.
  SteadyTime suspicion_start;
  Millis suspicion_min{0};
  Millis suspicion_max{0};
  int suspicion_k = 0;
  std::set<std::string> confirmers;  // the accuser and every independent confirmer
  uint64_t suspicion_generation = 0;
};

struct Swim::Probe {
  std::string target;
  SteadyTime start;
  int expected_nacks = 0;
  int nacks = 0;
};

struct Swim::Relay {
  uint32_t seq = 0;  // the requester's sequence number
  std::string to;    // the requester's address
  bool want_nack = true;
};

struct Swim::Broadcast {
  std::string key;    // one queued update per key: a newer one replaces it
  int priority = 0;   // 0 membership, 1 load reports (sent only with room to spare)
  std::string bytes;  // encoded message (load reports are re-encoded with their age when sent)
  int transmits = 0;
  uint64_t id = 0;  // larger = newer
  std::optional<Load> load;
  SteadyTime held_since;
};

// Updates waiting to be piggybacked: fewest transmits first, then larger, then newer.
class Swim::BroadcastQueue {
 public:
  void Queue(std::string key, int priority, std::string bytes, std::optional<Load> load,
             SteadyTime now) {
    Remove(key);
    auto b = std::make_unique<Broadcast>();
    b->key = key;
    b->priority = priority;
    b->bytes = std::move(bytes);
    b->id = ++next_id_;
    b->load = std::move(load);
    b->held_since = now;
    order_.insert(b.get());
    by_key_[std::move(key)] = std::move(b);
  }

  bool Contains(const std::string& key) const { return by_key_.count(key) > 0; }
  size_t size() const { return by_key_.size(); }

  // Takes updates that fit in `budget` bytes (each costs its size plus 2 framing bytes).
  std::vector<std::string> Take(size_t budget, int limit, SteadyTime now) {
    std::vector<std::string> out;
    std::vector<Broadcast*> taken;
    int scanned = 0;
    for (Broadcast* b : order_) {
      if (budget < 8 || ++scanned > 128) break;
      std::string bytes = b->bytes;
      if (b->load) {
        Load l = *b->load;
        const auto held = std::chrono::duration_cast<Millis>(now - b->held_since).count();
        l.age_ms = static_cast<uint32_t>(
            std::min<int64_t>(UINT32_MAX, l.age_ms + std::max<int64_t>(0, held)));
        bytes = EncodeMessage(l);
      }
      if (bytes.size() + 2 > budget) continue;
      budget -= bytes.size() + 2;
      out.push_back(std::move(bytes));
      taken.push_back(b);
      if (out.size() >= kMaxCompoundMessages - 4) break;
    }
    for (Broadcast* b : taken) {
      order_.erase(b);
      if (++b->transmits >= limit) {
        by_key_.erase(b->key);
      } else {
        order_.insert(b);
      }
    }
    return out;
  }

 private:
  struct Order {
    bool operator()(const Broadcast* a, const Broadcast* b) const {
      if (a->priority != b->priority) return a->priority < b->priority;
      if (a->transmits != b->transmits) return a->transmits < b->transmits;
      if (a->bytes.size() != b->bytes.size()) return a->bytes.size() > b->bytes.size();
      return a->id > b->id;
    }
  };
  void Remove(const std::string& key) {
    auto it = by_key_.find(key);
    if (it == by_key_.end()) return;
    order_.erase(it->second.get());
    by_key_.erase(it);
  }

  std::set<Broadcast*, Order> order_;
  std::unordered_map<std::string, std::unique_ptr<Broadcast>> by_key_;
  uint64_t next_id_ = 0;
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
}  // namespace

// ---------------------------------------------------------------------------------------------
// Construction and public API

Swim::Swim(SwimConfig config, std::string name, std::string addr, std::string meta, uint64_t seed,
           SteadyTime now)
    : config_(std::move(config)),
      name_(std::move(name)),
      addr_(std::move(addr)),
      meta_(std::move(meta)),
      rng_(seed),
      broadcasts_(std::make_unique<BroadcastQueue>()) {
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
  QueueBroadcast(
      name_, Alive{incarnation_, name_, addr_, meta_, config_.protocol_min, config_.protocol_max});
}

Swim::~Swim() = default;

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
  QueueBroadcast(name_, Dead{incarnation_, name_, name_});
  return Output{};
}

bool Swim::LeaveDone() const { return leaving_ && !broadcasts_->Contains(name_); }

Output Swim::UpdateMeta(std::string meta, SteadyTime now) {
  (void)now;
  meta_ = std::move(meta);
  ++incarnation_;
  QueueBroadcast(
      name_, Alive{incarnation_, name_, addr_, meta_, config_.protocol_min, config_.protocol_max});
  return Output{};
}

void Swim::SetLoad(std::string payload, SteadyTime now) {
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
    next_push_pull_ = now + PushPullInterval(config_, static_cast<int>(members_.size()) + 1);
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

Output Swim::HandlePacket(std::string_view from, std::string_view packet, Channel channel,
                          SteadyTime now) {
  Output out;
  ++stats_.packets_in;
  absl::StatusOr<DecodedPacket> decoded = DecodePacket(packet);
  if (!decoded.ok()) {
    ++stats_.malformed_in;
    return out;
  }
  stats_.unknown_messages += decoded->unknown_skipped;
  for (const Message& m : decoded->messages) Dispatch(from, m, channel, now, out);
  return out;
}

Output Swim::HandleStream(std::string_view from, std::string_view packet, SteadyTime now) {
  Output out;
  ++stats_.packets_in;
  absl::StatusOr<DecodedPacket> decoded = DecodePacket(packet);
  if (!decoded.ok()) {
    ++stats_.malformed_in;
    return out;
  }
  stats_.unknown_messages += decoded->unknown_skipped;
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
  out.reserve(members_.size() + 1);
  MemberInfo self = self_load_;
  self.name = name_;
  self.addr = addr_;
  self.meta = meta_;
  self.incarnation = incarnation_;
  self.state = leaving_ ? MemberState::kLeft : MemberState::kAlive;
  self.protocol_min = config_.protocol_min;
  self.protocol_max = config_.protocol_max;
  out.push_back(std::move(self));
  for (const auto& [_, m] : members_) out.push_back(static_cast<const MemberInfo&>(*m));
  std::sort(out.begin(), out.end(),
            [](const MemberInfo& a, const MemberInfo& b) { return a.name < b.name; });
  return out;
}

const MemberInfo* Swim::Find(std::string_view name) const {
  if (name == name_) return nullptr;
  auto it = members_.find(std::string(name));
  return it == members_.end() ? nullptr : it->second.get();
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
  timers_.push_back(Timer{now + config_.probe_timeout, TimerKind::kRelayDeadline, seq, "", 0});
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
  if (m.node == name_) {
    // An old or echoed announcement of ourselves is ignored; anything newer is a claim we must
    // contradict (e.g. our previous life's state).
    if (m.incarnation < incarnation_) return;
    if (m.incarnation == incarnation_ && m.addr == addr_ && m.meta == meta_) return;
    if (leaving_) return;
    Refute(m.incarnation, now);
    return;
  }
  if (m.node.empty() || m.addr.empty()) return;
  auto it = members_.find(m.node);
  if (it == members_.end()) {
    auto member = std::make_unique<Member>();
    member->name = m.node;
    member->addr = m.addr;
    member->meta = m.meta;
    member->incarnation = m.incarnation;
    member->state = MemberState::kAlive;
    member->since = now;
    member->protocol_min = m.protocol_min;
    member->protocol_max = m.protocol_max;
    members_[m.node] = std::move(member);
    ++num_alive_;
    AddToProbeList(m.node);
    out.events.push_back({EventType::kJoined, m.node});
    QueueBroadcast(m.node, m);
    return;
  }
  Member& cur = *it->second;
  const bool addr_changed = cur.addr != m.addr;
  if (addr_changed) {
    // A name moves to a new address only once its old owner left, or has been dead long enough.
    const bool reclaimable =
        cur.state == MemberState::kLeft ||
        (cur.state == MemberState::kDead && now - cur.since >= config_.dead_node_reclaim_time);
    if (!reclaimable) return;
  } else if (m.incarnation <= cur.incarnation) {
    return;
  }
  const MemberState before = cur.state;
  const bool meta_changed = cur.meta != m.meta;
  cur.incarnation = m.incarnation;
  cur.addr = m.addr;
  cur.meta = m.meta;
  cur.protocol_min = m.protocol_min;
  cur.protocol_max = m.protocol_max;
  ++cur.suspicion_generation;  // cancels any suspicion timer
  cur.confirmers.clear();
  if (before != MemberState::kAlive) {
    SetState(cur, MemberState::kAlive, now);
    out.events.push_back({EventType::kAlive, m.node});
  } else if (meta_changed || addr_changed) {
    out.events.push_back({EventType::kUpdated, m.node});
  }
  QueueBroadcast(m.node, m);
}

void Swim::OnSuspect(const Suspect& m, SteadyTime now, Output& out) {
  if (m.node == name_) {
    if (leaving_ || m.incarnation < incarnation_) return;
    ApplyAwareness(1);  // Lifeguard: being suspected hints that we are the slow one
    Refute(m.incarnation, now);
    return;
  }
  auto it = members_.find(m.node);
  if (it == members_.end()) return;
  Member& cur = *it->second;
  if (m.incarnation < cur.incarnation) return;
  if (cur.state == MemberState::kSuspect) {
    // An independent confirmation shortens the timer; new information is re-gossiped.
    if (cur.confirmers.insert(m.from).second) {
      const int confirmations = static_cast<int>(cur.confirmers.size()) - 1;
      const Millis timeout =
          SuspicionTimeout(cur.suspicion_min, cur.suspicion_max, confirmations, cur.suspicion_k);
      timers_.push_back(Timer{cur.suspicion_start + timeout, TimerKind::kSuspicion, 0, m.node,
                              ++cur.suspicion_generation});
      std::push_heap(timers_.begin(), timers_.end(), std::greater<>());
      QueueBroadcast(m.node, m);
    }
    return;
  }
  if (cur.state != MemberState::kAlive) return;
  cur.incarnation = m.incarnation;
  SetState(cur, MemberState::kSuspect, now);
  ++stats_.suspicions;
  const int n = static_cast<int>(members_.size()) + 1;
  cur.suspicion_start = now;
  cur.suspicion_k = SuspicionConfirmations(config_, n);
  cur.suspicion_min = SuspicionMinTimeout(config_, n);
  cur.suspicion_max = cur.suspicion_min * config_.suspicion_max_timeout_mult;
  cur.confirmers.clear();
  cur.confirmers.insert(m.from);
  const Millis timeout = SuspicionTimeout(cur.suspicion_min, cur.suspicion_max, 0, cur.suspicion_k);
  timers_.push_back(
      Timer{now + timeout, TimerKind::kSuspicion, 0, m.node, ++cur.suspicion_generation});
  std::push_heap(timers_.begin(), timers_.end(), std::greater<>());
  out.events.push_back({EventType::kSuspect, m.node});
  QueueBroadcast(m.node, m);
}

void Swim::OnDead(const Dead& m, SteadyTime now, Output& out) {
  if (m.node == name_) {
    if (leaving_ || m.incarnation < incarnation_) return;
    Refute(m.incarnation, now);
    return;
  }
  auto it = members_.find(m.node);
  if (it == members_.end()) return;
  Member& cur = *it->second;
  if (m.incarnation < cur.incarnation) return;
  ++cur.suspicion_generation;
  cur.confirmers.clear();
  if (!IsLive(cur.state)) return;
  cur.incarnation = m.incarnation;
  const bool left = m.from == m.node;
  SetState(cur, left ? MemberState::kLeft : MemberState::kDead, now);
  ++stats_.deaths;
  out.events.push_back({left ? EventType::kLeft : EventType::kFailed, m.node});
  QueueBroadcast(m.node, m);
}

void Swim::OnLoad(const Load& m, SteadyTime now) {
  if (m.node == name_) return;
  auto it = members_.find(m.node);
  if (it == members_.end()) return;
  Member& cur = *it->second;
  if (m.seq <= cur.load_seq) return;
  cur.load = m.payload;
  cur.load_seq = m.seq;
  cur.load_received = now;
  cur.load_age_ms = m.age_ms;
  broadcasts_->Queue("load/" + m.node, 1, EncodeMessage(m), m, now);
}

void Swim::MergePushPull(const PushPull& m, SteadyTime now, Output& out) {
  for (const PushPullMember& p : m.members) {
    switch (p.state) {
      case MemberState::kAlive:
        OnAlive(Alive{p.incarnation, p.node, p.addr, p.meta, 1, 1}, now, out, true);
        break;
      case MemberState::kLeft:
        OnDead(Dead{p.incarnation, p.node, p.node}, now, out);
        break;
      case MemberState::kDead:
      case MemberState::kSuspect:
        // Another node's verdict is only a suspicion here: let our own timer decide.
        if (Find(p.node) == nullptr && p.node != name_) {
          // Unknown to us: learn it as it was last known alive, then suspect it.
          OnAlive(Alive{p.incarnation, p.node, p.addr, p.meta, 1, 1}, now, out, true);
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
  for (size_t tries = 0; tries < probe_list_.size() && target == nullptr; ++tries) {
    if (probe_index_ >= probe_list_.size()) {
      std::shuffle(probe_list_.begin(), probe_list_.end(), rng_);
      probe_index_ = 0;
    }
    auto it = members_.find(probe_list_[probe_index_++]);
    if (it != members_.end() && IsLive(it->second->state)) target = it->second.get();
  }
  if (target == nullptr) return;
  const uint32_t seq = ++next_seq_;
  auto probe = std::make_unique<Probe>();
  probe->target = target->name;
  probe->start = now;
  probes_[seq] = std::move(probe);
  ++stats_.probes;
  std::vector<std::string> msgs = {EncodeMessage(Ping{seq, target->name, name_, addr_})};
  if (target->state == MemberState::kSuspect) {
    // Carry the suspicion, so the target can refute at once.
    msgs.push_back(EncodeMessage(Suspect{target->incarnation, target->name, name_}));
  }
  SendUdp(target->addr, std::move(msgs), now, out);
  timers_.push_back(
      Timer{now + Scaled(config_.probe_timeout), TimerKind::kProbeDeadline, seq, "", 0});
  std::push_heap(timers_.begin(), timers_.end(), std::greater<>());
  timers_.push_back(Timer{now + Scaled(config_.probe_interval), TimerKind::kProbeEnd, seq, "", 0});
  std::push_heap(timers_.begin(), timers_.end(), std::greater<>());
}

void Swim::ProbeDeadline(uint32_t seq, SteadyTime now, Output& out) {
  auto p = probes_.find(seq);
  if (p == probes_.end()) return;  // acked
  Probe& probe = *p->second;
  auto t = members_.find(probe.target);
  if (t == members_.end()) return;
  const Member& target = *t->second;
  std::vector<const Member*> peers =
      RandomMembers(static_cast<size_t>(config_.indirect_checks), probe.target, false, now);
  for (const Member* peer : peers) {
    if (peer->state != MemberState::kAlive) continue;
    SendUdp(peer->addr,
            {EncodeMessage(IndirectPing{seq, target.name, target.addr, true, name_, addr_})}, now,
            out);
    ++probe.expected_nacks;
  }
  ++stats_.indirect_probes;
  // A TCP ping in parallel catches networks that drop UDP.
  SendTcp(target.addr, Ping{seq, target.name, name_, addr_}, out);
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
  auto t = members_.find(probe.target);
  if (t == members_.end() || !IsLive(t->second->state)) return;
  OnSuspect(Suspect{t->second->incarnation, probe.target, name_}, now, out);
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

void Swim::SuspicionExpired(const std::string& node, uint64_t generation, SteadyTime now,
                            Output& out) {
  auto it = members_.find(node);
  if (it == members_.end()) return;
  Member& m = *it->second;
  if (m.state != MemberState::kSuspect || m.suspicion_generation != generation) return;
  OnDead(Dead{m.incarnation, node, name_}, now, out);
}

void Swim::Gossip(SteadyTime now, Output& out) {
  if (broadcasts_->size() == 0) return;
  const int n = static_cast<int>(members_.size()) + 1;
  const int limit = RetransmitLimit(config_, n);
  for (const Member* peer :
       RandomMembers(static_cast<size_t>(config_.gossip_nodes), "", true, now)) {
    const size_t budget = static_cast<size_t>(config_.udp_buffer_size) - 4;
    std::vector<std::string> msgs = broadcasts_->Take(budget, limit, now);
    if (msgs.empty()) break;
    std::string packet = EncodePacket(msgs);
    ++stats_.packets_out;
    stats_.bytes_out += packet.size();
    out.packets.push_back(Outgoing{peer->addr, Channel::kUdp, std::move(packet)});
  }
}

void Swim::StartPushPull(SteadyTime now, Output& out) {
  std::vector<const Member*> peer = RandomMembers(1, "", false, now);
  if (peer.empty() || peer[0]->state != MemberState::kAlive) return;
  ++stats_.push_pulls;
  SendTcp(peer[0]->addr, LocalState(false), out);
}

void Swim::Reconnect(SteadyTime now, Output& out) {
  (void)now;
  // Sample a few random members; try the first one held dead (not left).
  if (probe_list_.empty()) return;
  std::uniform_int_distribution<size_t> pick(0, probe_list_.size() - 1);
  for (int i = 0; i < 8; ++i) {
    auto it = members_.find(probe_list_[pick(rng_)]);
    if (it == members_.end() || it->second->state != MemberState::kDead) continue;
    ++stats_.push_pulls;
    SendTcp(it->second->addr, LocalState(false), out);
    return;
  }
}

void Swim::Reap(SteadyTime now, Output& out) {
  while (!departed_.empty() && now - departed_.front().second >= config_.dead_node_forget_time) {
    const auto [name, since] = departed_.front();
    departed_.pop_front();
    auto it = members_.find(name);
    // Skip entries made stale by a return to life (or a later departure, queued again).
    if (it == members_.end() || IsLive(it->second->state) || it->second->since != since) continue;
    members_.erase(it);
    auto pos = std::find(probe_list_.begin(), probe_list_.end(), name);
    if (pos != probe_list_.end()) {
      std::swap(*pos, probe_list_.back());
      probe_list_.pop_back();
    }
    out.events.push_back({EventType::kRemoved, name});
  }
  if (probe_index_ > probe_list_.size()) probe_index_ = probe_list_.size();
}

// ---------------------------------------------------------------------------------------------
// Helpers

void Swim::Refute(uint32_t accused_incarnation, SteadyTime now) {
  (void)now;
  incarnation_ = std::max(incarnation_, accused_incarnation) + 1;
  ++stats_.refutations;
  QueueBroadcast(
      name_, Alive{incarnation_, name_, addr_, meta_, config_.protocol_min, config_.protocol_max});
}

void Swim::SendUdp(const std::string& to, std::vector<std::string> messages, SteadyTime now,
                   Output& out) {
  size_t used = 4;
  for (const std::string& m : messages) used += m.size() + 2;
  const size_t size = static_cast<size_t>(config_.udp_buffer_size);
  if (used < size) {
    const int n = static_cast<int>(members_.size()) + 1;
    for (std::string& extra : broadcasts_->Take(size - used, RetransmitLimit(config_, n), now)) {
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
  pp.members.reserve(members_.size() + 1);
  pp.members.push_back(PushPullMember{name_, addr_, incarnation_,
                                      leaving_ ? MemberState::kLeft : MemberState::kAlive, meta_});
  for (const auto& [_, m] : members_) {
    pp.members.push_back(PushPullMember{m->name, m->addr, m->incarnation, m->state, m->meta});
  }
  return pp;
}

void Swim::QueueBroadcast(const std::string& key, const Message& m) {
  broadcasts_->Queue(key, 0, EncodeMessage(m), std::nullopt, SteadyTime{});
}

std::vector<const Swim::Member*> Swim::RandomMembers(size_t k, const std::string& exclude,
                                                     bool include_recently_dead, SteadyTime now) {
  std::vector<const Member*> out;
  if (k == 0 || probe_list_.empty()) return out;
  std::uniform_int_distribution<size_t> pick(0, probe_list_.size() - 1);
  // Random draws with a bounded number of tries: cheap for large tables, exact for small ones.
  const size_t tries =
      std::max<size_t>(3 * k, probe_list_.size() <= 64 ? 4 * probe_list_.size() : 3 * k);
  for (size_t i = 0; i < tries && out.size() < k; ++i) {
    const std::string& name = probe_list_[pick(rng_)];
    if (name == exclude) continue;
    auto it = members_.find(name);
    if (it == members_.end()) continue;
    const Member* m = it->second.get();
    const bool eligible =
        IsLive(m->state) || (include_recently_dead && m->state == MemberState::kDead &&
                             now - m->since < config_.gossip_to_the_dead_time);
    if (!eligible || std::find(out.begin(), out.end(), m) != out.end()) continue;
    out.push_back(m);
  }
  return out;
}

void Swim::AddToProbeList(const std::string& node) {
  // At a random position (swapped in, O(1)), so a new node is probed within about one round.
  probe_list_.push_back(node);
  std::uniform_int_distribution<size_t> pos(0, probe_list_.size() - 1);
  std::swap(probe_list_.back(), probe_list_[pos(rng_)]);
}

void Swim::ApplyAwareness(int delta) {
  awareness_ = std::clamp(awareness_ + delta, 0, config_.awareness_max_multiplier - 1);
}

Millis Swim::Scaled(Millis base) const { return base * (awareness_ + 1); }

void Swim::SetState(Member& m, MemberState state, SteadyTime now) {
  if (IsLive(m.state) && !IsLive(state)) --num_alive_;
  if (!IsLive(m.state) && IsLive(state)) ++num_alive_;
  m.state = state;
  m.since = now;
  if (!IsLive(state)) departed_.emplace_back(m.name, now);
}

}  // namespace hivemesh::membership
