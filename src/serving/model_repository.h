// ModelRepository: the models a node serves, loaded from a folder laid out as
//
//   <repo>/<model>/config.yaml
//   <repo>/<model>/<version>/<files>      (version = a positive integer)
//
// Each model serves the versions its version policy selects (version_policy.h; default: the
// highest). A request names a version or gets the model's default, its highest serving version.
// A model whose config or files are invalid is recorded as UNAVAILABLE with the reason (file and
// field) and does not stop the others from loading.
//
// Names: only folders named by the model name rule (model_name.h) are models; a folder that
// breaks it is skipped with a warning (once while it stays) and never indexed, and calls that
// name such a model are refused before the file system is touched. What clients are told (the
// index's reasons, Find's and LoadModel's errors) names files relative to the repository, never
// where the repository is; the log has the full paths.
//
// The set of models and versions can change while the node runs, in one of three control modes
// (Triton's --model-control-mode):
//   none      what start-up loaded stays loaded
//   poll      the folder is rescanned every poll interval: new models and versions are loaded,
//             changed ones reloaded, removed ones unloaded. A change is acted on once the folder
//             looked the same on two scans in a row, so a version still being copied in is not
//             loaded half-written.
//   explicit  LoadModel / UnloadModel (the repository API, REST and gRPC) do it on demand.
// A change never drops a request: a new version is loaded and ready before requests are sent to
// it; a replaced or removed version is retired (it admits nothing new, and every request queued
// or running on it is answered) after requests have moved on. A version that fails to load leaves
// the versions serving before it serving, and the index says why it failed.
//
// Time: the poll timer, the runtimes' deadlines and their statistics run on the `clock` given to
// Load (a ManualClock in tests: a poll interval passes when the test advances it).
//
// Thread safety: lookups (Get, Find, Hosts, Versions, Index, Runtimes) are safe from any thread
// and take a lock only to copy a pointer to the current immutable snapshot. Changes are
// serialized: they run on the caller's thread (LoadModel, UnloadModel, Poll) or on the
// repository's control thread (the *Async forms and the poll timer), one at a time. Runtimes are
// shared: one stays alive while anyone holds it, and is destroyed by the repository (never on its
// own worker thread) once retired and released.
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "base/clock.h"
#include "serving/backend.h"
#include "serving/expirer.h"
#include "serving/model_runtime.h"
#include "serving/repository_scan.h"

namespace hivemesh {

using RuntimePtr = std::shared_ptr<ModelRuntime>;

enum class ControlMode { kNone, kPoll, kExplicit };
// "none" | "poll" | "explicit".
absl::StatusOr<ControlMode> ControlModeFromName(std::string_view name);
std::string_view ControlModeName(ControlMode mode);

struct RepositoryOptions {
  std::string path;
  int default_instances = 1;     // for configs that do not set `instances`
  int default_queue_limit = 64;  // for configs that do not set `queue_limit`
  // Load only these models of the repository (a device loads what fits it); empty: all. In poll
  // mode, new model folders are picked up only if listed (or if the list is empty). Each must
  // be a valid model name.
  std::vector<std::string> models;
  ControlMode control_mode = ControlMode::kNone;
  // How often poll mode rescans the folder. A scan reads the folder's metadata and every
  // config.yaml, not the model files; a new version goes live within about two intervals.
  std::chrono::milliseconds poll_interval{5000};
};

// One row of the repository index.
struct ModelEntry {
  std::string name;
  std::string version;  // empty for a row about the model rather than one version
  std::string state;    // READY or UNAVAILABLE
  std::string reason;   // why UNAVAILABLE; for READY rows, a failed reload's reason, if any
};

class ModelRepository {
 public:
  // Loads what the options select. Fails only if the folder itself cannot be read, or
  // `options.models` names a model the repository does not have (NOT_FOUND) or an invalid name
  // (INVALID_ARGUMENT); bad models are recorded, not fatal. In poll mode, polling starts at once.
  // `clock` must outlive the repository.
  static absl::StatusOr<std::unique_ptr<ModelRepository>> Load(const RepositoryOptions& options,
                                                               const BackendRegistry& registry,
                                                               Clock& clock = SystemClock::Get());
  ~ModelRepository();

  // The serving runtime for `name` at `version` (empty = the default version), or null. The fast
  // path: it builds no message. `*known` (if given): the index has a row for `name`.
  RuntimePtr Get(std::string_view name, std::string_view version, bool* known = nullptr) const;
  // Get, or why not:
  //   NOT_FOUND   no such model, or no such version (the message lists the versions)
  //   UNAVAILABLE the model exists but failed to load (the message says why)
  absl::StatusOr<RuntimePtr> Find(std::string_view name, std::string_view version) const;
  // True if some version of `name` serves here.
  bool Hosts(std::string_view name) const;

  // Versions of `name` that serve, ascending. Empty if none.
  std::vector<std::string> Versions(std::string_view name) const;
  std::vector<ModelEntry> Index() const;
  // Every serving runtime, by model then version.
  std::vector<RuntimePtr> Runtimes() const;

  ControlMode control_mode() const { return options_.control_mode; }

  // Explicit mode: loads `name` from the folder, or reloads it to pick up changes (new, changed
  // and removed versions; a changed config). Returns once the new versions serve, or why not:
  //   INVALID_ARGUMENT     `name` breaks the model name rule (checked first, nothing is read),
  //                        or its config is invalid or no version loads (file and field named)
  //   FAILED_PRECONDITION  not in explicit mode, or the node is draining
  //   NOT_FOUND            the folder has no such model
  absl::Status LoadModel(const std::string& name);
  // Explicit mode: stops serving every version of `name`, after answering every request queued
  // or running on them. INVALID_ARGUMENT for an invalid name; NOT_FOUND if it is not loaded;
  // FAILED_PRECONDITION as for LoadModel.
  absl::Status UnloadModel(const std::string& name);
  // Models served by a program beside the node rather than from the folder (a KServe v2 server
  // the node runs as a workload: services/kserve_backend.h): `config_text` is a config.yaml the
  // node made, served as version 1, with no files. In any control mode; polling and the
  // repository API (LoadModel, UnloadModel) leave an attached model alone. Attaching again with
  // the same config changes nothing; with another, the model is reloaded as for LoadModel.
  // `source` names what serves it, in messages ("workload kserve-demo"). Errors:
  //   INVALID_ARGUMENT     an invalid name or config (the field named)
  //   ALREADY_EXISTS       the folder's model of that name, or another source's, is known here
  //   FAILED_PRECONDITION  the node is draining
  absl::Status AttachModel(const std::string& name, const std::string& config_text,
                           const std::string& source);
  // Stops serving an attached model, after answering what is queued or running on it. NOT_FOUND
  // if `name` is not attached.
  absl::Status DetachModel(const std::string& name);

  // LoadModel / UnloadModel on the control thread; `done` is called there, never on the caller's.
  void LoadModelAsync(std::string name, std::function<void(absl::Status)> done);
  void UnloadModelAsync(std::string name, std::function<void(absl::Status)> done);
  // One poll-mode scan, at once, on the caller's thread (poll mode runs it every interval).
  void Poll();

  // Called after every change of what serves (on the thread that made it), e.g. to tell the mesh.
  // Set before the changes it should see; not called for the initial load.
  void SetOnChange(std::function<void()> on_change);

  // Drains every model: stop polling and loading, stop admitting, answer everything queued and
  // running.
  void Drain();

 private:
  // One model as published: what serves and what failed. Immutable once published.
  struct ModelState {
    std::map<int64_t, RuntimePtr> serving;
    std::map<int64_t, std::string> failed;  // version -> why it did not load
    // The model's own failure (config, no version); with serving versions: why the last reload
    // failed while they kept serving.
    std::string error;
    bool unloaded = false;  // explicitly unloaded
  };
  using Snapshot = std::map<std::string, ModelState, std::less<>>;
  // What the control side remembers of a model.
  struct Tracked {
    std::map<int64_t, uint64_t> fingerprints;  // of the serving versions' files
    uint64_t applied = 0;                      // folder fingerprint last acted on
    uint64_t seen = 0;                         // folder fingerprint at the last scan
  };
  struct Prepared;

  ModelRepository(const RepositoryOptions& options, const BackendRegistry& registry, Clock& clock);
  std::shared_ptr<const Snapshot> snapshot() const;
  static std::string JoinVersions(const ModelState& state);
  // Loads what `disk` asks of a model now in `current`, touching no shared state.
  Prepared Prepare(const ModelOnDisk& disk, const ModelState& current, const Tracked& tracked);
  // Publishes a prepared model, then retires the runtimes it replaces. `announce`: log the
  // change and call on_change_.
  void ApplyLocked(Prepared p, bool announce) ABSL_EXCLUSIVE_LOCKS_REQUIRED(control_mu_);
  // Stops serving every version of `name`; the index keeps an "unloaded" row if `keep_entry`.
  void UnloadLocked(const std::string& name, bool keep_entry)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(control_mu_);
  void PollLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(control_mu_);
  // The model folders, warning once about each invalid folder name while it stays.
  absl::StatusOr<std::vector<std::string>> ListModelsLocked()
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(control_mu_);
  // `status` with its message made relative to the repository (RelativeToRepository).
  absl::Status ForClients(const absl::Status& status) const;
  // Publishes `state` for `name` (absent: drops the model), then retires `old` runtimes.
  void PublishLocked(const std::string& name, std::optional<ModelState> state,
                     std::vector<RuntimePtr> old, bool announce)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(control_mu_);
  // Destroys retired runtimes nobody holds any more.
  void SweepLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(control_mu_);
  absl::Status ExplicitOnly() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(control_mu_);
  // FAILED_PRECONDITION if `name` is an attached model (the repository API leaves it alone).
  absl::Status NotAttached(const std::string& name) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(control_mu_);
  void ControlLoop();
  // Runs `task(true)` on the control thread, or `task(false)` if the repository stops first.
  void Post(std::function<void(bool run)> task);

  const RepositoryOptions options_;
  const std::vector<std::string> roots_;  // RepositoryRoots(options_.path)
  const BackendRegistry& registry_;
  Clock& clock_;
  Expirer expirer_;  // outlives every runtime (declared first, destroyed last)

  mutable absl::Mutex snapshot_mu_;
  std::shared_ptr<const Snapshot> snapshot_ ABSL_GUARDED_BY(snapshot_mu_);

  absl::Mutex control_mu_;
  std::map<std::string, Tracked> tracked_ ABSL_GUARDED_BY(control_mu_);
  std::vector<RuntimePtr> retired_ ABSL_GUARDED_BY(control_mu_);
  bool draining_ ABSL_GUARDED_BY(control_mu_) = false;
  // Invalid folder names seen at the last scan (each warned about when first seen).
  std::vector<std::string> invalid_folders_ ABSL_GUARDED_BY(control_mu_);
  std::map<std::string, std::string> attached_ ABSL_GUARDED_BY(control_mu_);  // name -> source
  std::function<void()> on_change_ ABSL_GUARDED_BY(control_mu_);

  absl::Mutex tasks_mu_;
  std::deque<std::function<void(bool)>> tasks_ ABSL_GUARDED_BY(tasks_mu_);
  bool stop_ ABSL_GUARDED_BY(tasks_mu_) = false;
  absl::CondVar tasks_cv_;  // a task was posted, or stopping
  std::thread control_;     // last: started when everything above exists
};

}  // namespace hivemesh
