// Swim's failure detector: probing one member per interval (direct ping, then indirect pings
// through `indirect_checks` peers and a TCP ping), relaying other members' indirect pings
// (with Lifeguard's nack), and local health (Lifeguard's awareness score, which stretches this
// node's own probe interval and timeout while it misses acks and nacks). A probe that fails to
// the end of its interval turns into an accusation (OnSuspect, swim_suspicion.cc).
#include <algorithm>

#include "membership/swim.h"
#include "membership/swim_internal.h"

namespace hivemesh::membership {

using swim_internal::IsLive;

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
  PushTimer(Timer{now + config_.probe_timeout * 4 / 5, TimerKind::kRelayDeadline, seq, kNoId, 0});
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

void Swim::StartProbe(SteadyTime now, Output& out) {
  const Member* target = nullptr;
  uint32_t target_id = kNoId;
  for (size_t tries = 0; tries < probe_list_.size() && target == nullptr; ++tries) {
    if (probe_index_ >= probe_list_.size()) {
      std::shuffle(probe_list_.begin(), probe_list_.end(), rng_);
      probe_index_ = 0;
    }
    const uint32_t id = probe_list_[probe_index_++];
    const Member* m = table_.Get(id);
    if (m != nullptr && IsLive(m->state)) {
      target = m;
      target_id = id;
    }
  }
  if (target == nullptr) return;
  ProbeMember(target_id, *target, /*watch=*/false, now, out);
}

void Swim::ProbeMember(uint32_t target_id, const Member& target, bool watch, SteadyTime now,
                       Output& out) {
  const uint32_t seq = ++next_seq_;
  auto probe = std::make_unique<Probe>();
  probe->target = target_id;
  probe->start = now;
  probe->watch = watch;
  probes_[seq] = std::move(probe);
  ++stats_.probes;
  const std::string& target_name = table_.NameOf(target_id);
  std::vector<std::string> msgs = {EncodeMessage(Ping{seq, target_name, name_, addr_})};
  if (target.state == MemberState::kSuspect) {
    // Carry the suspicion, so the target can refute at once.
    msgs.push_back(EncodeMessage(Suspect{target.incarnation, target_name, name_}));
  }
  SendUdp(table_.AddrOf(target), std::move(msgs), now, out);
  PushTimer(Timer{now + Scaled(config_.probe_timeout), TimerKind::kProbeDeadline, seq, kNoId, 0});
  PushTimer(Timer{now + Scaled(config_.probe_interval), TimerKind::kProbeEnd, seq, kNoId, 0});
}

void Swim::ProbeDeadline(uint32_t seq, SteadyTime now, Output& out) {
  auto p = probes_.find(seq);
  if (p == probes_.end()) return;  // acked
  Probe& probe = *p->second;
  const Member* t = table_.Get(probe.target);
  if (t == nullptr) return;
  const Member& target = *t;
  const std::string& target_name = table_.NameOf(probe.target);
  const std::string& target_addr = table_.AddrOf(target);
  std::vector<uint32_t> peers =
      RandomMembers(static_cast<size_t>(config_.indirect_checks), probe.target, false, now);
  for (uint32_t peer_id : peers) {
    const Member& peer = *table_.Get(peer_id);
    if (peer.state != MemberState::kAlive) continue;
    SendUdp(table_.AddrOf(peer),
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
  const Member* t = table_.Get(probe.target);
  if (t == nullptr || !IsLive(t->state)) return;
  Millis fast(0);
  if (probe.watch) {
    fast = config_.watch_suspicion_timeout > Millis(0) ? config_.watch_suspicion_timeout
                                                       : config_.probe_interval;
  }
  OnSuspect(Suspect{t->incarnation, table_.NameOf(probe.target), name_}, now, out, fast);
}

Output Swim::WatchClosed(std::string_view name, SteadyTime now) {
  Output out;
  uint32_t id = kNoId;
  const Member* m = table_.Lookup(name, &id);
  if (m == nullptr || m->state != MemberState::kAlive || leaving_) return out;
  auto [last, first] = watch_probed_.try_emplace(id, now);
  if (!first && now - last->second < 2 * config_.probe_interval) return out;
  last->second = now;
  ++stats_.watch_closed;
  ProbeMember(id, *m, /*watch=*/true, now, out);
  return out;
}

namespace {
// FNV-1a: the same ring on every node and in every build.
uint64_t RingHash(std::string_view s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}
}  // namespace

std::vector<WatchTarget> Swim::WatchTargets() const {
  std::vector<WatchTarget> out;
  if (config_.watchers <= 0 || leaving_) return out;
  const uint64_t self = RingHash(name_);
  std::vector<std::pair<uint64_t, uint32_t>> ring;  // clockwise distance from this node, id
  for (uint32_t id : probe_list_) {
    const Member* m = table_.Get(id);
    if (m == nullptr || m->state != MemberState::kAlive || m->protocol_max < 2) continue;
    ring.emplace_back(RingHash(table_.NameOf(id)) - self, id);
  }
  const size_t k = std::min(ring.size(), static_cast<size_t>(config_.watchers));
  std::partial_sort(ring.begin(), ring.begin() + static_cast<std::ptrdiff_t>(k), ring.end());
  for (size_t i = 0; i < k; ++i) {
    const Member& m = *table_.Get(ring[i].second);
    out.push_back(WatchTarget{table_.NameOf(ring[i].second), table_.AddrOf(m)});
  }
  return out;
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

}  // namespace hivemesh::membership
