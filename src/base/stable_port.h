// Picking a loopback port for a process that is started afterwards (the demo's nodes, tests'
// agents).
#pragma once

#include "absl/status/statusor.h"

namespace hivemesh {

// A loopback port free for both TCP and UDP right now (gossip uses both on one port), chosen
// outside the kernel's ephemeral range (net.ipv4.ip_local_port_range): an ephemeral port can be
// taken by any process's outgoing connection between this call and the moment its new owner
// binds it, which made nodes fail to start when many processes ran side by side.
absl::StatusOr<int> StablePort();

// True if `port` on 127.0.0.1 can be bound right now for both TCP and UDP.
bool LoopbackPortFree(int port);

}  // namespace hivemesh
