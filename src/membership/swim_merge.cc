// Swim's merging of what others say: alive claims (signed by the member they are about, checked
// within the signature-check budget, bound to the key of the name's first claim), push-pull
// state exchanges (anti-entropy, joins, and reconnecting to members held dead) and load reports.
// Also this node's own state as it tells it (its signed alive, its push-pull snapshot).
#include <algorithm>

#include "membership/swim.h"
#include "membership/swim_internal.h"

namespace hivemesh::membership {

using swim_internal::CheckBurst;
using swim_internal::IsLive;
using swim_internal::kEagerGossipDelay;
using swim_internal::kLoadRefreshIntervals;

void Swim::OnAlive(const Alive& m, SteadyTime now, Output& out) {
  // News learnt in a push-pull is re-gossiped like any other (as memberlist does): suppressing
  // it was measured to leave nodes unaware of joins, because most nodes learn a joiner through
  // a push-pull and only the few that re-gossip would spread it.
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
  Member* found = table_.Lookup(m.node, &id);
  if (found == nullptr) {
    if (table_.size() >= static_cast<size_t>(config_.max_members) && !MakeRoom(now, out)) {
      ++stats_.members_refused;
      return;
    }
    if (!CheckClaim(m.key, AliveClaimBytes(m), m.sig, now)) return;
    Member& member = table_.Insert(m.node, m.addr, &id, now);
    member.incarnation = m.incarnation;
    member.protocol_min = m.protocol_min;
    member.protocol_max = m.protocol_max;
    table_.SetClaim(member, m.key, m.sig);
    table_.SetMeta(id, m.meta);
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
  if (!table_.KeyOf(cur).empty() && table_.KeyOf(cur) != m.key) {
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
  const bool meta_changed = table_.MetaOf(id) != m.meta;
  const bool addr_changed = table_.AddrOf(cur) != m.addr;
  cur.incarnation = m.incarnation;
  if (addr_changed) table_.SetAddr(cur, m.addr);
  if (meta_changed) table_.SetMeta(id, m.meta);
  table_.SetClaim(cur, m.key, m.sig);
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

void Swim::MergePushPull(const PushPull& m, SteadyTime now, Output& out) {
  for (const PushPullMember& p : m.members) {
    switch (p.state) {
      case MemberState::kAlive:
        OnAlive(AliveOf(p), now, out);
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
        if (p.node == name_ || !StateOf(p.node).has_value()) OnAlive(AliveOf(p), now, out);
        OnSuspect(Suspect{p.incarnation, p.node, name_}, now, out);
        break;
    }
  }
}

void Swim::OnLoad(const Load& m, SteadyTime now) {
  if (m.node == name_) return;
  uint32_t id = kNoId;
  if (table_.Lookup(m.node, &id) == nullptr) return;
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

void Swim::StartPushPull(SteadyTime now, Output& out) {
  std::vector<uint32_t> peer = RandomMembers(1, kNoId, false, now);
  if (peer.empty()) return;
  const Member& m = *table_.Get(peer[0]);
  if (m.state != MemberState::kAlive) return;
  ++stats_.push_pulls;
  const std::string& to = table_.AddrOf(m);
  if (m.protocol_max < 3) return SendTcp(to, LocalState(false), out);
  // Replies that never came are forgotten after two exchange timeouts.
  std::erase_if(digests_sent_,
                [&](const auto& e) { return now - e.second > 2 * config_.tcp_timeout; });
  digests_sent_[to] = now;
  SendTcp(to, LocalDigest(), out);
}

Output Swim::PushSelfToAll(SteadyTime now) {
  (void)now;
  Output out;
  const DigestReply self{{SelfEntry()}, {}};
  const PushPull older{false, self.members};
  for (uint32_t id = 0; id < table_.end_id(); ++id) {
    const Member* m = table_.Get(id);
    if (m == nullptr || m->state != MemberState::kAlive) continue;
    ++stats_.push_pulls;
    if (m->protocol_max >= 3) {
      SendTcp(table_.AddrOf(*m), self, out);
    } else {
      SendTcp(table_.AddrOf(*m), older, out);
    }
  }
  return out;
}

void Swim::Reconnect(SteadyTime now, Output& out) {
  (void)now;
  // Sample a few random members; try the first one held dead (not left).
  if (probe_list_.empty()) return;
  std::uniform_int_distribution<size_t> pick(0, probe_list_.size() - 1);
  for (int i = 0; i < 8; ++i) {
    const Member* m = table_.Get(probe_list_[pick(rng_)]);
    if (m == nullptr || m->state != MemberState::kDead) continue;
    ++stats_.push_pulls;
    SendTcp(table_.AddrOf(*m), LocalState(false), out);
    return;
  }
}

PushPullMember Swim::SelfEntry() const {
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
  return self;
}

PushPullMember Swim::EntryOf(uint32_t id) const {
  const Member& m = *table_.Get(id);
  return PushPullMember{
      table_.NameOf(id),           table_.AddrOf(m), m.incarnation,  m.state,
      table_.MetaOf(id),           m.protocol_min,   m.protocol_max, std::string(table_.KeyOf(m)),
      std::string(table_.SigOf(m))};
}

PushPull Swim::LocalState(bool join) const {
  PushPull pp;
  pp.join = join;
  pp.members.reserve(table_.size() + 1);
  pp.members.push_back(SelfEntry());
  // In probe-list order (which holds every member), not by id: ids depend on what else the
  // process interned, and a run must not (see SimCluster's reproducibility).
  for (uint32_t id : probe_list_) pp.members.push_back(EntryOf(id));
  return pp;
}

namespace {

// At one incarnation a departure outranks a suspicion, which outranks alive. Dead and left rank
// alike: neither replaces the other.
int Rank(MemberState s) {
  switch (s) {
    case MemberState::kAlive:
      return 0;
    case MemberState::kSuspect:
      return 1;
    case MemberState::kDead:
    case MemberState::kLeft:
      return 2;
  }
  return 0;
}

bool Newer(uint64_t inc_a, MemberState a, uint64_t inc_b, MemberState b) {
  return inc_a > inc_b || (inc_a == inc_b && Rank(a) > Rank(b));
}

}  // namespace

Digest Swim::LocalDigest() const {
  Digest d;
  d.entries.reserve(table_.size() + 1);
  d.entries.push_back(
      DigestEntry{name_, incarnation_, leaving_ ? MemberState::kLeft : MemberState::kAlive});
  for (uint32_t id : probe_list_) {
    const Member& m = *table_.Get(id);
    d.entries.push_back(DigestEntry{table_.NameOf(id), m.incarnation, m.state});
  }
  return d;
}

DigestReply Swim::AnswerDigest(const Digest& d) const {
  DigestReply reply;
  std::unordered_map<std::string_view, const DigestEntry*> theirs;
  theirs.reserve(d.entries.size());
  for (const DigestEntry& e : d.entries) theirs[e.node] = &e;
  // What we hold that the digest lacks or holds older; `theirs` keeps what we do not know.
  const auto compare = [&](const std::string& name, uint64_t inc, MemberState state, auto entry) {
    auto t = theirs.find(name);
    if (t == theirs.end()) {
      reply.members.push_back(entry());
      return;
    }
    const DigestEntry& e = *t->second;
    if (Newer(inc, state, e.incarnation, e.state)) {
      reply.members.push_back(entry());
    } else if (Newer(e.incarnation, e.state, inc, state)) {
      reply.want.push_back(name);
    }
    theirs.erase(t);
  };
  compare(name_, incarnation_, leaving_ ? MemberState::kLeft : MemberState::kAlive,
          [&] { return SelfEntry(); });
  for (uint32_t id : probe_list_) {
    const Member& m = *table_.Get(id);
    compare(table_.NameOf(id), m.incarnation, m.state, [&] { return EntryOf(id); });
  }
  for (const DigestEntry& e : d.entries) {
    if (theirs.erase(e.node) > 0) reply.want.push_back(e.node);
  }
  return reply;
}

void Swim::OnDigestReply(std::string_view from, const DigestReply& m, SteadyTime now, Output& out) {
  MergePushPull(PushPull{false, m.members}, now, out);
  auto sent = digests_sent_.find(std::string(from));
  if (sent == digests_sent_.end()) return;  // not an answer to our digest: wants nothing
  digests_sent_.erase(sent);
  if (m.want.empty()) return;
  DigestReply push;
  for (const std::string& name : m.want) {
    uint32_t id = kNoId;
    if (name == name_) {
      push.members.push_back(SelfEntry());
    } else if (table_.Lookup(name, &id) != nullptr) {
      push.members.push_back(EntryOf(id));
    }
    if (push.members.size() > table_.size()) break;  // a forged list repeats names
  }
  if (!push.members.empty()) SendTcp(std::string(from), push, out);
}

Output Swim::RevokeKey(std::string key, SteadyTime now) {
  Output out;
  if (key.empty() || !revoked_keys_.insert(key).second) return out;
  for (uint32_t id = 0; id < table_.end_id(); ++id) {
    Member* m = table_.Get(id);
    if (m == nullptr || table_.KeyOf(*m) != key || !IsLive(m->state)) continue;
    suspicions_.erase(id);  // cancels any suspicion timer
    SetState(id, *m, MemberState::kDead, now);
    ++stats_.deaths;
    out.events.push_back({EventType::kFailed, table_.NameOf(id)});
  }
  return out;
}

void Swim::SignSelf() {
  self_alive_ =
      Alive{incarnation_,      name_, addr_, meta_, config_.protocol_min, config_.protocol_max,
            key_.public_key(), ""};
  self_alive_.sig = key_.Sign(AliveClaimBytes(self_alive_));
}

bool Swim::CheckClaim(std::string_view key, std::string_view bytes, std::string_view sig,
                      SteadyTime now) {
  if (revoked_keys_.find(key) != revoked_keys_.end()) {
    ++stats_.claims_revoked;
    return false;
  }
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

}  // namespace hivemesh::membership
