// Suspicion: Lifeguard's suspicion of one member, from the first accusation until the member is
// declared dead or refutes. A value type with no clock of its own: every question about time
// takes `now`.
//
// The timeout runs from the first accusation. It starts at `max` and shrinks toward `min` as
// independent confirmations arrive (log-scaled: SuspicionTimeout below), reaching `min` at the
// k-th. A confirmation counts once per member: the first accuser and every confirmer are
// remembered, a member repeating itself is no news. Once k confirmations are counted the timeout
// is at its minimum and no further one is counted. Confirm() says whether a confirmation was
// counted, and only a counted one is worth gossiping on: so a suspicion spreads with its first k
// confirmations and then stops, however many members go on suspecting (as memberlist's
// suspicion does).
//
// Thread safety: none (a value; its owner serializes access).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/clock.h"
#include "membership/config.h"

namespace hivemesh::membership {

// The Lifeguard timeout after `confirmations` independent confirmations, k expected:
// max - (ln(c + 1) / ln(k + 1)) x (max - min), never below min. k <= 0 gives min.
Millis SuspicionTimeout(Millis min, Millis max, int confirmations, int k);

class Suspicion {
 public:
  // `accuser` suspects the member at `start`; `k` confirmations bring the timeout from `max`
  // down to `min`. REQUIRES: min <= max.
  Suspicion(std::string_view accuser, int k, Millis min, Millis max, SteadyTime start);

  // Counts `from`'s confirmation. True if it counted: `from` is neither the accuser nor a member
  // counted before, and fewer than k had been counted. Only then does the deadline move (never
  // later) and is the news worth re-gossiping; false: nothing changed.
  bool Confirm(std::string_view from);

  int confirmations() const { return confirmations_; }
  int k() const { return k_; }
  SteadyTime start() const { return start_; }
  // The whole timeout, from start(), after the confirmations counted so far.
  Millis Timeout() const { return SuspicionTimeout(min_, max_, confirmations_, k_); }
  // When the member is to be declared dead.
  SteadyTime Deadline() const { return start_ + Timeout(); }
  // Time left at `now`; zero once the deadline has passed.
  Nanos Remaining(SteadyTime now) const;
  bool Expired(SteadyTime now) const { return now >= Deadline(); }

 private:
  SteadyTime start_;
  Millis min_;
  Millis max_;
  int k_;
  int confirmations_ = 0;
  // The accuser, then each counted confirmer: at most k + 1 names, so a linear search is cheap.
  std::vector<std::string> accusers_;
};

}  // namespace hivemesh::membership
