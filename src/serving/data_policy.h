// A model's data policy: where its raw inputs may be sent for inference. `local-only`: only the
// node that received them; `zone`: nodes that share that node's `zone` label; `mesh`: any node.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace hivemesh {

enum class DataPolicy : uint8_t { kMesh = 0, kZone = 1, kLocalOnly = 2 };

inline std::string_view DataPolicyName(DataPolicy policy) {
  switch (policy) {
    case DataPolicy::kLocalOnly:
      return "local-only";
    case DataPolicy::kZone:
      return "zone";
    case DataPolicy::kMesh:
      break;
  }
  return "mesh";
}

inline std::optional<DataPolicy> DataPolicyFromName(std::string_view name) {
  if (name == "local-only") return DataPolicy::kLocalOnly;
  if (name == "zone") return DataPolicy::kZone;
  if (name == "mesh") return DataPolicy::kMesh;
  return std::nullopt;
}

// The stricter of two policies.
inline DataPolicy Strictest(DataPolicy a, DataPolicy b) { return a > b ? a : b; }

}  // namespace hivemesh
