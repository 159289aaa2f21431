// Placement without a scheduler (docs/services.md, "Workloads the node runs"): which members run
// a workload's replicas, computed alike by every node from the same membership view.
//
// Every member that matches the workload's node selector (hivemesh.io/node-selector:
// "zone=east,hardware=npu") and is not draining is ranked by rendezvous hashing: a stable 64-bit
// hash of (workload name, member name), highest first. The top `replicas` run it; with
// hivemesh.io/replicas-per-zone: N, the top N of each zone (the "zone" label) instead. A member
// leaving moves only the replicas it ran; one joining takes only those it now ranks top for.
//
// Pure: no clock, no I/O. Thread safety: every function may be called from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "services/manifest.h"

namespace hivemesh::services {

inline constexpr std::string_view kNodeSelectorAnnotation = "hivemesh.io/node-selector";
inline constexpr std::string_view kReplicasPerZoneAnnotation = "hivemesh.io/replicas-per-zone";

struct Candidate {
  std::string name;
  Labels labels;
  bool draining = false;
};

struct PlacementRule {
  int replicas = 1;
  Labels node_selector;       // every label must match
  int replicas_per_zone = 0;  // 0: `replicas` across the mesh
};

// The rule a Deployment's manifest states. INVALID_ARGUMENT naming the annotation.
absl::StatusOr<PlacementRule> RuleOf(const Manifest& deployment);

// The rendezvous weight of `member` for `workload`: the same on every node and in every run.
uint64_t RendezvousWeight(std::string_view workload, std::string_view member);

// The members that run `workload`, best ranked first.
std::vector<std::string> Place(std::string_view workload, const PlacementRule& rule,
                               const std::vector<Candidate>& members);

}  // namespace hivemesh::services
