#include "serving/model_config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <iterator>
#include <limits>

#include "base/strings.h"

namespace hivemesh {
namespace {

// Raised inside the parser only; turned into a Status before leaving this file.
struct ConfigError {
  std::string field;
  std::string message;
};

std::string ScalarOf(const YAML::Node& node, const std::string& field) {
  if (!node.IsScalar()) throw ConfigError{field, "must be a scalar"};
  return node.Scalar();
}

int IntOf(const YAML::Node& node, const std::string& field, int min, int max) {
  const std::string text = ScalarOf(node, field);
  int value = 0;
  try {
    value = node.as<int>();
  } catch (const YAML::Exception&) {
    throw ConfigError{field, "'" + text + "' is not an integer"};
  }
  if (value < min || value > max) {
    throw ConfigError{field, StrCat(value, " is outside [", min, ", ", max, "]")};
  }
  return value;
}

TensorConfig TensorOf(const YAML::Node& node, const std::string& field) {
  if (!node.IsMap()) throw ConfigError{field, "must be a map with name, datatype and shape"};
  TensorConfig t;
  if (!node["name"]) throw ConfigError{field + ".name", "is required"};
  t.name = ScalarOf(node["name"], field + ".name");
  if (t.name.empty()) throw ConfigError{field + ".name", "must not be empty"};
  if (!node["datatype"]) throw ConfigError{field + ".datatype", "is required"};
  const std::string dt = ScalarOf(node["datatype"], field + ".datatype");
  std::optional<DataType> type = DataTypeFromName(dt);
  if (!type) throw ConfigError{field + ".datatype", "unknown datatype '" + dt + "'"};
  t.type = *type;
  const YAML::Node shape = node["shape"];
  if (!shape || !shape.IsSequence()) {
    throw ConfigError{field + ".shape", "is required, as a list of dimensions (-1 = variable)"};
  }
  for (size_t i = 0; i < shape.size(); ++i) {
    const std::string f = StrCat(field, ".shape[", i, "]");
    t.dims.push_back(IntOf(shape[i], f, -1, 1 << 30));
  }
  if (node["optional"]) {
    try {
      t.optional = node["optional"].as<bool>();
    } catch (const YAML::Exception&) {
      throw ConfigError{field + ".optional", "must be true or false"};
    }
  }
  for (const auto& kv : node) {
    const std::string key = kv.first.Scalar();
    if (key != "name" && key != "datatype" && key != "shape" && key != "optional") {
      throw ConfigError{field + "." + key, "unknown field"};
    }
  }
  return t;
}

std::vector<TensorConfig> TensorsOf(const YAML::Node& node, const std::string& field) {
  if (!node || !node.IsSequence() || node.size() == 0) {
    throw ConfigError{field, "is required, as a non-empty list of tensors"};
  }
  std::vector<TensorConfig> out;
  for (size_t i = 0; i < node.size(); ++i) {
    out.push_back(TensorOf(node[i], StrCat(field, "[", i, "]")));
    for (size_t j = 0; j + 1 < out.size(); ++j) {
      if (out[j].name == out.back().name) {
        throw ConfigError{StrCat(field, "[", i, "].name"),
                          "duplicate tensor name '" + out.back().name + "'"};
      }
    }
  }
  return out;
}

void ValidateBatching(ModelConfig& c) {
  BatchingConfig& b = c.batching;
  std::vector<int>& preferred = b.preferred_batch_sizes;
  if (!b.enabled()) {
    if (!preferred.empty()) {
      throw ConfigError{"preferred_batch_sizes", "needs max_batch_size > 0"};
    }
    if (b.max_queue_delay_us != 0) {
      throw ConfigError{"max_queue_delay_us", "needs max_batch_size > 0"};
    }
    return;
  }
  const bool can_batch = std::find(std::begin(kBatchingBackends), std::end(kBatchingBackends),
                                   c.backend) != std::end(kBatchingBackends);
  if (!can_batch) {
    std::string names;
    for (std::string_view n : kBatchingBackends) StrAppend(&names, names.empty() ? "" : ", ", n);
    throw ConfigError{"max_batch_size",
                      StrCat("backend '", c.backend, "' cannot batch requests (only ", names,
                             " can); remove max_batch_size or set it to 0")};
  }
  auto check_dims = [](const std::vector<TensorConfig>& tensors, const std::string& field) {
    for (size_t i = 0; i < tensors.size(); ++i) {
      if (tensors[i].dims.empty() || tensors[i].dims[0] != -1) {
        throw ConfigError{StrCat(field, "[", i, "].shape"),
                          StrCat("must start with -1 (the batch dimension) when max_batch_size "
                                 "> 0, not ",
                                 ShapeString(tensors[i].dims))};
      }
    }
  };
  check_dims(c.inputs, "inputs");
  check_dims(c.outputs, "outputs");
  for (size_t i = 0; i < preferred.size(); ++i) {
    if (preferred[i] > b.max_batch_size) {
      throw ConfigError{StrCat("preferred_batch_sizes[", i, "]"),
                        StrCat(preferred[i], " is larger than max_batch_size ", b.max_batch_size)};
    }
  }
  std::sort(preferred.begin(), preferred.end());
  preferred.erase(std::unique(preferred.begin(), preferred.end()), preferred.end());
}

std::vector<int64_t> VersionListOf(const YAML::Node& node, const std::string& field) {
  if (!node.IsSequence() || node.size() == 0) {
    throw ConfigError{field, "must be a non-empty list of versions"};
  }
  std::vector<int64_t> out;
  for (size_t i = 0; i < node.size(); ++i) {
    out.push_back(IntOf(node[i], StrCat(field, "[", i, "]"), 1, std::numeric_limits<int>::max()));
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

// `all`, {latest: N}, {specific: [...]}, or Triton's nested forms of these.
VersionPolicy VersionPolicyOf(const YAML::Node& node) {
  const std::string field = "version_policy";
  const std::string usage = "must be all, {latest: N} or {specific: [versions]}";
  VersionPolicy p;
  if (node.IsScalar()) {
    if (node.Scalar() != "all") throw ConfigError{field, "'" + node.Scalar() + "' " + usage};
    p.kind = VersionPolicy::Kind::kAll;
    return p;
  }
  if (!node.IsMap() || node.size() != 1) throw ConfigError{field, usage};
  const std::string kind = node.begin()->first.Scalar();
  const YAML::Node v = node.begin()->second;  // a copy: the iterator yields a temporary
  if (kind == "all") {
    p.kind = VersionPolicy::Kind::kAll;
  } else if (kind == "latest") {
    p.kind = VersionPolicy::Kind::kLatest;
    const bool nested = v.IsMap() && v["num_versions"];
    p.latest = IntOf(nested ? v["num_versions"] : v,
                     field + (nested ? ".latest.num_versions" : ".latest"), 1, 1 << 16);
  } else if (kind == "specific") {
    p.kind = VersionPolicy::Kind::kSpecific;
    const bool nested = v.IsMap() && v["versions"];
    p.specific = VersionListOf(nested ? v["versions"] : v,
                               field + (nested ? ".specific.versions" : ".specific"));
  } else {
    throw ConfigError{field + "." + kind, "unknown policy; " + usage};
  }
  return p;
}

// A scalar, or a list of scalars.
std::vector<std::string> ScalarsOf(const YAML::Node& node, const std::string& field) {
  if (node.IsScalar()) return {node.Scalar()};
  if (!node.IsSequence()) throw ConfigError{field, "must be a name or a list of names"};
  std::vector<std::string> out;
  for (size_t i = 0; i < node.size(); ++i)
    out.push_back(ScalarOf(node[i], StrCat(field, "[", i, "]")));
  return out;
}

std::vector<InsightRule> InsightRulesOf(const YAML::Node& node,
                                        const std::vector<TensorConfig>& outputs) {
  if (!node.IsSequence()) throw ConfigError{"insights", "must be a list of rules"};
  if (node.size() > kMaxInsightRules) {
    throw ConfigError{"insights", StrCat("more than ", kMaxInsightRules, " rules")};
  }
  std::vector<InsightRule> rules;
  for (size_t i = 0; i < node.size(); ++i) {
    const std::string field = StrCat("insights[", i, "]");
    const YAML::Node& r = node[i];
    if (!r.IsMap()) throw ConfigError{field, "must be a map with topic, output, when, every"};
    InsightRuleFields f;
    for (const auto& kv : r) {
      const std::string key = kv.first.Scalar();
      const std::string sub = StrCat(field, ".", key);
      if (key == "topic") {
        f.topic = ScalarOf(kv.second, sub);
      } else if (key == "output") {
        f.outputs = ScalarsOf(kv.second, sub);
      } else if (key == "when") {
        f.when = ScalarOf(kv.second, sub);
      } else if (key == "every") {
        f.every = ScalarOf(kv.second, sub);
      } else if (key == "aggregate") {
        f.aggregates = ScalarsOf(kv.second, sub);
      } else {
        throw ConfigError{sub, "unknown field (topic, output, when, every, aggregate)"};
      }
    }
    absl::StatusOr<InsightRule> rule = ParseInsightRule(f, outputs);
    if (!rule.ok()) {
      // "<field>: <why>" from the rule's parser.
      const std::string what(MessageOf(rule.status()));
      const size_t colon = what.find(": ");
      throw ConfigError{StrCat(field, ".", what.substr(0, colon)), what.substr(colon + 2)};
    }
    rules.push_back(*std::move(rule));
  }
  return rules;
}

ModelConfig ParseOrThrow(const YAML::Node& root, std::string_view model_name, int default_instances,
                         int default_queue_limit) {
  if (!root.IsMap()) throw ConfigError{"(top level)", "must be a map"};
  ModelConfig c;
  c.name = std::string(model_name);
  c.instances = default_instances;
  c.queue_limit = default_queue_limit;
  std::optional<YAML::Node> insights;  // read once the outputs are known
  for (const auto& kv : root) {
    const std::string key = kv.first.Scalar();
    const YAML::Node& v = kv.second;
    if (key == "backend") {
      c.backend = ScalarOf(v, key);
    } else if (key == "platform") {
      c.platform = ScalarOf(v, key);
    } else if (key == "instances") {
      c.instances = IntOf(v, key, 1, 256);
    } else if (key == "queue_limit") {
      c.queue_limit = IntOf(v, key, 0, 1 << 20);
    } else if (key == "dataPolicy") {
      const std::string name = ScalarOf(v, key);
      std::optional<DataPolicy> policy = DataPolicyFromName(name);
      if (!policy) {
        throw ConfigError{key, "'" + name + "' is not one of local-only, zone, mesh"};
      }
      c.data_policy = *policy;
    } else if (key == "max_batch_size") {
      c.batching.max_batch_size = IntOf(v, key, 0, 1 << 16);
    } else if (key == "preferred_batch_sizes") {
      if (!v.IsSequence()) throw ConfigError{key, "must be a list of batch sizes"};
      for (size_t i = 0; i < v.size(); ++i) {
        c.batching.preferred_batch_sizes.push_back(
            IntOf(v[i], StrCat(key, "[", i, "]"), 1, 1 << 16));
      }
    } else if (key == "max_queue_delay_us") {
      c.batching.max_queue_delay_us = IntOf(v, key, 0, 60'000'000);
    } else if (key == "version_policy") {
      c.version_policy = VersionPolicyOf(v);
    } else if (key == "inputs") {
      c.inputs = TensorsOf(v, key);
    } else if (key == "outputs") {
      c.outputs = TensorsOf(v, key);
    } else if (key == "insights") {
      insights = v;
    } else if (key == "options") {
      if (!v.IsMap()) throw ConfigError{key, "must be a map of option: value"};
      for (const auto& opt : v) {
        const std::string name = opt.first.Scalar();
        c.options[name] = ScalarOf(opt.second, "options." + name);
      }
    } else {
      throw ConfigError{key, "unknown field"};
    }
  }
  if (c.backend.empty()) throw ConfigError{"backend", "is required"};
  if (c.inputs.empty()) throw ConfigError{"inputs", "is required, as a non-empty list of tensors"};
  if (c.outputs.empty()) {
    throw ConfigError{"outputs", "is required, as a non-empty list of tensors"};
  }
  if (c.platform.empty()) c.platform = c.backend;
  ValidateBatching(c);
  if (insights) c.insight_rules = InsightRulesOf(*insights, c.outputs);
  return c;
}

}  // namespace

std::string ModelConfig::Option(const std::string& key, const std::string& fallback) const {
  auto it = options.find(key);
  return it == options.end() ? fallback : it->second;
}

const TensorConfig* ModelConfig::FindInput(std::string_view n) const {
  for (const TensorConfig& t : inputs) {
    if (t.name == n) return &t;
  }
  return nullptr;
}

const TensorConfig* ModelConfig::FindOutput(std::string_view n) const {
  for (const TensorConfig& t : outputs) {
    if (t.name == n) return &t;
  }
  return nullptr;
}

absl::StatusOr<ModelConfig> ParseModelConfig(std::string_view yaml_text,
                                             std::string_view model_name, std::string_view file,
                                             int default_instances, int default_queue_limit) {
  // The name comes from the folder; a config is never made for a name the rule refuses.
  if (absl::Status name = CheckModelName(model_name); !name.ok()) {
    return absl::InvalidArgumentError(StrCat(file, ": ", MessageOf(name)));
  }
  try {
    const YAML::Node root = YAML::Load(std::string(yaml_text));
    return ParseOrThrow(root, model_name, default_instances, default_queue_limit);
  } catch (const ConfigError& e) {
    return absl::InvalidArgumentError(StrCat(file, ": ", e.field, ": ", e.message));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(StrCat(file, ": invalid YAML: ", e.what()));
  }
}

bool ShapeMatches(std::span<const int64_t> dims, std::span<const int64_t> shape) {
  if (dims.size() != shape.size()) return false;
  for (size_t i = 0; i < dims.size(); ++i) {
    if (dims[i] != -1 && dims[i] != shape[i]) return false;
  }
  return true;
}

const TensorConfig* RawBodyInput(const ModelConfig& config) {
  if (config.inputs.size() == 1) return &config.inputs[0];
  const TensorConfig* found = nullptr;
  for (const TensorConfig& t : config.inputs) {
    if (t.type != DataType::kBytes) continue;
    if (found != nullptr) return nullptr;
    found = &t;
  }
  return found;
}

}  // namespace hivemesh
