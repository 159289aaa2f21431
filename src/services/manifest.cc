#include "services/manifest.h"

#include <set>

#include "base/status_macros.h"
#include "base/strings.h"
#include "serving/data_policy.h"
#include "yaml-cpp/yaml.h"

namespace hivemesh::services {
namespace {

constexpr size_t kMaxListItems = 256;
constexpr size_t kMaxStringBytes = 4096;
constexpr size_t kMaxWarnings = 32;

bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// What one document's parse knows: where it is (for errors) and what it warned about.
class Document {
 public:
  Document(std::string where, std::vector<std::string>* warnings)
      : where_(std::move(where)), warnings_(warnings) {}

  void Rename(std::string where) { where_ = std::move(where); }

  absl::Status Error(std::string_view field, std::string_view why) const {
    return absl::InvalidArgumentError(StrCat(where_, ": ", field, ": ", why));
  }
  // `s`, said of this document.
  absl::Status Wrap(const absl::Status& s) const {
    return s.ok() ? s : absl::InvalidArgumentError(StrCat(where_, ": ", s.message()));
  }

  // Warns about each key of `map` (at `path`) that is not in `known`.
  void Unknown(const YAML::Node& map, std::string_view path,
               std::initializer_list<std::string_view> known) {
    if (!map.IsMap()) return;
    for (const auto& entry : map) {
      const std::string key = entry.first.IsScalar() ? entry.first.Scalar() : "?";
      bool is_known = false;
      for (std::string_view k : known) is_known = is_known || k == key;
      if (is_known || warnings_->size() >= kMaxWarnings) continue;
      warnings_->push_back(StrCat(where_, ": ", path.empty() ? "" : StrCat(path, "."),
                                  key.substr(0, 64), " is not used by hivemesh; left out"));
    }
  }

  absl::StatusOr<std::string> String(const YAML::Node& node, std::string_view field) const {
    if (!node.IsScalar()) return Error(field, "must be a string");
    if (node.Scalar().size() > kMaxStringBytes) {
      return Error(field, StrCat("longer than ", kMaxStringBytes, " bytes"));
    }
    return node.Scalar();
  }

  absl::StatusOr<int64_t> Integer(const YAML::Node& node, std::string_view field, int64_t lo,
                                  int64_t hi) const {
    if (node.IsScalar()) {
      if (std::optional<uint64_t> n = ParseUint(node.Scalar());
          n && *n <= static_cast<uint64_t>(hi) && static_cast<int64_t>(*n) >= lo) {
        return static_cast<int64_t>(*n);
      }
    }
    return Error(field, StrCat("must be ", lo, " to ", hi));
  }

  // A number from 1 to 65535, or (`named`) the name of a port.
  absl::StatusOr<std::string> PortRef(const YAML::Node& node, std::string_view field) const {
    HM_ASSIGN_OR_RETURN(std::string text, String(node, field));
    if (std::optional<uint64_t> n = ParseUint(text)) {
      if (*n >= 1 && *n <= 65535) return text;
      return Error(field, "must be 1 to 65535, or a port's name");
    }
    if (!CheckName(text, field).ok() || text.size() > 15) {
      return Error(field, "must be 1 to 65535, or a port's name");
    }
    return text;
  }

  absl::StatusOr<std::vector<std::string>> Strings(const YAML::Node& node,
                                                   std::string_view field) const {
    if (!node.IsSequence()) return Error(field, "must be a list of strings");
    if (node.size() > kMaxListItems) return Error(field, StrCat("more than ", kMaxListItems));
    std::vector<std::string> out;
    for (size_t i = 0; i < node.size(); ++i) {
      HM_ASSIGN_OR_RETURN(std::string s, String(node[i], StrCat(field, "[", i, "]")));
      out.push_back(std::move(s));
    }
    return out;
  }

  // A map of labels (or annotations): string keys and values, each checked.
  absl::StatusOr<Labels> LabelMap(const YAML::Node& node, std::string_view field,
                                  bool annotations) const {
    Labels out;
    if (!node) return out;
    if (!node.IsMap()) return Error(field, "must be a map of strings");
    if (node.size() > kMaxListItems) return Error(field, StrCat("more than ", kMaxListItems));
    for (const auto& entry : node) {
      if (!entry.first.IsScalar() || !entry.second.IsScalar()) {
        return Error(field, "must be a map of strings");
      }
      const std::string& key = entry.first.Scalar();
      const std::string& value = entry.second.Scalar();
      HM_RETURN_IF_ERROR(CheckLabelKey(key, StrCat(field, ".", key.substr(0, 64))));
      if (!annotations) {
        HM_RETURN_IF_ERROR(CheckLabelValue(value, StrCat(field, ".", key)));
      } else if (value.size() > kMaxStringBytes) {
        return Error(StrCat(field, ".", key), StrCat("longer than ", kMaxStringBytes, " bytes"));
      }
      out.emplace(key, value);
    }
    return out;
  }

 private:
  absl::Status CheckLabelKey(std::string_view key, std::string_view field) const {
    std::string_view name = key;
    if (const size_t slash = key.find('/'); slash != std::string_view::npos) {
      const std::string_view prefix = key.substr(0, slash);
      name = key.substr(slash + 1);
      bool ok = !prefix.empty() && prefix.size() <= 253;
      for (const char c : prefix) ok = ok && (IsLowerAlnum(c) || c == '-' || c == '.');
      if (!ok) return Error(field, "the key's prefix must be a DNS name");
    }
    if (!ValidLabelText(name, /*empty_ok=*/false)) {
      return Error(field,
                   "a key must be 1 to 63 of [A-Za-z0-9._-], starting with a letter or digit");
    }
    return absl::OkStatus();
  }
  absl::Status CheckLabelValue(std::string_view value, std::string_view field) const {
    if (!ValidLabelText(value, /*empty_ok=*/true)) {
      return Error(field,
                   "a value must be at most 63 of [A-Za-z0-9._-], starting with a letter or digit");
    }
    return absl::OkStatus();
  }
  static bool ValidLabelText(std::string_view s, bool empty_ok) {
    if (s.empty()) return empty_ok;
    if (s.size() > 63) return false;
    const auto alnum = [](char c) {
      return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    };
    if (!alnum(s.front()) || !alnum(s.back())) return false;
    for (const char c : s) {
      if (!alnum(c) && c != '-' && c != '_' && c != '.') return false;
    }
    return true;
  }

  std::string where_;
  std::vector<std::string>* warnings_;
};

// The deepest nesting of `yaml`, roughly: flow brackets, and the indentation of block lines
// (with a "- " on the same line counted as a level each). Refusing deep text before the parser
// sees it keeps its recursion, and ours, shallow.
int NestingDepth(std::string_view yaml) {
  int deepest = 0, flow = 0;
  for (std::string_view line : Split(yaml, '\n')) {
    int indent = 0;
    size_t i = 0;
    while (i < line.size() && (line[i] == ' ' || line[i] == '-')) {
      if (line[i] == '-' && (i + 1 == line.size() || line[i + 1] == ' ')) indent += 2;
      if (line[i] == ' ') ++indent;
      if (line[i] == '-' && i + 1 < line.size() && line[i + 1] != ' ') break;
      ++i;
    }
    deepest = std::max(deepest, indent / 2);
    for (const char c : line) {
      if (c == '[' || c == '{') deepest = std::max(deepest, ++flow);
      if ((c == ']' || c == '}') && flow > 0) --flow;
    }
  }
  return deepest;
}

absl::Status ParseService(const YAML::Node& doc, Document& d, Manifest& m) {
  const YAML::Node spec = doc["spec"];
  if (!spec || !spec.IsMap()) return d.Error("spec", "must be a map");
  d.Unknown(spec, "spec", {"selector", "ports", "type", "clusterIP"});
  HM_ASSIGN_OR_RETURN(m.service.selector, d.LabelMap(spec["selector"], "spec.selector", false));
  if (m.service.selector.empty()) {
    return d.Error("spec.selector", "must select workloads by at least one label");
  }
  const YAML::Node ports = spec["ports"];
  if (!ports || !ports.IsSequence() || ports.size() == 0) {
    return d.Error("spec.ports", "must list at least one port");
  }
  if (ports.size() > 64) return d.Error("spec.ports", "more than 64");
  std::set<uint16_t> seen;
  for (size_t i = 0; i < ports.size(); ++i) {
    const std::string at = StrCat("spec.ports[", i, "]");
    const YAML::Node p = ports[i];
    if (!p.IsMap()) return d.Error(at, "must be a map");
    d.Unknown(p, at, {"name", "protocol", "appProtocol", "port", "targetPort"});
    ServicePort port;
    if (p["name"]) {
      HM_ASSIGN_OR_RETURN(port.name, d.String(p["name"], StrCat(at, ".name")));
    }
    if (p["protocol"]) {
      HM_ASSIGN_OR_RETURN(std::string protocol, d.String(p["protocol"], StrCat(at, ".protocol")));
      if (protocol != "TCP") {
        return d.Error(StrCat(at, ".protocol"), "hivemesh carries TCP only");
      }
    }
    if (!p["port"]) return d.Error(StrCat(at, ".port"), "is required");
    HM_ASSIGN_OR_RETURN(int64_t number, d.Integer(p["port"], StrCat(at, ".port"), 1, 65535));
    port.port = static_cast<uint16_t>(number);
    if (!seen.insert(port.port).second) {
      return d.Error(StrCat(at, ".port"), StrCat("port ", number, " is listed twice"));
    }
    if (p["targetPort"]) {
      HM_ASSIGN_OR_RETURN(port.target_port, d.PortRef(p["targetPort"], StrCat(at, ".targetPort")));
    }
    if (p["appProtocol"]) {
      HM_ASSIGN_OR_RETURN(port.app_protocol,
                          d.String(p["appProtocol"], StrCat(at, ".appProtocol")));
    }
    m.service.ports.push_back(std::move(port));
  }
  return absl::OkStatus();
}

absl::Status ParseContainer(const YAML::Node& c, Document& d, WorkloadSpec& w) {
  const std::string at = "spec.template.spec.containers[0]";
  d.Unknown(c, at, {"name", "image", "command", "args", "env", "ports", "readinessProbe"});
  if (c["image"]) {
    HM_ASSIGN_OR_RETURN(w.image, d.String(c["image"], StrCat(at, ".image")));
  }
  if (c["command"]) {
    HM_ASSIGN_OR_RETURN(w.command, d.Strings(c["command"], StrCat(at, ".command")));
  }
  if (c["args"]) {
    HM_ASSIGN_OR_RETURN(w.args, d.Strings(c["args"], StrCat(at, ".args")));
  }
  if (w.image.empty() && w.command.empty()) {
    return d.Error(at, "needs an image (run through podman) or a command (run as a process)");
  }
  if (!w.command.empty() && w.command[0].empty()) {
    return d.Error(StrCat(at, ".command[0]"), "is empty");
  }
  if (const YAML::Node env = c["env"]) {
    if (!env.IsSequence() || env.size() > kMaxListItems) {
      return d.Error(StrCat(at, ".env"), "must be a list of {name, value}");
    }
    for (size_t i = 0; i < env.size(); ++i) {
      const std::string e = StrCat(at, ".env[", i, "]");
      if (!env[i].IsMap() || !env[i]["name"]) return d.Error(e, "must be a map with a name");
      d.Unknown(env[i], e, {"name", "value"});
      HM_ASSIGN_OR_RETURN(std::string name, d.String(env[i]["name"], StrCat(e, ".name")));
      bool ok = !name.empty() && name.size() <= 128 && !(name[0] >= '0' && name[0] <= '9');
      for (const char ch : name) {
        ok = ok && ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                    (ch >= '0' && ch <= '9') || ch == '_');
      }
      if (!ok)
        return d.Error(StrCat(e, ".name"), "must be a variable name ([A-Za-z_][A-Za-z0-9_]*)");
      std::string value;
      if (env[i]["value"]) {
        HM_ASSIGN_OR_RETURN(value, d.String(env[i]["value"], StrCat(e, ".value")));
      }
      w.env.emplace_back(std::move(name), std::move(value));
    }
  }
  if (const YAML::Node ports = c["ports"]) {
    if (!ports.IsSequence() || ports.size() > 64) {
      return d.Error(StrCat(at, ".ports"), "must be a list of at most 64 ports");
    }
    for (size_t i = 0; i < ports.size(); ++i) {
      const std::string p = StrCat(at, ".ports[", i, "]");
      if (!ports[i].IsMap()) return d.Error(p, "must be a map");
      d.Unknown(ports[i], p, {"name", "containerPort", "protocol"});
      ContainerPort port;
      if (!ports[i]["containerPort"]) return d.Error(StrCat(p, ".containerPort"), "is required");
      HM_ASSIGN_OR_RETURN(
          int64_t n, d.Integer(ports[i]["containerPort"], StrCat(p, ".containerPort"), 1, 65535));
      port.container_port = static_cast<uint16_t>(n);
      if (ports[i]["name"]) {
        HM_ASSIGN_OR_RETURN(port.name, d.String(ports[i]["name"], StrCat(p, ".name")));
        HM_RETURN_IF_ERROR(d.Wrap(CheckName(port.name, StrCat(p, ".name"))));
      }
      w.ports.push_back(std::move(port));
    }
  }
  if (const YAML::Node probe = c["readinessProbe"]) {
    const std::string p = StrCat(at, ".readinessProbe");
    if (!probe.IsMap() || !probe["httpGet"] || !probe["httpGet"].IsMap()) {
      return d.Error(p, "hivemesh probes by httpGet only");
    }
    d.Unknown(probe, p, {"httpGet", "periodSeconds", "failureThreshold"});
    const YAML::Node get = probe["httpGet"];
    d.Unknown(get, StrCat(p, ".httpGet"), {"path", "port"});
    HttpProbe h;
    if (get["path"]) {
      HM_ASSIGN_OR_RETURN(h.path, d.String(get["path"], StrCat(p, ".httpGet.path")));
      if (h.path.empty() || h.path[0] != '/') {
        return d.Error(StrCat(p, ".httpGet.path"), "must start with '/'");
      }
      for (const char ch : h.path) {
        if (static_cast<unsigned char>(ch) <= ' ' || ch == 0x7f) {
          return d.Error(StrCat(p, ".httpGet.path"), "holds a space or a control character");
        }
      }
    }
    if (!get["port"]) return d.Error(StrCat(p, ".httpGet.port"), "is required");
    HM_ASSIGN_OR_RETURN(h.port, d.PortRef(get["port"], StrCat(p, ".httpGet.port")));
    if (probe["periodSeconds"]) {
      HM_ASSIGN_OR_RETURN(int64_t n,
                          d.Integer(probe["periodSeconds"], StrCat(p, ".periodSeconds"), 1, 3600));
      h.period_seconds = static_cast<int>(n);
    }
    if (probe["failureThreshold"]) {
      HM_ASSIGN_OR_RETURN(
          int64_t n, d.Integer(probe["failureThreshold"], StrCat(p, ".failureThreshold"), 1, 100));
      h.failure_threshold = static_cast<int>(n);
    }
    w.readiness = std::move(h);
  }
  return absl::OkStatus();
}

absl::Status ParseDeployment(const YAML::Node& doc, Document& d, Manifest& m) {
  const YAML::Node spec = doc["spec"];
  if (!spec || !spec.IsMap()) return d.Error("spec", "must be a map");
  d.Unknown(spec, "spec", {"replicas", "selector", "template", "strategy"});
  WorkloadSpec& w = m.workload;
  if (spec["replicas"]) {
    HM_ASSIGN_OR_RETURN(int64_t n, d.Integer(spec["replicas"], "spec.replicas", 0, kMaxReplicas));
    w.replicas = static_cast<int>(n);
  }
  const YAML::Node selector = spec["selector"];
  if (!selector || !selector.IsMap()) return d.Error("spec.selector", "must be a map");
  d.Unknown(selector, "spec.selector", {"matchLabels"});
  HM_ASSIGN_OR_RETURN(w.match_labels,
                      d.LabelMap(selector["matchLabels"], "spec.selector.matchLabels", false));
  if (w.match_labels.empty()) {
    return d.Error("spec.selector.matchLabels", "must hold at least one label");
  }
  const YAML::Node tmpl = spec["template"];
  if (!tmpl || !tmpl.IsMap()) return d.Error("spec.template", "must be a map");
  d.Unknown(tmpl, "spec.template", {"metadata", "spec"});
  if (tmpl["metadata"]) d.Unknown(tmpl["metadata"], "spec.template.metadata", {"labels"});
  HM_ASSIGN_OR_RETURN(w.template_labels, d.LabelMap(tmpl["metadata"]["labels"],
                                                    "spec.template.metadata.labels", false));
  for (const auto& [key, value] : w.match_labels) {
    auto it = w.template_labels.find(key);
    if (it == w.template_labels.end() || it->second != value) {
      return d.Error("spec.selector.matchLabels",
                     StrCat(key, "=", value, " is not among spec.template.metadata.labels"));
    }
  }
  const YAML::Node pod = tmpl["spec"];
  if (!pod || !pod.IsMap()) return d.Error("spec.template.spec", "must be a map");
  d.Unknown(pod, "spec.template.spec", {"containers"});
  const YAML::Node containers = pod["containers"];
  if (!containers || !containers.IsSequence() || containers.size() == 0 || !containers[0].IsMap()) {
    return d.Error("spec.template.spec.containers", "must list one container");
  }
  if (containers.size() > 1) {
    return d.Error("spec.template.spec.containers", "hivemesh runs one container per workload");
  }
  return ParseContainer(containers[0], d, w);
}

absl::StatusOr<Manifest> ParseDocument(const YAML::Node& doc, size_t index,
                                       std::vector<std::string>* warnings) {
  Document d(StrCat("document ", index + 1), warnings);
  if (!doc.IsMap()) return d.Error("(top)", "must be a map");
  if (!doc["kind"] || !doc["kind"].IsScalar()) return d.Error("kind", "is required");
  const std::string kind = doc["kind"].Scalar();
  const std::string api = doc["apiVersion"] && doc["apiVersion"].IsScalar()
                              ? doc["apiVersion"].Scalar()
                              : std::string();
  Manifest m;
  if (kind == "Service") {
    if (api != "v1") return d.Error("apiVersion", "a Service is apiVersion v1");
    m.kind = Kind::kService;
  } else if (kind == "Deployment") {
    if (api != "apps/v1") return d.Error("apiVersion", "a Deployment is apiVersion apps/v1");
    m.kind = Kind::kDeployment;
  } else {
    return d.Error("kind", StrCat("'", kind.substr(0, 64),
                                  "' is not a kind hivemesh runs (Service, Deployment)"));
  }
  const YAML::Node meta = doc["metadata"];
  if (!meta || !meta.IsMap() || !meta["name"]) return d.Error("metadata.name", "is required");
  HM_ASSIGN_OR_RETURN(m.name, d.String(meta["name"], "metadata.name"));
  HM_RETURN_IF_ERROR(d.Wrap(CheckName(m.name, "metadata.name")));
  if (m.kind == Kind::kService && m.name == "localhost") {
    // Services are reached by Host: this one would take every request for the node itself.
    return d.Error("metadata.name",
                   "'localhost' is how clients reach the node itself; a Service may not take it");
  }
  d.Rename(StrCat(kind, " ", m.name));
  d.Unknown(doc, "", {"apiVersion", "kind", "metadata", "spec", "status"});
  d.Unknown(meta, "metadata", {"name", "namespace", "labels", "annotations"});
  HM_ASSIGN_OR_RETURN(m.annotations, d.LabelMap(meta["annotations"], "metadata.annotations", true));
  if (auto policy = m.annotations.find(std::string(kDataPolicyAnnotation));
      policy != m.annotations.end() && !DataPolicyFromName(policy->second)) {
    return d.Error(StrCat("metadata.annotations.", kDataPolicyAnnotation),
                   "must be local-only, zone or mesh");
  }
  if (m.kind == Kind::kService) {
    HM_RETURN_IF_ERROR(ParseService(doc, d, m));
  } else {
    HM_RETURN_IF_ERROR(ParseDeployment(doc, d, m));
  }
  YAML::Emitter out;
  out << doc;
  m.text = std::string(out.c_str(), out.size());
  return m;
}

}  // namespace

std::string_view KindName(Kind kind) { return kind == Kind::kService ? "Service" : "Deployment"; }

std::optional<Kind> ParseKind(std::string_view text) {
  for (std::string_view s : {"Service", "service", "services", "svc"}) {
    if (text == s) return Kind::kService;
  }
  for (std::string_view s :
       {"Deployment", "deployment", "deployments", "deploy", "workload", "workloads"}) {
    if (text == s) return Kind::kDeployment;
  }
  return std::nullopt;
}

bool ServicePort::ConnectionLevel() const {
  return !app_protocol.empty() && !EqualsLowerCase(app_protocol, "http");
}

bool IsName(std::string_view name) {
  bool ok =
      !name.empty() && name.size() <= 63 && IsLowerAlnum(name.front()) && IsLowerAlnum(name.back());
  for (const char c : name) ok = ok && (IsLowerAlnum(c) || c == '-');
  return ok;
}

absl::Status CheckName(std::string_view name, std::string_view what) {
  if (!IsName(name)) {
    return absl::InvalidArgumentError(
        StrCat(what, ": '", name.substr(0, 64),
               "' must be 1 to 63 of [a-z0-9-], starting and ending with a letter or digit"));
  }
  return absl::OkStatus();
}

absl::StatusOr<Parsed> ParseManifests(std::string_view yaml) {
  if (yaml.size() > kMaxManifestBytes) {
    return absl::InvalidArgumentError(
        StrCat("a manifest of ", yaml.size(), " bytes: at most ", kMaxManifestBytes));
  }
  if (const int depth = NestingDepth(yaml); depth > kMaxNestingDepth) {
    return absl::InvalidArgumentError(
        StrCat("the manifest nests ", depth, " levels deep: at most ", kMaxNestingDepth));
  }
  std::vector<YAML::Node> docs;
  try {
    docs = YAML::LoadAll(std::string(yaml));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(StrCat("not YAML: ", e.what()));
  }
  Parsed out;
  std::set<std::pair<Kind, std::string>> seen;
  size_t index = 0;
  try {
    for (const YAML::Node& doc : docs) {
      if (!doc || doc.IsNull()) {
        ++index;
        continue;
      }
      if (out.manifests.size() >= kMaxDocuments) {
        return absl::InvalidArgumentError(
            StrCat("more than ", kMaxDocuments, " documents in one manifest"));
      }
      HM_ASSIGN_OR_RETURN(Manifest m, ParseDocument(doc, index++, &out.warnings));
      if (!seen.emplace(m.kind, m.name).second) {
        return absl::InvalidArgumentError(
            StrCat(KindName(m.kind), " ", m.name, " is in the manifest twice"));
      }
      out.manifests.push_back(std::move(m));
    }
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(StrCat("document ", index + 1, ": ", e.what()));
  }
  if (out.manifests.empty()) return absl::InvalidArgumentError("the manifest holds no object");
  return out;
}

}  // namespace hivemesh::services
