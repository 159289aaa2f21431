// Which versions of a model a node serves, and how a reload moves from the versions serving now
// to the ones wanted. Pure functions over version numbers and fingerprints; the repository
// (model_repository.h) does the file system and the loading.
//
// A model's config.yaml chooses its policy (Triton's version_policy; the default is latest 1):
//
//   version_policy: {latest: 2}          # the 2 highest version folders
//   version_policy: all                  # every version folder
//   version_policy: {specific: [1, 3]}   # exactly these
//
// Triton's nested forms ({latest: {num_versions: 2}}, {specific: {versions: [1, 3]}}, {all: {}})
// are accepted too.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace hivemesh {

struct VersionPolicy {
  enum class Kind { kLatest, kAll, kSpecific };
  Kind kind = Kind::kLatest;
  int latest = 1;                 // kLatest: how many of the highest versions
  std::vector<int64_t> specific;  // kSpecific: ascending, no duplicates

  // The versions of `available` this policy serves, ascending.
  std::vector<int64_t> Select(const std::vector<int64_t>& available) const;
  // "latest 1", "all", "specific [1, 3]".
  std::string ToString() const;
  bool operator==(const VersionPolicy&) const = default;
};

// What a reload does, version by version. A fingerprint changes when a version's files change
// (or, for every version, when the model's config changes).
struct ReloadPlan {
  std::vector<int64_t> load;     // wanted and not serving, or serving with other files: (re)load
  std::vector<int64_t> keep;     // wanted, serving and unchanged: left alone
  std::vector<int64_t> retire;   // serving and no longer wanted
  std::vector<int64_t> missing;  // named by a `specific` policy but not on disk
};

// `on_disk` and `serving` map version -> fingerprint.
ReloadPlan PlanReload(const VersionPolicy& policy, const std::map<int64_t, uint64_t>& on_disk,
                      const std::map<int64_t, uint64_t>& serving);

// Which serving versions a reload retires once its loads are done, `failed` being the versions of
// plan.load that did not load. A version reloaded with new files is replaced (retired) only if
// the new files loaded. Versions no longer wanted are retired only if every wanted version is
// serving (all loads succeeded, none missing): a version that fails to load leaves the previous
// ones serving.
std::vector<int64_t> RetireAfterReload(const ReloadPlan& plan,
                                       const std::map<int64_t, uint64_t>& serving,
                                       const std::vector<int64_t>& failed);

}  // namespace hivemesh
