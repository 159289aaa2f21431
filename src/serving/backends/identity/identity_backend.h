// The `identity` backend: returns each input as the output at the same position in the config
// (input i -> output i), with the output's name. The zero-compute model for measuring overhead.
//
// Options:
//   delay_us: busy-free simulated compute time per request (sleep), default 0. Lets tests and
//             benchmarks model a slow device without a heavy model.
#pragma once

#include "serving/backend.h"

namespace hivemesh {

void RegisterIdentityBackend(BackendRegistry& registry);

}  // namespace hivemesh
