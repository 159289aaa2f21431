// The service-time average a model runtime keeps for routing and batching: an exponentially
// weighted mean in which the newest sample weighs 1/5, in whole nanoseconds. A pure function.
//
// The first sample (the average is 0: nothing measured yet) is taken as it is. Integer
// arithmetic, rounding down: (previous x 4 + sample) / 5.
#pragma once

#include <cstdint>

namespace hivemesh {

// The average after `sample_ns`, given the average before it (0: no sample yet).
// REQUIRES: prev_ns <= UINT64_MAX / 5 (about 117 years).
constexpr uint64_t NextServiceEwma(uint64_t prev_ns, uint64_t sample_ns) {
  return prev_ns == 0 ? sample_ns : (prev_ns * 4 + sample_ns) / 5;
}

}  // namespace hivemesh
