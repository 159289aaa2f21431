// Swim's public calls, message dispatch, the timer loop, sending and gossip. The protocol's parts
// live beside it: swim_probe.cc (probing, local health), swim_suspicion.cc (accusations,
// refutation, forgetting), swim_merge.cc (claims, push-pull, load reports).
#include "membership/swim.h"

#include <algorithm>

#include "membership/swim_internal.h"

namespace hivemesh::membership {

using swim_internal::CheckBurst;
using swim_internal::IsLive;
using swim_internal::kLoadBudget;
using swim_internal::kLoadRefreshIntervals;

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
  if (other.watched_by) watched_by = std::move(other.watched_by);
}

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

Swim::~Swim() = default;

Output Swim::Bootstrap(const PushPull& state, SteadyTime now) {
  Output out;
  // Size the table once: the ids of a converged cluster's names are known up front.
  uint32_t max_id = 0;
  for (const PushPullMember& p : state.members) {
    if (std::optional<uint32_t> id = MemberTable::NameId(p.node)) max_id = std::max(max_id, *id);
  }
  // Room for a few joins (1/16) without reallocating: at 10,000 members per node a regrown
  // table both copies and leaves behind a hole the size of the table.
  const size_t room = state.members.size() / 16 + 16;
  table_.Reserve(max_id, room);
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
    next_push_pull_ = now + PushPullInterval(config_, static_cast<int>(table_.size()) + 1);
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
      Reply(LocalState(false), out);
    } else if (const auto* d = std::get_if<Digest>(&m)) {
      Reply(AnswerDigest(*d), out);
    } else if (const auto* push = std::get_if<DigestReply>(&m)) {
      // The entries we asked for after answering this member's digest. Received on a stream,
      // a digest reply never asks for more: the answer is empty.
      MergePushPull(PushPull{false, push->members}, now, out);
      Reply(DigestReply{}, out);
    } else if (const auto* w = std::get_if<Watch>(&m)) {
      // Only a member may watch this node (a stranger would only hold a connection open).
      const std::optional<MemberState> state = StateOf(w->source);
      if (leaving_ || !state || !IsLive(*state)) continue;
      Reply(Ack{0}, out);
      out.watched_by = w->source;
    } else {
      Dispatch(from, m, Channel::kTcp, now, out);
    }
  }
  return out;
}

std::vector<MemberInfo> Swim::Members() const {
  std::vector<MemberInfo> out;
  out.reserve(table_.size() + 1);
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
  for (uint32_t id = 0; id < table_.end_id(); ++id) {
    if (const Member* m = table_.Get(id)) out.push_back(InfoOf(id, *m));
  }
  std::sort(out.begin(), out.end(),
            [](const MemberInfo& a, const MemberInfo& b) { return a.name < b.name; });
  return out;
}

std::optional<MemberInfo> Swim::Find(std::string_view name) const {
  if (name == name_) return std::nullopt;
  uint32_t id = kNoId;
  const Member* m = table_.Lookup(name, &id);
  if (m == nullptr) return std::nullopt;
  return InfoOf(id, *m);
}

std::optional<MemberState> Swim::StateOf(std::string_view name) const {
  if (name == name_) return std::nullopt;
  uint32_t id = kNoId;
  const Member* m = table_.Lookup(name, &id);
  if (m == nullptr) return std::nullopt;
  return m->state;
}

int Swim::NumAlive() const { return num_alive_; }

size_t Swim::QueuedBroadcasts() const { return broadcasts_->size(); }

// ---------------------------------------------------------------------------------------------
// Decoding and dispatch

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
          OnAlive(msg, now, out);
        } else if constexpr (std::is_same_v<T, Dead>) {
          OnDead(msg, now, out);
        } else if constexpr (std::is_same_v<T, PushPull>) {
          // A push-pull reply to an exchange this node started.
          MergePushPull(msg, now, out);
          joined_ = true;
        } else if constexpr (std::is_same_v<T, Load>) {
          OnLoad(msg, now);
        } else if constexpr (std::is_same_v<T, DigestReply>) {
          if (channel == Channel::kTcp) OnDigestReply(from, msg, now, out);
        }  // a Watch or a Digest means something only as the first frame of a stream
      },
      m);
}

// ---------------------------------------------------------------------------------------------
// Timers, sending and gossip

void Swim::PushTimer(const Timer& t) {
  timers_.push_back(t);
  std::push_heap(timers_.begin(), timers_.end(), std::greater<>());
}

void Swim::Gossip(SteadyTime now, Output& out) {
  // Load reports alone never start a gossip round: they ride on packets that go out anyway
  // (pings, acks, membership gossip), so a mesh at rest stays as quiet as its probes.
  if (!broadcasts_->HasMembershipUpdates()) return;
  const int n = static_cast<int>(table_.size()) + 1;
  const int limit = RetransmitLimit(config_, n);
  for (uint32_t peer : RandomMembers(static_cast<size_t>(config_.gossip_nodes), kNoId, true, now)) {
    const size_t budget = static_cast<size_t>(config_.udp_buffer_size) - 4;
    std::vector<std::string> msgs = broadcasts_->Take(budget, limit, now, kLoadBudget);
    if (msgs.empty()) break;
    std::string packet = EncodePacket(msgs);
    ++stats_.packets_out;
    stats_.bytes_out += packet.size();
    out.packets.push_back(
        Outgoing{table_.AddrOf(*table_.Get(peer)), Channel::kUdp, std::move(packet)});
  }
}

void Swim::SendUdp(const std::string& to, std::vector<std::string> messages, SteadyTime now,
                   Output& out) {
  size_t used = 4;
  for (const std::string& m : messages) used += m.size() + 2;
  const size_t size = static_cast<size_t>(config_.udp_buffer_size);
  if (used < size) {
    const int n = static_cast<int>(table_.size()) + 1;
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

void Swim::Reply(const Message& m, Output& out) {
  std::string reply = EncodePacket({EncodeMessage(m)});
  ++stats_.packets_out;
  stats_.bytes_out += reply.size();
  out.reply = std::move(reply);
}

void Swim::SendTcp(const std::string& to, const Message& m, Output& out) {
  std::string packet = EncodePacket({EncodeMessage(m)});
  ++stats_.packets_out;
  stats_.bytes_out += packet.size();
  out.packets.push_back(Outgoing{to, Channel::kTcp, std::move(packet)});
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
    const Member* m = table_.Get(id);
    if (m == nullptr) continue;
    const bool eligible =
        IsLive(m->state) || (include_recently_dead && m->state == MemberState::kDead &&
                             now - m->since < config_.gossip_to_the_dead_time);
    if (!eligible || std::find(out.begin(), out.end(), id) != out.end()) continue;
    out.push_back(id);
  }
  return out;
}

MemberInfo Swim::InfoOf(uint32_t id, const Member& m) const {
  MemberInfo info;
  info.name = table_.NameOf(id);
  info.addr = table_.AddrOf(m);
  info.meta = table_.MetaOf(id);
  info.key = std::string(table_.KeyOf(m));
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
