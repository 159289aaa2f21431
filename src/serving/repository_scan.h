// Reading a model repository folder without loading anything: which models it holds, each
// model's config text, and a fingerprint of each version folder (its files' paths, sizes and
// modification times, and the config), so that a reload can tell what changed.
//
//   <repo>/<model>/config.yaml
//   <repo>/<model>/<version>/<files>      (version = a positive integer without leading zeros)
//
// Model and version names follow model_name.h; ParseVersion lives there.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "codec/model_name.h"

namespace hivemesh {

// The folders of `repo` that may hold models, sorted: those named by the model name rule
// (model_name.h), and the others, which are never loaded. Hidden folders (".git", a ".tmp"
// being copied in) are in neither list.
struct ModelFolders {
  std::vector<std::string> names;    // valid model names
  std::vector<std::string> invalid;  // folder names that break the rule
};
// Fails if `repo` is not a readable folder.
absl::StatusOr<ModelFolders> ListModelFolders(const std::string& repo);

// `message` with every occurrence of a path under `roots` (absolute or as configured) made
// relative to it: "/srv/models/vib/config.yaml: ..." -> "vib/config.yaml: ...". What a client is
// told of a model's failure goes through this, so that it does not disclose where the
// repository is; the node's log keeps the full paths. A root matches only where a path starts
// (at the start of the message or after a character that cannot be part of a path).
std::string RelativeToRepository(std::string_view message, const std::vector<std::string>& roots);
// The spellings of the repository folder `path` that messages may carry: as configured, absolute
// and canonical, longest first (without a trailing '/').
std::vector<std::string> RepositoryRoots(const std::string& path);

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

// The model folder <repo>/<name>. A `name` that breaks the model name rule is reported as not
// existing, without touching the file system.
ModelOnDisk ScanModel(const std::string& repo, const std::string& name);

}  // namespace hivemesh
