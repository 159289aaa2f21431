#include "serving/model_repository.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <future>
#include <set>

#include "base/status_macros.h"
#include "base/strings.h"
#include "codec/model_name.h"
#include "serving/repository_scan.h"
#include "serving/version_policy.h"

namespace hivemesh {

absl::StatusOr<ControlMode> ControlModeFromName(std::string_view name) {
  if (name == "none") return ControlMode::kNone;
  if (name == "poll") return ControlMode::kPoll;
  if (name == "explicit") return ControlMode::kExplicit;
  return absl::InvalidArgumentError(
      StrCat("model_control_mode: '", name, "' is not one of none, poll, explicit"));
}

std::string_view ControlModeName(ControlMode mode) {
  switch (mode) {
    case ControlMode::kNone:
      return "none";
    case ControlMode::kPoll:
      return "poll";
    case ControlMode::kExplicit:
      return "explicit";
  }
  return "";
}

// The outcome of bringing one model in line with its folder, computed without touching the
// repository's state (so that models can be prepared in parallel), then applied.
struct ModelRepository::Prepared {
  std::string name;
  ModelState state;
  std::vector<RuntimePtr> old;               // runtimes to retire once `state` is published
  std::map<int64_t, uint64_t> fingerprints;  // of the versions `state` serves
  uint64_t folder = 0;                       // the folder's fingerprint
  absl::Status status;                       // the model's failure, if any
};

ModelRepository::Prepared ModelRepository::Prepare(const ModelOnDisk& disk,
                                                   const ModelState& current,
                                                   const Tracked& tracked) {
  Prepared out;
  out.name = disk.name;
  out.folder = disk.Fingerprint();
  out.state.serving = current.serving;
  out.fingerprints = tracked.fingerprints;
  auto fail = [&](std::string why) {
    out.state.error = why;
    out.status = absl::InvalidArgumentError(std::move(why));
    return std::move(out);
  };
  if (!disk.config_read) return fail(StrCat(disk.config_path, ": cannot be read"));
  absl::StatusOr<ModelConfig> config =
      ParseModelConfig(disk.config_text, disk.name, disk.config_path, options_.default_instances,
                       options_.default_queue_limit);
  if (!config.ok()) return fail(std::string(config.status().message()));

  const ReloadPlan plan = PlanReload(config->version_policy, disk.versions, tracked.fingerprints);
  std::map<int64_t, RuntimePtr> loaded;
  std::vector<int64_t> failed;
  for (int64_t v : plan.load) {
    const std::string path = StrCat(disk.dir, "/", v);
    absl::StatusOr<std::unique_ptr<ModelRuntime>> rt =
        ModelRuntime::Create(*config, std::to_string(v), path, registry_, &expirer_);
    if (rt.ok()) {
      loaded[v] = std::move(*rt);
    } else {
      failed.push_back(v);
      out.state.failed[v] = StrCat(disk.config_path, ": version ", v, ": ", rt.status().message());
    }
  }
  for (int64_t v : plan.missing) {
    out.state.failed[v] =
        StrCat(disk.dir, "/", v,
               "/ does not exist (version_policy: ", config->version_policy.ToString(), ")");
  }
  for (int64_t v : RetireAfterReload(plan, tracked.fingerprints, failed)) {
    out.old.push_back(out.state.serving.at(v));
    out.state.serving.erase(v);
    out.fingerprints.erase(v);
  }
  for (auto& [v, rt] : loaded) {
    out.state.serving[v] = std::move(rt);
    out.fingerprints[v] = disk.versions.at(v);
  }
  std::string failures;
  for (const auto& [v, why] : out.state.failed)
    StrAppend(&failures, failures.empty() ? "" : "; ", why);
  if (out.state.serving.empty()) {
    if (disk.versions.empty()) {
      return fail(StrCat(disk.dir, ": no version folder (a positive integer, e.g. 1/)"));
    }
    if (!failures.empty()) return fail(failures);
    return fail(StrCat(disk.config_path, ": version_policy (", config->version_policy.ToString(),
                       ") selects no version folder"));
  }
  if (!failures.empty()) {
    out.state.error = StrCat("serving the previous versions: ", failures);
    out.status = absl::InvalidArgumentError(failures);
  }
  return out;
}

ModelRepository::ModelRepository(const RepositoryOptions& options, const BackendRegistry& registry,
                                 Clock& clock)
    : options_(options),
      roots_(RepositoryRoots(options.path)),
      registry_(registry),
      clock_(clock),
      expirer_(clock),
      snapshot_(std::make_shared<const Snapshot>()) {}

absl::StatusOr<std::unique_ptr<ModelRepository>> ModelRepository::Load(
    const RepositoryOptions& options, const BackendRegistry& registry, Clock& clock) {
  for (const std::string& name : options.models) {
    absl::Status valid = CheckModelName(name);
    if (!valid.ok()) return absl::InvalidArgumentError(StrCat("models: ", MessageOf(valid)));
  }
  std::unique_ptr<ModelRepository> repo(new ModelRepository(options, registry, clock));
  {
    absl::MutexLock lock(&repo->control_mu_);
    absl::StatusOr<std::vector<std::string>> names = repo->ListModelsLocked();
    if (!names.ok()) return names.status();
    const std::set<std::string> wanted(options.models.begin(), options.models.end());
    for (const std::string& name : wanted) {
      if (!std::binary_search(names->begin(), names->end(), name)) {
        return absl::NotFoundError(
            StrCat("model '", name, "' is not in the model repository '", options.path, "'"));
      }
    }
    // Models load in parallel: model files are independent, and start-up time matters on a
    // device.
    std::vector<std::future<Prepared>> pending;
    for (const std::string& name : *names) {
      if (!wanted.empty() && !wanted.contains(name)) continue;
      pending.push_back(std::async(std::launch::async, [&repo, &options, name] {
        return repo->Prepare(ScanModel(options.path, name), ModelState{}, Tracked{});
      }));
    }
    for (auto& f : pending) {
      Prepared p = f.get();
      if (!p.status.ok()) {
        spdlog::error("model '{}' is unavailable: {}", p.name, MessageOf(p.status));
      } else {
        spdlog::info("model '{}' loaded (version{} {})", p.name,
                     p.state.serving.size() == 1 ? "" : "s", JoinVersions(p.state));
      }
      repo->ApplyLocked(std::move(p), /*announce=*/false);
    }
  }
  repo->control_ = std::thread([r = repo.get()] { r->ControlLoop(); });
  return repo;
}

ModelRepository::~ModelRepository() {
  {
    absl::MutexLock lock(&tasks_mu_);
    stop_ = true;
    tasks_cv_.SignalAll();
  }
  if (control_.joinable()) control_.join();
  std::vector<RuntimePtr> all = Runtimes();
  {
    absl::MutexLock lock(&control_mu_);
    all.insert(all.end(), retired_.begin(), retired_.end());
    retired_.clear();
  }
  {
    absl::MutexLock lock(&snapshot_mu_);
    snapshot_.reset();
  }
  // A runtime is destroyed here, on this thread: wait for the callbacks that still hold it
  // (they run on its workers, which must not join themselves) to let go.
  for (RuntimePtr& rt : all) {
    for (int i = 0; i < 10000 && rt.use_count() > 1; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    rt.reset();
  }
}

std::string ModelRepository::JoinVersions(const ModelState& state) {
  std::string out;
  for (const auto& [v, _] : state.serving) StrAppend(&out, out.empty() ? "" : ", ", v);
  return out;
}

std::shared_ptr<const ModelRepository::Snapshot> ModelRepository::snapshot() const {
  absl::MutexLock lock(&snapshot_mu_);
  return snapshot_;
}

RuntimePtr ModelRepository::Get(std::string_view name, std::string_view version,
                                bool* known) const {
  const std::shared_ptr<const Snapshot> s = snapshot();
  auto it = s->find(name);
  if (known != nullptr) *known = it != s->end();
  if (it == s->end() || it->second.serving.empty()) return nullptr;
  const auto& serving = it->second.serving;
  if (version.empty()) return serving.rbegin()->second;
  int64_t v;
  if (!ParseVersion(version, &v)) return nullptr;
  auto vit = serving.find(v);
  return vit == serving.end() ? nullptr : vit->second;
}

absl::StatusOr<RuntimePtr> ModelRepository::Find(std::string_view name,
                                                 std::string_view version) const {
  const std::shared_ptr<const Snapshot> s = snapshot();
  auto it = s->find(name);
  if (it == s->end()) {
    return absl::NotFoundError(
        StrCat("model '", PrintableName(name), "' is not served by this node"));
  }
  const ModelState& m = it->second;
  if (m.unloaded) {
    return absl::NotFoundError(
        StrCat("model '", name, "' is not served by this node (it was unloaded)"));
  }
  if (m.serving.empty()) {
    return absl::UnavailableError(StrCat("model '", name, "' failed to load: ", m.error));
  }
  if (version.empty()) return m.serving.rbegin()->second;
  int64_t v;
  if (ParseVersion(version, &v)) {
    if (auto vit = m.serving.find(v); vit != m.serving.end()) return vit->second;
    if (auto f = m.failed.find(v); f != m.failed.end()) {
      return absl::UnavailableError(
          StrCat("version ", v, " of model '", name, "' failed to load: ", f->second));
    }
  }
  return absl::NotFoundError(StrCat("model '", name, "' has no version '", PrintableName(version),
                                    "' (versions: ", JoinVersions(m), ")"));
}

bool ModelRepository::Hosts(std::string_view name) const {
  const std::shared_ptr<const Snapshot> s = snapshot();
  auto it = s->find(name);
  return it != s->end() && !it->second.serving.empty();
}

std::vector<std::string> ModelRepository::Versions(std::string_view name) const {
  std::vector<std::string> out;
  const std::shared_ptr<const Snapshot> s = snapshot();
  auto it = s->find(name);
  if (it == s->end()) return out;
  for (const auto& [v, _] : it->second.serving) out.push_back(std::to_string(v));
  return out;
}

std::vector<ModelEntry> ModelRepository::Index() const {
  std::vector<ModelEntry> out;
  const std::shared_ptr<const Snapshot> s = snapshot();
  for (const auto& [name, m] : *s) {
    if (m.serving.empty()) {
      out.push_back(ModelEntry{name, "", "UNAVAILABLE", m.unloaded ? "unloaded" : m.error});
      continue;
    }
    std::set<int64_t> versions;
    for (const auto& [v, _] : m.serving) versions.insert(v);
    for (const auto& [v, _] : m.failed) versions.insert(v);
    for (int64_t v : versions) {
      if (m.serving.contains(v)) {
        out.push_back(ModelEntry{name, std::to_string(v), "READY", m.error});
      } else {
        out.push_back(ModelEntry{name, std::to_string(v), "UNAVAILABLE", m.failed.at(v)});
      }
    }
  }
  return out;
}

std::vector<RuntimePtr> ModelRepository::Runtimes() const {
  std::vector<RuntimePtr> out;
  const std::shared_ptr<const Snapshot> s = snapshot();
  if (!s) return out;
  for (const auto& [name, m] : *s) {
    for (const auto& [v, rt] : m.serving) out.push_back(rt);
  }
  return out;
}

void ModelRepository::SetOnChange(std::function<void()> on_change) {
  absl::MutexLock lock(&control_mu_);
  on_change_ = std::move(on_change);
}

absl::Status ModelRepository::ExplicitOnly() const {
  if (draining_) return absl::FailedPreconditionError("the node is draining");
  if (options_.control_mode != ControlMode::kExplicit) {
    return absl::FailedPreconditionError(
        StrCat("models are loaded and unloaded through the repository API only with "
               "model_control_mode: explicit (this node's is ",
               ControlModeName(options_.control_mode), ")"));
  }
  return absl::OkStatus();
}

absl::Status ModelRepository::LoadModel(const std::string& name) {
  HM_RETURN_IF_ERROR(CheckModelName(name));
  absl::MutexLock lock(&control_mu_);
  HM_RETURN_IF_ERROR(ExplicitOnly());
  HM_RETURN_IF_ERROR(NotAttached(name));
  ModelOnDisk disk = ScanModel(options_.path, name);
  if (!disk.exists) {
    return absl::NotFoundError(StrCat("model '", name, "' is not in the model repository"));
  }
  const std::shared_ptr<const Snapshot> s = snapshot();
  auto it = s->find(name);
  Prepared p = Prepare(disk, it == s->end() ? ModelState{} : it->second, tracked_[name]);
  absl::Status status = ForClients(p.status);
  ApplyLocked(std::move(p), /*announce=*/true);
  return status;
}

absl::Status ModelRepository::UnloadModel(const std::string& name) {
  HM_RETURN_IF_ERROR(CheckModelName(name));
  absl::MutexLock lock(&control_mu_);
  HM_RETURN_IF_ERROR(ExplicitOnly());
  HM_RETURN_IF_ERROR(NotAttached(name));
  if (!Hosts(name)) {
    return absl::NotFoundError(StrCat("model '", name, "' is not loaded on this node"));
  }
  UnloadLocked(name, /*keep_entry=*/true);
  return absl::OkStatus();
}

absl::Status ModelRepository::NotAttached(const std::string& name) const {
  auto it = attached_.find(name);
  if (it == attached_.end()) return absl::OkStatus();
  return absl::FailedPreconditionError(
      StrCat("model '", name, "' is served by ", it->second, ", not the model repository"));
}

absl::Status ModelRepository::AttachModel(const std::string& name, const std::string& config_text,
                                          const std::string& source) {
  HM_RETURN_IF_ERROR(CheckModelName(name));
  absl::MutexLock lock(&control_mu_);
  if (draining_) return absl::FailedPreconditionError("the node is draining");
  const std::shared_ptr<const Snapshot> s = snapshot();
  auto it = s->find(name);
  auto by = attached_.find(name);
  if (by != attached_.end() ? by->second != source : it != s->end()) {
    return absl::AlreadyExistsError(
        StrCat("model '", name, "' is already served here by ",
               by != attached_.end() ? by->second : "the model repository"));
  }
  ModelOnDisk disk;
  disk.name = name;
  disk.dir = source;
  disk.config_path = StrCat(source, ": model ", name);
  disk.exists = disk.config_read = true;
  disk.config_text = config_text;
  disk.versions[1] = std::hash<std::string>{}(config_text);
  Tracked& t = tracked_[name];
  if (by != attached_.end() && disk.Fingerprint() == t.applied) return absl::OkStatus();
  Prepared p = Prepare(disk, it == s->end() ? ModelState{} : it->second, t);
  absl::Status status = p.status;
  if (!status.ok() && by == attached_.end()) {
    tracked_.erase(name);
    return status;
  }
  attached_[name] = source;
  ApplyLocked(std::move(p), /*announce=*/true);
  return status;
}

absl::Status ModelRepository::DetachModel(const std::string& name) {
  absl::MutexLock lock(&control_mu_);
  if (attached_.erase(name) == 0) {
    return absl::NotFoundError(StrCat("model '", name, "' is not attached"));
  }
  UnloadLocked(name, /*keep_entry=*/false);
  return absl::OkStatus();
}

void ModelRepository::UnloadLocked(const std::string& name, bool keep_entry) {
  const std::shared_ptr<const Snapshot> s = snapshot();
  std::vector<RuntimePtr> old;
  if (auto it = s->find(name); it != s->end()) {
    for (const auto& [v, rt] : it->second.serving) old.push_back(rt);
  }
  tracked_.erase(name);
  std::optional<ModelState> state;
  if (keep_entry) {
    state.emplace();
    state->unloaded = true;
  }
  PublishLocked(name, std::move(state), std::move(old), /*announce=*/true);
  spdlog::info("model '{}' unloaded", name);
}

void ModelRepository::ApplyLocked(Prepared p, bool announce) {
  Tracked& t = tracked_[p.name];
  t.fingerprints = std::move(p.fingerprints);
  t.applied = t.seen = p.folder;
  if (announce) {
    if (p.status.ok()) {
      spdlog::info("model '{}' now serves version{} {}", p.name,
                   p.state.serving.size() == 1 ? "" : "s", JoinVersions(p.state));
    } else {
      spdlog::error("model '{}': {}{}", p.name, MessageOf(p.status),
                    p.state.serving.empty()
                        ? ""
                        : StrCat(" (still serving version", p.state.serving.size() == 1 ? "" : "s",
                                 " ", JoinVersions(p.state), ")"));
    }
  }
  // The log above has the full paths; clients see them relative to the repository.
  p.state.error = RelativeToRepository(p.state.error, roots_);
  for (auto& [v, why] : p.state.failed) why = RelativeToRepository(why, roots_);
  PublishLocked(p.name, std::move(p.state), std::move(p.old), announce);
}

absl::Status ModelRepository::ForClients(const absl::Status& status) const {
  if (status.ok()) return status;
  return absl::Status(status.code(), RelativeToRepository(MessageOf(status), roots_));
}

absl::StatusOr<std::vector<std::string>> ModelRepository::ListModelsLocked() {
  absl::StatusOr<ModelFolders> folders = ListModelFolders(options_.path);
  if (!folders.ok()) return folders.status();
  for (const std::string& name : folders->invalid) {
    if (std::binary_search(invalid_folders_.begin(), invalid_folders_.end(), name)) continue;
    spdlog::warn("model folder '{}' in {} is skipped: it is not a valid model name ({})",
                 PrintableName(name), options_.path, kModelNameRule);
  }
  invalid_folders_ = std::move(folders->invalid);
  return std::move(folders->names);
}

void ModelRepository::PublishLocked(const std::string& name, std::optional<ModelState> state,
                                    std::vector<RuntimePtr> old, bool announce) {
  {
    absl::MutexLock lock(&snapshot_mu_);
    auto next = std::make_shared<Snapshot>(*snapshot_);
    if (state) {
      (*next)[name] = std::move(*state);
    } else {
      next->erase(name);
    }
    snapshot_ = std::move(next);
  }
  // New requests now find the new state; the mesh is told before the old versions drain, so
  // that peers stop sending them requests as early as possible.
  if (announce && on_change_) on_change_();
  for (const RuntimePtr& rt : old) {
    rt->Retire();
    retired_.push_back(rt);
  }
  SweepLocked();
}

void ModelRepository::SweepLocked() {
  std::erase_if(retired_, [](const RuntimePtr& rt) { return rt.use_count() == 1; });
}

void ModelRepository::Poll() {
  absl::MutexLock lock(&control_mu_);
  PollLocked();
}

void ModelRepository::PollLocked() {
  if (draining_) return;
  absl::StatusOr<std::vector<std::string>> names = ListModelsLocked();
  if (!names.ok()) {
    spdlog::warn("model repository not polled: {}", MessageOf(names.status()));
    return;
  }
  std::set<std::string> candidates;
  for (const std::string& name : *names) {
    if (options_.models.empty() ||
        std::find(options_.models.begin(), options_.models.end(), name) != options_.models.end()) {
      candidates.insert(name);
    }
  }
  for (const auto& [name, _] : tracked_) candidates.insert(name);
  for (const auto& [name, _] : attached_) candidates.erase(name);
  for (const std::string& name : candidates) {
    ModelOnDisk disk = ScanModel(options_.path, name);
    const uint64_t fp = disk.Fingerprint();
    Tracked& t = tracked_[name];
    if (fp == t.applied) {
      t.seen = fp;
      continue;
    }
    if (fp != t.seen) {  // changed since the last scan: act once it stays the same
      t.seen = fp;
      continue;
    }
    if (!disk.exists) {
      UnloadLocked(name, /*keep_entry=*/false);
      continue;
    }
    const std::shared_ptr<const Snapshot> s = snapshot();
    auto it = s->find(name);
    ApplyLocked(Prepare(disk, it == s->end() ? ModelState{} : it->second, t), /*announce=*/true);
  }
  SweepLocked();
}

void ModelRepository::Post(std::function<void(bool run)> task) {
  {
    absl::MutexLock lock(&tasks_mu_);
    if (!stop_) {
      tasks_.push_back(std::move(task));
      task = nullptr;
      tasks_cv_.SignalAll();
    }
  }
  if (task) return task(false);
}

void ModelRepository::LoadModelAsync(std::string name, std::function<void(absl::Status)> done) {
  Post([this, name = std::move(name), done = std::move(done)](bool run) {
    done(run ? LoadModel(name) : absl::UnavailableError("the node is stopping"));
  });
}

void ModelRepository::UnloadModelAsync(std::string name, std::function<void(absl::Status)> done) {
  Post([this, name = std::move(name), done = std::move(done)](bool run) {
    done(run ? UnloadModel(name) : absl::UnavailableError("the node is stopping"));
  });
}

void ModelRepository::ControlLoop() {
  const bool polling = options_.control_mode == ControlMode::kPoll;
  // In explicit mode the loop also wakes now and then to destroy released retired runtimes; in
  // mode none nothing is ever retired, and it wakes only for calls (which it refuses).
  const bool ticking = polling || options_.control_mode == ControlMode::kExplicit;
  const Nanos period = polling ? Nanos(options_.poll_interval) : Nanos(std::chrono::seconds(1));
  SteadyTime next = clock_.Now() + period;
  tasks_mu_.Lock();
  while (true) {
    while (!stop_ && tasks_.empty()) {
      if (!ticking) {
        tasks_cv_.Wait(&tasks_mu_);
      } else if (clock_.WaitUntil(tasks_cv_, tasks_mu_, next)) {
        break;  // the period is over
      }
    }
    if (stop_) break;
    if (!tasks_.empty()) {
      std::function<void(bool)> task = std::move(tasks_.front());
      tasks_.pop_front();
      tasks_mu_.Unlock();
      task(true);
      tasks_mu_.Lock();
      continue;
    }
    tasks_mu_.Unlock();
    {
      absl::MutexLock control(&control_mu_);
      if (polling) {
        PollLocked();
      } else {
        SweepLocked();
      }
    }
    tasks_mu_.Lock();
    next = clock_.Now() + period;
  }
  // Calls still queued are answered, not dropped.
  std::deque<std::function<void(bool)>> left = std::move(tasks_);
  tasks_mu_.Unlock();
  for (auto& task : left) task(false);
}

void ModelRepository::Drain() {
  {
    absl::MutexLock lock(&control_mu_);
    draining_ = true;
  }
  // Stop admission everywhere first, then wait: no model keeps taking work while another drains.
  std::vector<std::future<void>> waits;
  for (const RuntimePtr& rt : Runtimes()) {
    waits.push_back(std::async(std::launch::async, [rt] { rt->Drain(); }));
  }
  for (auto& w : waits) w.get();
}

}  // namespace hivemesh
