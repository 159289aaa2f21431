// Internal to Swim's source files (swim*.cc): constants and small helpers they share.
#pragma once

#include <algorithm>
#include <cstddef>

#include "membership/config.h"
#include "membership/wire.h"

namespace hivemesh::membership::swim_internal {

// Bytes of load reports one packet may carry on top of its own messages.
inline constexpr size_t kLoadBudget = 256;
// An unchanged load report is re-announced every this many probe intervals.
inline constexpr int kLoadRefreshIntervals = 10;
// How soon after learning of a join a node gossips it (instead of waiting for the next tick).
inline constexpr Millis kEagerGossipDelay{5};

inline bool IsLive(MemberState s) { return s == MemberState::kAlive || s == MemberState::kSuspect; }

// The signature-check budget's burst: a join's push-pull of a full table passes at once.
inline double CheckBurst(const SwimConfig& c) {
  return std::max(static_cast<double>(c.max_claim_checks_per_second), 2.0 * c.max_members);
}

}  // namespace hivemesh::membership::swim_internal
