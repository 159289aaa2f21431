#include "serving/model_repository.h"

#include <spdlog/spdlog.h>

#include <charconv>
#include <filesystem>
#include <fstream>
#include <future>
#include <set>
#include <sstream>

#include "base/strings.h"

namespace hivemesh {
namespace fs = std::filesystem;
namespace {

bool ParseVersion(const std::string& s, int64_t* out) {
  if (s.empty() || s[0] == '0') return false;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && ptr == s.data() + s.size() && *out > 0;
}

struct Loaded {
  std::string name;
  std::map<int64_t, std::unique_ptr<ModelRuntime>> versions;
  std::string error;
};

Loaded LoadModel(const fs::path& dir, const RepositoryOptions& options,
                 const BackendRegistry& registry, Expirer* expirer) {
  Loaded out;
  out.name = dir.filename().string();
  const fs::path config_path = dir / "config.yaml";
  std::ifstream in(config_path);
  if (!in) {
    out.error = StrCat(config_path.string(), ": cannot be read");
    return out;
  }
  std::stringstream text;
  text << in.rdbuf();
  absl::StatusOr<ModelConfig> config =
      ParseModelConfig(text.str(), out.name, config_path.string(), options.default_instances,
                       options.default_queue_limit);
  if (!config.ok()) {
    out.error = std::string(config.status().message());
    return out;
  }
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    int64_t version;
    if (!e.is_directory() || !ParseVersion(e.path().filename().string(), &version)) continue;
    absl::StatusOr<std::unique_ptr<ModelRuntime>> rt = ModelRuntime::Create(
        *config, std::to_string(version), e.path().string(), registry, expirer);
    if (!rt.ok()) {
      out.error = StrCat(config_path.string(), ": version ", version, ": ", rt.status().message());
      out.versions.clear();
      return out;
    }
    out.versions[version] = std::move(*rt);
  }
  if (out.versions.empty()) {
    out.error = StrCat(dir.string(), ": no version folder (a positive integer, e.g. 1/)");
  }
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ModelRepository>> ModelRepository::Load(
    const RepositoryOptions& options, const BackendRegistry& registry) {
  std::error_code ec;
  if (!fs::is_directory(options.path, ec)) {
    return absl::NotFoundError(
        StrCat("model repository '", options.path, "' is not a readable folder"));
  }
  const std::set<std::string> wanted(options.models.begin(), options.models.end());
  for (const std::string& name : wanted) {
    if (!fs::is_directory(fs::path(options.path) / name, ec)) {
      return absl::NotFoundError(
          StrCat("model '", name, "' is not in the model repository '", options.path, "'"));
    }
  }
  std::unique_ptr<ModelRepository> repo(new ModelRepository());
  // Models load in parallel: model files are independent, and start-up time matters on a device.
  std::vector<std::future<Loaded>> pending;
  for (const fs::directory_entry& e : fs::directory_iterator(options.path, ec)) {
    const std::string name = e.path().filename().string();
    if (!e.is_directory() || name.starts_with(".")) continue;
    if (!wanted.empty() && !wanted.contains(name)) continue;
    pending.push_back(std::async(std::launch::async, LoadModel, e.path(), std::cref(options),
                                 std::cref(registry), &repo->expirer_));
  }
  for (auto& f : pending) {
    Loaded l = f.get();
    if (!l.error.empty()) {
      spdlog::error("model '{}' is unavailable: {}", l.name, l.error);
    } else {
      spdlog::info("model '{}' loaded ({} version{})", l.name, l.versions.size(),
                   l.versions.size() == 1 ? "" : "s");
    }
    repo->models_[l.name] = Model{std::move(l.versions), std::move(l.error)};
  }
  return repo;
}

ModelRepository::~ModelRepository() { models_.clear(); }

absl::StatusOr<ModelRuntime*> ModelRepository::Find(const std::string& name,
                                                    const std::string& version) const {
  auto it = models_.find(name);
  if (it == models_.end()) {
    return absl::NotFoundError(StrCat("model '", name, "' is not served by this node"));
  }
  const Model& m = it->second;
  if (!m.error.empty()) {
    return absl::UnavailableError(StrCat("model '", name, "' failed to load: ", m.error));
  }
  if (version.empty()) return m.versions.rbegin()->second.get();
  int64_t v;
  if (ParseVersion(version, &v)) {
    auto vit = m.versions.find(v);
    if (vit != m.versions.end()) return vit->second.get();
  }
  std::string known;
  for (const auto& [num, _] : m.versions) StrAppend(&known, known.empty() ? "" : ", ", num);
  return absl::NotFoundError(
      StrCat("model '", name, "' has no version '", version, "' (versions: ", known, ")"));
}

std::vector<std::string> ModelRepository::Versions(const std::string& name) const {
  std::vector<std::string> out;
  auto it = models_.find(name);
  if (it == models_.end()) return out;
  for (const auto& [num, _] : it->second.versions) out.push_back(std::to_string(num));
  return out;
}

std::vector<ModelEntry> ModelRepository::Index() const {
  std::vector<ModelEntry> out;
  for (const auto& [name, m] : models_) {
    if (!m.error.empty()) {
      out.push_back(ModelEntry{name, "", "UNAVAILABLE", m.error});
      continue;
    }
    for (const auto& [num, _] : m.versions) {
      out.push_back(ModelEntry{name, std::to_string(num), "READY", ""});
    }
  }
  return out;
}

std::vector<ModelRuntime*> ModelRepository::Runtimes() const {
  std::vector<ModelRuntime*> out;
  for (const auto& [name, m] : models_) {
    for (const auto& [num, rt] : m.versions) out.push_back(rt.get());
  }
  return out;
}

void ModelRepository::Drain() {
  // Stop admission everywhere first, then wait: no model keeps taking work while another drains.
  std::vector<std::future<void>> waits;
  for (ModelRuntime* rt : Runtimes()) {
    waits.push_back(std::async(std::launch::async, [rt] { rt->Drain(); }));
  }
  for (auto& w : waits) w.get();
}

}  // namespace hivemesh
