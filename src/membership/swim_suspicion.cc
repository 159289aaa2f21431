// Swim's accusations and their answers: a suspect message starts or confirms a Lifeguard
// suspicion (suspicion.h; only its first k confirmations from distinct members are counted and
// re-gossiped), an expired suspicion or a dead message declares a member dead, a member's own
// signed leave marks it left, and a node accused itself refutes with a higher incarnation.
// Departed members are forgotten after dead_node_forget_time (Reap), or sooner to make room for
// a new one when the table is full (MakeRoom).
//
// Accusations never raise a member's incarnation above one it signed, and a node refutes only
// accusations at its own incarnation or proven by its own signature (swim.h, "Who may say what").
#include <algorithm>

#include "membership/swim.h"
#include "membership/swim_internal.h"

namespace hivemesh::membership {

using swim_internal::IsLive;

void Swim::OnSuspect(const Suspect& m, SteadyTime now, Output& out, Millis fast) {
  if (m.node == name_) {
    if (leaving_ || m.incarnation < incarnation_) return;
    if (m.incarnation > incarnation_) {
      // Nobody can know an incarnation of ours that we never signed; a restart's lost one
      // comes back with our signature in a push-pull (OnAlive, swim_merge.cc).
      ++stats_.accusations_ignored;
      return;
    }
    ApplyAwareness(1);  // Lifeguard: being suspected hints that we are the slow one
    Refute(m.incarnation, now);
    return;
  }
  uint32_t id = kNoId;
  Member* found = table_.Lookup(m.node, &id);
  if (found == nullptr) return;
  Member& cur = *found;
  // An accusation is taken at the member's own incarnation at most: it never raises it.
  if (m.incarnation < cur.incarnation) return;
  if (cur.state == MemberState::kSuspect && fast > Millis(0)) {
    // This node's own watch saw the member's connection close and its probe failed: the running
    // suspicion ends no later than `fast` from now.
    auto s = suspicions_.find(id);
    if (s == suspicions_.end() || s->second.suspicion.Deadline() <= now + fast) return;
    s->second.suspicion = Suspicion(m.from, 0, fast, fast, now);
    s->second.generation = ++next_generation_;
    PushTimer(
        Timer{s->second.suspicion.Deadline(), TimerKind::kSuspicion, 0, id, s->second.generation});
    return;
  }
  if (cur.state == MemberState::kSuspect) {
    // A confirmation, from a member we know. Counted (and re-gossiped) only if it comes from a
    // member not heard before and fewer than k are in; then it shortens the timer.
    if (m.from != name_ && !StateOf(m.from).has_value()) return;
    auto s = suspicions_.find(id);
    if (s == suspicions_.end() || !s->second.suspicion.Confirm(m.from)) return;
    s->second.generation = ++next_generation_;
    PushTimer(
        Timer{s->second.suspicion.Deadline(), TimerKind::kSuspicion, 0, id, s->second.generation});
    QueueBroadcast(m.node, Suspect{cur.incarnation, m.node, m.from});
    return;
  }
  if (cur.state != MemberState::kAlive) return;
  SetState(id, cur, MemberState::kSuspect, now);
  ++stats_.suspicions;
  const int n = static_cast<int>(table_.size()) + 1;
  const Millis min = SuspicionMinTimeout(config_, n);
  const Suspicion suspicion = fast > Millis(0)
                                  ? Suspicion(m.from, 0, fast, fast, now)
                                  : Suspicion(m.from, SuspicionConfirmations(config_, n), min,
                                              min * config_.suspicion_max_timeout_mult, now);
  const uint64_t generation = ++next_generation_;
  suspicions_.insert_or_assign(id, Suspected{suspicion, generation});
  PushTimer(Timer{suspicion.Deadline(), TimerKind::kSuspicion, 0, id, generation});
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
  Member* found = table_.Lookup(m.node, &id);
  if (found == nullptr) return;
  Member& cur = *found;
  // An accusation is taken at the member's own incarnation at most: it never raises it.
  if (m.incarnation < cur.incarnation || !IsLive(cur.state)) return;
  // Only the member itself can say it left.
  if (leave && !CheckClaim(table_.KeyOf(cur), LeaveClaimBytes(m), m.sig, now)) return;
  suspicions_.erase(id);  // cancels any suspicion timer
  if (leave) {
    cur.incarnation = m.incarnation;
    table_.SetClaim(cur, table_.KeyOf(cur), m.sig);
  }
  SetState(id, cur, leave ? MemberState::kLeft : MemberState::kDead, now);
  ++stats_.deaths;
  out.events.push_back({leave ? EventType::kLeft : EventType::kFailed, m.node});
  QueueBroadcast(m.node, leave ? m : Dead{cur.incarnation, m.node, m.from, ""});
}

void Swim::SuspicionExpired(uint32_t node, uint64_t generation, SteadyTime now, Output& out) {
  const Member* m = table_.Get(node);
  if (m == nullptr || m->state != MemberState::kSuspect) return;
  auto s = suspicions_.find(node);
  if (s == suspicions_.end() || s->second.generation != generation) return;
  OnDead(Dead{m->incarnation, table_.NameOf(node), name_}, now, out);
}

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

void Swim::SetState(uint32_t id, Member& m, MemberState state, SteadyTime now) {
  if (IsLive(m.state) && !IsLive(state)) --num_alive_;
  if (!IsLive(m.state) && IsLive(state)) ++num_alive_;
  m.state = state;
  m.since = now;
  if (!IsLive(state)) departed_.emplace_back(id, now);
}

void Swim::Reap(SteadyTime now, Output& out) {
  while (!departed_.empty() && now - departed_.front().second >= config_.dead_node_forget_time) {
    const auto [id, since] = departed_.front();
    departed_.pop_front();
    const Member* m = table_.Get(id);
    // Skip entries made stale by a return to life (or a later departure, queued again).
    if (m == nullptr || IsLive(m->state) || m->since != since) continue;
    Forget(id, out);
  }
}

bool Swim::MakeRoom(SteadyTime now, Output& out) {
  (void)now;
  // The member that departed longest ago goes first, as Reap would take it later.
  while (!departed_.empty()) {
    const auto [id, since] = departed_.front();
    departed_.pop_front();
    const Member* m = table_.Get(id);
    if (m == nullptr || IsLive(m->state) || m->since != since) continue;  // stale entry
    Forget(id, out);
    return true;
  }
  return false;
}

void Swim::Forget(uint32_t id, Output& out) {
  auto pos = std::find(probe_list_.begin(), probe_list_.end(), id);
  if (pos != probe_list_.end()) {
    std::swap(*pos, probe_list_.back());
    probe_list_.pop_back();
  }
  if (probe_index_ > probe_list_.size()) probe_index_ = probe_list_.size();
  out.events.push_back({EventType::kRemoved, table_.NameOf(id)});
  loads_.erase(id);
  suspicions_.erase(id);
  watch_probed_.erase(id);
  table_.Erase(id);
}

}  // namespace hivemesh::membership
