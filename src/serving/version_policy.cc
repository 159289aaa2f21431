#include "serving/version_policy.h"

#include <algorithm>

#include "base/strings.h"

namespace hivemesh {

std::vector<int64_t> VersionPolicy::Select(const std::vector<int64_t>& available) const {
  std::vector<int64_t> sorted = available;
  std::sort(sorted.begin(), sorted.end());
  sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
  switch (kind) {
    case Kind::kAll:
      return sorted;
    case Kind::kLatest: {
      const size_t n = std::min(sorted.size(), static_cast<size_t>(std::max(0, latest)));
      return std::vector<int64_t>(sorted.end() - static_cast<std::ptrdiff_t>(n), sorted.end());
    }
    case Kind::kSpecific: {
      std::vector<int64_t> out;
      std::set_intersection(sorted.begin(), sorted.end(), specific.begin(), specific.end(),
                            std::back_inserter(out));
      return out;
    }
  }
  return {};
}

std::string VersionPolicy::ToString() const {
  switch (kind) {
    case Kind::kAll:
      return "all";
    case Kind::kLatest:
      return StrCat("latest ", latest);
    case Kind::kSpecific: {
      std::string out = "specific [";
      for (size_t i = 0; i < specific.size(); ++i) StrAppend(&out, i ? ", " : "", specific[i]);
      return out + "]";
    }
  }
  return "";
}

ReloadPlan PlanReload(const VersionPolicy& policy, const std::map<int64_t, uint64_t>& on_disk,
                      const std::map<int64_t, uint64_t>& serving) {
  std::vector<int64_t> available;
  for (const auto& [v, _] : on_disk) available.push_back(v);
  const std::vector<int64_t> wanted = policy.Select(available);
  ReloadPlan plan;
  for (int64_t v : wanted) {
    auto s = serving.find(v);
    if (s != serving.end() && s->second == on_disk.at(v)) {
      plan.keep.push_back(v);
    } else {
      plan.load.push_back(v);
    }
  }
  for (const auto& [v, _] : serving) {
    if (!std::binary_search(wanted.begin(), wanted.end(), v)) plan.retire.push_back(v);
  }
  if (policy.kind == VersionPolicy::Kind::kSpecific) {
    for (int64_t v : policy.specific) {
      if (!on_disk.contains(v)) plan.missing.push_back(v);
    }
  }
  return plan;
}

std::vector<int64_t> RetireAfterReload(const ReloadPlan& plan,
                                       const std::map<int64_t, uint64_t>& serving,
                                       const std::vector<int64_t>& failed) {
  std::vector<int64_t> out;
  for (int64_t v : plan.load) {
    const bool loaded = std::find(failed.begin(), failed.end(), v) == failed.end();
    if (loaded && serving.contains(v)) out.push_back(v);  // replaced by its new files
  }
  if (failed.empty() && plan.missing.empty()) {
    out.insert(out.end(), plan.retire.begin(), plan.retire.end());
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace hivemesh
