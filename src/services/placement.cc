#include "services/placement.h"

#include <algorithm>
#include <map>

#include "base/strings.h"

namespace hivemesh::services {
namespace {

// FNV-1a, then a splitmix64 finish: stable across builds and machines (std::hash is not).
uint64_t StableHash(std::string_view a, std::string_view b) {
  uint64_t h = 0xcbf29ce484222325ULL;
  const auto mix = [&h](std::string_view s) {
    for (const char c : s) {
      h ^= static_cast<uint8_t>(c);
      h *= 0x100000001b3ULL;
    }
  };
  mix(a);
  mix(std::string_view("\0", 1));
  mix(b);
  h += 0x9e3779b97f4a7c15ULL;
  h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ULL;
  h = (h ^ (h >> 27)) * 0x94d049bb133111ebULL;
  return h ^ (h >> 31);
}

}  // namespace

uint64_t RendezvousWeight(std::string_view workload, std::string_view member) {
  return StableHash(workload, member);
}

absl::StatusOr<PlacementRule> RuleOf(const Manifest& deployment) {
  PlacementRule rule;
  rule.replicas = deployment.workload.replicas;
  if (auto it = deployment.annotations.find(std::string(kNodeSelectorAnnotation));
      it != deployment.annotations.end()) {
    for (std::string_view pair : Split(it->second, ',')) {
      while (!pair.empty() && pair.front() == ' ') pair.remove_prefix(1);
      while (!pair.empty() && pair.back() == ' ') pair.remove_suffix(1);
      if (pair.empty()) continue;
      const size_t eq = pair.find('=');
      if (eq == std::string_view::npos || eq == 0) {
        return absl::InvalidArgumentError(
            StrCat(kNodeSelectorAnnotation, ": '", pair.substr(0, 64),
                   "' is not label=value (e.g. zone=east,hardware=npu)"));
      }
      rule.node_selector.emplace(std::string(pair.substr(0, eq)), std::string(pair.substr(eq + 1)));
    }
  }
  if (auto it = deployment.annotations.find(std::string(kReplicasPerZoneAnnotation));
      it != deployment.annotations.end()) {
    std::optional<uint64_t> n = ParseUint(it->second);
    if (!n || *n < 1 || *n > static_cast<uint64_t>(kMaxReplicas)) {
      return absl::InvalidArgumentError(
          StrCat(kReplicasPerZoneAnnotation, ": must be 1 to ", kMaxReplicas));
    }
    rule.replicas_per_zone = static_cast<int>(*n);
  }
  return rule;
}

std::vector<std::string> Place(std::string_view workload, const PlacementRule& rule,
                               const std::vector<Candidate>& members) {
  std::vector<std::pair<uint64_t, const Candidate*>> ranked;
  for (const Candidate& m : members) {
    if (m.draining) continue;
    bool matches = true;
    for (const auto& [key, value] : rule.node_selector) {
      auto it = m.labels.find(key);
      matches = matches && it != m.labels.end() && it->second == value;
    }
    if (matches) ranked.emplace_back(RendezvousWeight(workload, m.name), &m);
  }
  // Highest weight first; a tie (never in practice) by name, so the order is total.
  std::sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : a.second->name < b.second->name;
  });
  std::vector<std::string> out;
  if (rule.replicas_per_zone > 0) {
    std::map<std::string, int> per_zone;
    for (const auto& [weight, m] : ranked) {
      auto zone = m->labels.find("zone");
      int& taken = per_zone[zone == m->labels.end() ? std::string() : zone->second];
      if (taken < rule.replicas_per_zone) {
        ++taken;
        out.push_back(m->name);
      }
    }
    return out;
  }
  for (const auto& [weight, m] : ranked) {
    if (static_cast<int>(out.size()) >= rule.replicas) break;
    out.push_back(m->name);
  }
  return out;
}

}  // namespace hivemesh::services
