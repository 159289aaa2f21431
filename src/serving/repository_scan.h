// Reading a model repository folder without loading anything: which models it holds, each
// model's config text, and a fingerprint of each version folder (its files' paths, sizes and
// modification times, and the config), so that a reload can tell what changed.
//
//   <repo>/<model>/config.yaml
//   <repo>/<model>/<version>/<files>      (version = a positive integer without leading zeros)
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace hivemesh {

// True, with `*out` set, if `s` names a version folder.
bool ParseVersion(std::string_view s, int64_t* out);

// The model folders of `repo` (not hidden), sorted. Fails if `repo` is not a readable folder.
absl::StatusOr<std::vector<std::string>> ListModelFolders(const std::string& repo);

struct ModelOnDisk {
  std::string name;
  std::string dir;          // <repo>/<model>
  std::string config_path;  // <repo>/<model>/config.yaml
  bool exists = false;      // the model folder exists
  bool config_read = false;
  std::string config_text;
  // Version -> fingerprint of the version's files and of the config: it changes when either does.
  std::map<int64_t, uint64_t> versions;

  // One fingerprint for everything above: equal on two scans when nothing changed in between.
  uint64_t Fingerprint() const;
};

ModelOnDisk ScanModel(const std::string& repo, const std::string& name);

}  // namespace hivemesh
