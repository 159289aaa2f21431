#include "cli/demo/scenario.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <set>

#include "base/status_macros.h"
#include "base/strings.h"

namespace hivemesh::demo {
namespace fs = std::filesystem;
namespace {

std::string Trim(std::string_view s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  return std::string(s);
}

// "a, b,c" -> {"a", "b", "c"}; empty pieces dropped.
std::vector<std::string> CommaList(std::string_view s) {
  std::vector<std::string> out;
  for (std::string_view piece : Split(s, ',')) {
    std::string t = Trim(piece);
    if (!t.empty()) out.push_back(std::move(t));
  }
  return out;
}

// Reads the scalars of one YAML map, reporting "<file>: <where>.<key>: ..." on a wrong type.
class Fields {
 public:
  Fields(YAML::Node node, std::string where) : node_(std::move(node)), where_(std::move(where)) {}

  template <typename T>
  absl::Status Get(const char* key, T* out, bool required = false) const {
    const YAML::Node v = node_[key];
    if (!v.IsDefined() || v.IsNull()) {
      return required ? absl::InvalidArgumentError(StrCat(where_, key, ": missing"))
                      : absl::OkStatus();
    }
    try {
      *out = v.as<T>();
    } catch (const YAML::Exception&) {
      return absl::InvalidArgumentError(StrCat(where_, key, ": not a ", Kind<T>()));
    }
    return absl::OkStatus();
  }

  absl::Status GetList(const char* key, std::vector<std::string>* out) const {
    const YAML::Node v = node_[key];
    if (!v.IsDefined() || v.IsNull()) return absl::OkStatus();
    if (v.IsScalar()) {
      *out = CommaList(v.as<std::string>());
      return absl::OkStatus();
    }
    if (!v.IsSequence()) {
      return absl::InvalidArgumentError(StrCat(where_, key, ": not a list of names"));
    }
    for (const YAML::Node& item : v) {
      if (!item.IsScalar()) {
        return absl::InvalidArgumentError(StrCat(where_, key, ": not a list of names"));
      }
      out->push_back(item.as<std::string>());
    }
    return absl::OkStatus();
  }

 private:
  template <typename T>
  static const char* Kind() {
    if constexpr (std::is_same_v<T, std::string>) return "string";
    if constexpr (std::is_same_v<T, int>) return "whole number";
    return "number";
  }

  const YAML::Node node_;  // a handle: copies share the document
  std::string where_;
};

absl::StatusOr<YAML::Node> ReadYaml(const std::string& path) {
  try {
    return YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    return absl::NotFoundError(StrCat(path, ": cannot read the file"));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(StrCat(path, ": ", e.what()));
  }
}

absl::StatusOr<NodeSpec> ReadNode(const YAML::Node& item, const std::string& dir,
                                  const std::string& where) {
  NodeSpec n;
  std::string config;
  Fields f(item, where);
  HM_RETURN_IF_ERROR(f.Get("name", &n.name, true));
  HM_RETURN_IF_ERROR(f.Get("config", &config, true));
  n.config_path = fs::absolute(fs::path(dir) / config).lexically_normal().string();
  absl::StatusOr<YAML::Node> doc = ReadYaml(n.config_path);
  if (!doc.ok()) return doc.status();
  if (!doc->IsMap()) {
    return absl::InvalidArgumentError(StrCat(n.config_path, ": expected a map of settings"));
  }
  Fields settings(*doc, StrCat(n.config_path, ": "));
  std::string labels, models;
  HM_RETURN_IF_ERROR(settings.Get("labels", &labels));
  HM_RETURN_IF_ERROR(settings.Get("models", &models));
  for (const std::string& kv : CommaList(labels)) {
    const size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) {
      return absl::InvalidArgumentError(
          StrCat(n.config_path, ": labels: '", kv, "' is not key=value"));
    }
    n.labels[Trim(kv.substr(0, eq))] = Trim(kv.substr(eq + 1));
  }
  n.models = CommaList(models);
  return n;
}

absl::Status CheckRate(const std::string& where, const char* key, double v) {
  if (!(v > 0) || !std::isfinite(v)) {
    return absl::InvalidArgumentError(StrCat(where, key, ": must be more than 0"));
  }
  return absl::OkStatus();
}

// The next free "<prefix>-<n>" name for a copy of `name`.
std::string CopyName(const std::string& name, const std::set<std::string>& taken) {
  std::string prefix = name;
  const size_t dash = name.rfind('-');
  if (dash != std::string::npos && dash + 1 < name.size() &&
      std::all_of(name.begin() + static_cast<long>(dash) + 1, name.end(),
                  [](char c) { return c >= '0' && c <= '9'; })) {
    prefix = name.substr(0, dash);
  }
  for (int i = 2;; ++i) {
    std::string candidate = StrCat(prefix, "-", i);
    if (!taken.contains(candidate)) return candidate;
  }
}

}  // namespace

std::string NodeSpec::zone() const {
  auto it = labels.find("zone");
  return it == labels.end() ? "" : it->second;
}

double CameraSpec::RateAt(double t_s) const {
  if (burst_fps > 0 && burst_every_s > 0 && burst_for_s > 0 && t_s >= burst_every_s) {
    if (std::fmod(t_s, burst_every_s) < burst_for_s) return burst_fps;
  }
  return fps;
}

const NodeSpec* Scenario::Node(const std::string& name) const {
  for (const NodeSpec& n : nodes) {
    if (n.name == name) return &n;
  }
  return nullptr;
}

absl::StatusOr<Scenario> LoadScenario(const std::string& path) {
  absl::StatusOr<YAML::Node> doc = ReadYaml(path);
  if (!doc.ok()) return doc.status();
  const std::string where = StrCat(path, ": ");
  if (!doc->IsMap()) return absl::InvalidArgumentError(StrCat(where, "expected a map"));
  Scenario s;
  s.dir = fs::absolute(fs::path(path)).parent_path().lexically_normal().string();
  Fields top(*doc, where);
  std::string repository = "models";
  HM_RETURN_IF_ERROR(top.Get("repository", &repository));
  s.repository = fs::absolute(fs::path(s.dir) / repository).lexically_normal().string();
  HM_RETURN_IF_ERROR(top.Get("duration_s", &s.duration_s));
  HM_RETURN_IF_ERROR(CheckRate(where, "duration_s", s.duration_s));

  const YAML::Node nodes = (*doc)["nodes"];
  if (!nodes.IsSequence() || nodes.size() == 0) {
    return absl::InvalidArgumentError(StrCat(where, "nodes: expected a list of nodes"));
  }
  for (size_t i = 0; i < nodes.size(); ++i) {
    absl::StatusOr<NodeSpec> n = ReadNode(nodes[i], s.dir, StrCat(where, "nodes[", i, "]."));
    if (!n.ok()) return n.status();
    if (s.Node(n->name) != nullptr) {
      return absl::InvalidArgumentError(
          StrCat(where, "nodes[", i, "].name: '", n->name, "' is used twice"));
    }
    s.nodes.push_back(std::move(*n));
  }

  auto check_node = [&](const std::string& w, const std::string& node,
                        const std::vector<std::string>& fallback) -> absl::Status {
    for (const std::string& name : fallback) {
      if (s.Node(name) == nullptr) {
        return absl::InvalidArgumentError(StrCat(w, "fallback: no node named '", name, "'"));
      }
    }
    if (s.Node(node) == nullptr) {
      return absl::InvalidArgumentError(StrCat(w, "node: no node named '", node, "'"));
    }
    return absl::OkStatus();
  };
  const YAML::Node cameras = (*doc)["cameras"];
  for (size_t i = 0; cameras.IsSequence() && i < cameras.size(); ++i) {
    const std::string w = StrCat(where, "cameras[", i, "].");
    CameraSpec c;
    Fields f(cameras[i], w);
    HM_RETURN_IF_ERROR(f.Get("name", &c.name, true));
    HM_RETURN_IF_ERROR(f.Get("node", &c.node, true));
    HM_RETURN_IF_ERROR(f.GetList("fallback", &c.fallback));
    HM_RETURN_IF_ERROR(f.Get("fps", &c.fps));
    HM_RETURN_IF_ERROR(f.Get("burst_fps", &c.burst_fps));
    HM_RETURN_IF_ERROR(f.Get("burst_every_s", &c.burst_every_s));
    HM_RETURN_IF_ERROR(f.Get("burst_for_s", &c.burst_for_s));
    HM_RETURN_IF_ERROR(f.Get("face_every", &c.face_every));
    HM_RETURN_IF_ERROR(CheckRate(w, "fps", c.fps));
    if (c.burst_fps < 0 || c.burst_every_s < 0 || c.burst_for_s < 0 || c.face_every < 0) {
      return absl::InvalidArgumentError(
          StrCat(w, "burst_fps, burst_every_s, burst_for_s, face_every: must not be negative"));
    }
    HM_RETURN_IF_ERROR(check_node(w, c.node, c.fallback));
    s.cameras.push_back(std::move(c));
  }
  const YAML::Node sensors = (*doc)["sensors"];
  for (size_t i = 0; sensors.IsSequence() && i < sensors.size(); ++i) {
    const std::string w = StrCat(where, "sensors[", i, "].");
    SensorSpec x;
    Fields f(sensors[i], w);
    HM_RETURN_IF_ERROR(f.Get("name", &x.name, true));
    HM_RETURN_IF_ERROR(f.Get("node", &x.node, true));
    HM_RETURN_IF_ERROR(f.GetList("fallback", &x.fallback));
    HM_RETURN_IF_ERROR(f.Get("rate_hz", &x.rate_hz));
    HM_RETURN_IF_ERROR(f.Get("fault_ratio", &x.fault_ratio));
    HM_RETURN_IF_ERROR(CheckRate(w, "rate_hz", x.rate_hz));
    if (!(x.fault_ratio >= 0 && x.fault_ratio <= 1)) {
      return absl::InvalidArgumentError(StrCat(w, "fault_ratio: must be within 0..1"));
    }
    HM_RETURN_IF_ERROR(check_node(w, x.node, x.fallback));
    s.sensors.push_back(std::move(x));
  }
  if (s.cameras.empty() && s.sensors.empty()) {
    return absl::InvalidArgumentError(StrCat(where, "no cameras and no sensors: nothing to do"));
  }
  const YAML::Node chaos = (*doc)["chaos"];
  if (chaos.IsDefined() && !chaos.IsNull()) {
    Fields f(chaos, StrCat(where, "chaos."));
    HM_RETURN_IF_ERROR(f.Get("kill", &s.kill, true));
    HM_RETURN_IF_ERROR(f.Get("kill_at", &s.kill_at));
    HM_RETURN_IF_ERROR(f.Get("restart_at", &s.restart_at));
    if (s.Node(s.kill) == nullptr) {
      return absl::InvalidArgumentError(StrCat(where, "chaos.kill: no node named '", s.kill, "'"));
    }
    if (!(s.kill_at >= 0 && s.kill_at < s.restart_at && s.restart_at < 1)) {
      return absl::InvalidArgumentError(
          StrCat(where, "chaos: needs 0 <= kill_at < restart_at < 1 (fractions of the run)"));
    }
  }
  return s;
}

absl::StatusOr<Scenario> ScaleScenario(const Scenario& s, int nodes) {
  if (nodes < 1) return absl::InvalidArgumentError("--nodes: must be at least 1");
  Scenario out = s;
  const size_t n = static_cast<size_t>(nodes);
  if (n <= s.nodes.size()) {
    out.nodes.resize(n);
    auto gone = [&](const std::string& name) { return out.Node(name) == nullptr; };
    auto prune = [&](auto& clients) {
      std::erase_if(clients, [&](const auto& c) { return gone(c.node); });
      for (auto& c : clients) std::erase_if(c.fallback, gone);
    };
    prune(out.cameras);
    prune(out.sensors);
    if (!out.kill.empty() && gone(out.kill)) out.kill.clear();
    if (out.cameras.empty() && out.sensors.empty()) {
      return absl::InvalidArgumentError(
          StrCat("--nodes ", nodes, ": none of the first ", nodes,
                 " node(s) has a camera or sensor attached; nothing would drive traffic"));
    }
    return out;
  }
  std::set<std::string> taken;
  for (const NodeSpec& node : s.nodes) taken.insert(node.name);
  auto copy_clients = [&](auto& clients, const auto& originals, const std::string& from,
                          const std::string& to) {
    for (const auto& c : originals) {
      if (c.node != from) continue;
      auto copy = c;
      copy.node = to;
      copy.name = StrCat(c.name, "@", to);
      clients.push_back(std::move(copy));
    }
  };
  for (size_t i = s.nodes.size(); i < n; ++i) {
    const NodeSpec& original = s.nodes[i % s.nodes.size()];
    NodeSpec copy = original;
    copy.name = CopyName(original.name, taken);
    taken.insert(copy.name);
    copy_clients(out.cameras, s.cameras, original.name, copy.name);
    copy_clients(out.sensors, s.sensors, original.name, copy.name);
    out.nodes.push_back(std::move(copy));
  }
  return out;
}

}  // namespace hivemesh::demo
