// ModelRepository: the models a node serves, loaded from a folder laid out as
//
//   <repo>/<model>/config.yaml
//   <repo>/<model>/<version>/<files>      (version = a positive integer)
//
// A model whose config or files are invalid is recorded as UNAVAILABLE with the reason (file and
// field) and does not stop the others from loading. Every numeric version folder is loaded; the
// default version of a model is its highest.
//
// Thread safety: the set of models is fixed after Load(); lookups are safe from any thread.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "serving/backend.h"
#include "serving/expirer.h"
#include "serving/model_runtime.h"

namespace hivemesh {

struct RepositoryOptions {
  std::string path;
  int default_instances = 1;     // for configs that do not set `instances`
  int default_queue_limit = 64;  // for configs that do not set `queue_limit`
  // Load only these models of the repository (a device loads what fits it); empty: all.
  std::vector<std::string> models;
};

// One row of the repository index.
struct ModelEntry {
  std::string name;
  std::string version;  // empty when the model failed before any version was found
  std::string state;    // READY or UNAVAILABLE
  std::string reason;   // why UNAVAILABLE
};

class ModelRepository {
 public:
  // Fails only if the folder itself cannot be read, or `options.models` names a model the
  // repository does not have; bad models are recorded, not fatal.
  static absl::StatusOr<std::unique_ptr<ModelRepository>> Load(const RepositoryOptions& options,
                                                               const BackendRegistry& registry);
  ~ModelRepository();

  // The runtime for `name` at `version` (empty = the default version):
  //   NOT_FOUND   no such model, or no such version (the message lists the versions)
  //   UNAVAILABLE the model exists but failed to load (the message says why)
  absl::StatusOr<ModelRuntime*> Find(const std::string& name, const std::string& version) const;

  // Versions of `name` that are ready, ascending. Empty if none.
  std::vector<std::string> Versions(const std::string& name) const;
  std::vector<ModelEntry> Index() const;
  // Every ready runtime, by model then version.
  std::vector<ModelRuntime*> Runtimes() const;

  // Drains every model: stop admitting, answer everything queued and running.
  void Drain();

 private:
  struct Model {
    std::map<int64_t, std::unique_ptr<ModelRuntime>> versions;
    std::string error;  // non-empty: the model is UNAVAILABLE
  };
  ModelRepository() = default;

  Expirer expirer_;  // outlives models_ (declared first, destroyed last)
  std::map<std::string, Model> models_;
};

}  // namespace hivemesh
