// Timeouts that clients give, and the deadlines made from them: one rule for every API (REST's
// `timeout` parameter and Inference-Timeout-Ms header, gRPC's `timeout` parameter and call
// deadline), so that no client number reaches the clocks' arithmetic unchecked.
//
// The rule: a timeout must be a positive whole number of milliseconds (else INVALID_ARGUMENT
// naming the field); one longer than kMaxRequestTimeout (24 h) is cut to it. A client that sends
// INT64_MAX means "take your time", and 24 h is that on any device; cut there, now + timeout
// stays far inside the range of every clock, so deadlines can be added to, subtracted and passed
// on to peers without overflow.
//
// Pure functions, safe from any thread.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/clock.h"

namespace hivemesh {

// The longest time a request may ask to be given; longer timeouts are cut to it.
inline constexpr std::chrono::milliseconds kMaxRequestTimeout = std::chrono::hours(24);

// A timeout of `ms` milliseconds given by a client in `field` (named in the error), cut to
// kMaxRequestTimeout. INVALID_ARGUMENT if `ms` is not positive.
inline absl::StatusOr<std::chrono::milliseconds> ClientTimeoutMs(int64_t ms,
                                                                 std::string_view field) {
  if (ms <= 0) {
    return absl::InvalidArgumentError(std::string(field) +
                                      ": must be a positive whole number of milliseconds");
  }
  return std::chrono::milliseconds(std::min<int64_t>(ms, kMaxRequestTimeout.count()));
}
inline absl::StatusOr<std::chrono::milliseconds> ClientTimeoutMs(uint64_t ms,
                                                                 std::string_view field) {
  const uint64_t max = static_cast<uint64_t>(kMaxRequestTimeout.count());
  return ClientTimeoutMs(static_cast<int64_t>(std::min(ms, max)), field);
}

// The time left before a deadline a client set on its call (gRPC's), given as `seconds` +
// `nanos` (how gRPC carries it; either part may be huge or negative), as a duration in
// [0, kMaxRequestTimeout]: 0 if the deadline has passed, kMaxRequestTimeout if it lies further
// ahead, however far.
inline Nanos ClampedRemaining(int64_t seconds, int64_t nanos) {
  const int64_t max_s =
      std::chrono::duration_cast<std::chrono::seconds>(kMaxRequestTimeout).count();
  if (seconds < 0 || (seconds == 0 && nanos <= 0)) return Nanos(0);
  if (seconds >= max_s) return kMaxRequestTimeout;
  nanos = std::clamp<int64_t>(nanos, -1'000'000'000, 1'000'000'000);
  const Nanos left = std::chrono::seconds(seconds) + Nanos(nanos);
  return std::clamp<Nanos>(left, Nanos(0), kMaxRequestTimeout);
}

// The deadline `timeout` after `start`. REQUIRES: 0 <= timeout <= kMaxRequestTimeout (what the
// functions above give), so the sum cannot overflow for any time a steady clock shows.
inline SteadyTime DeadlineAfter(SteadyTime start, Nanos timeout) {
  return start + std::clamp<Nanos>(timeout, Nanos(0), kMaxRequestTimeout);
}

}  // namespace hivemesh
