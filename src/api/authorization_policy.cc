#include "api/authorization_policy.h"

#include <set>

#include "base/status_macros.h"
#include "base/strings.h"
#include "yaml-cpp/yaml.h"

namespace hivemesh {
namespace {

constexpr std::string_view kClientPrefix = "client:";
constexpr std::string_view kOperatorPrefix = "operator:";

// Exact, or a prefix when the pattern ends with '*' ("*" matches everything).
bool Matches(std::string_view pattern, std::string_view text) {
  if (!pattern.empty() && pattern.back() == '*') {
    return text.starts_with(pattern.substr(0, pattern.size() - 1));
  }
  return pattern == text;
}

bool FromMatches(std::string_view from, const Caller& caller) {
  if (from == "anyone") return true;
  if (from.starts_with(kClientPrefix)) {
    return caller.kind == Caller::Kind::kClient &&
           Matches(from.substr(kClientPrefix.size()), caller.name);
  }
  if (from.starts_with(kOperatorPrefix)) {
    return caller.kind == Caller::Kind::kOperator &&
           Matches(from.substr(kOperatorPrefix.size()), caller.name);
  }
  return false;
}

// A pattern: 1 to 128 bytes of [A-Za-z0-9._-], optionally ending with one '*'.
absl::Status CheckPattern(std::string_view pattern, std::string_view where) {
  std::string_view body = pattern;
  if (!body.empty() && body.back() == '*') body.remove_suffix(1);
  bool ok = !pattern.empty() && pattern.size() <= 128;
  for (const char c : body) {
    ok = ok && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '.' || c == '_' || c == '-');
  }
  if (!ok) {
    return absl::InvalidArgumentError(StrCat(where, ": '", pattern,
                                             "' is not a name or a name followed by '*' "
                                             "(letters, digits, '.', '_', '-'; at most 128)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> StringList(const YAML::Node& node,
                                                    std::string_view where) {
  std::vector<std::string> out;
  if (node.IsScalar()) {
    out.push_back(node.as<std::string>());
  } else if (node.IsSequence()) {
    for (const YAML::Node& item : node) {
      if (!item.IsScalar()) {
        return absl::InvalidArgumentError(StrCat(where, " holds something that is not a string"));
      }
      out.push_back(item.as<std::string>());
    }
  } else {
    return absl::InvalidArgumentError(StrCat(where, " is not a list of strings"));
  }
  if (out.empty()) return absl::InvalidArgumentError(StrCat(where, " is empty"));
  return out;
}

absl::StatusOr<Policy::Rule> ParseRule(const YAML::Node& node, size_t index,
                                       std::set<std::string>& names) {
  std::string where = StrCat("rule ", index + 1);
  if (!node.IsMap()) return absl::InvalidArgumentError(StrCat(where, " is not a mapping"));
  Policy::Rule rule;
  if (!node["name"] || !node["name"].IsScalar()) {
    return absl::InvalidArgumentError(StrCat(where, " has no name"));
  }
  rule.name = node["name"].as<std::string>();
  HM_RETURN_IF_ERROR(CheckPattern(rule.name, StrCat(where, " name")));
  if (rule.name.back() == '*') {
    return absl::InvalidArgumentError(StrCat(where, " name '", rule.name, "' ends with '*'"));
  }
  where = StrCat("rule ", index + 1, " ('", rule.name, "')");
  if (!names.insert(rule.name).second) {
    return absl::InvalidArgumentError(StrCat(where, ": another rule has that name"));
  }
  for (const auto& field : node) {
    const std::string key = field.first.as<std::string>();
    if (key != "name" && key != "action" && key != "from" && key != "models" && key != "verbs") {
      return absl::InvalidArgumentError(
          StrCat(where, ": unknown field '", key, "' (name, action, from, models, verbs)"));
    }
  }
  if (const YAML::Node action = node["action"]) {
    const std::string a = action.IsScalar() ? action.as<std::string>() : "";
    if (a != "allow" && a != "deny") {
      return absl::InvalidArgumentError(StrCat(where, ": action is 'allow' or 'deny'"));
    }
    rule.deny = a == "deny";
  }
  if (!node["from"]) return absl::InvalidArgumentError(StrCat(where, " has no 'from'"));
  HM_ASSIGN_OR_RETURN(rule.from, StringList(node["from"], StrCat(where, " from")));
  for (const std::string& from : rule.from) {
    std::string_view name;
    if (from.starts_with(kClientPrefix)) {
      name = std::string_view(from).substr(kClientPrefix.size());
    } else if (from.starts_with(kOperatorPrefix)) {
      name = std::string_view(from).substr(kOperatorPrefix.size());
    } else if (from != "anyone") {
      return absl::InvalidArgumentError(
          StrCat(where, " from: '", from, "' is not anyone, client:<name> or operator:<name>"));
    }
    if (from != "anyone") HM_RETURN_IF_ERROR(CheckPattern(name, StrCat(where, " from")));
  }
  if (!node["models"]) return absl::InvalidArgumentError(StrCat(where, " has no 'models'"));
  HM_ASSIGN_OR_RETURN(rule.models, StringList(node["models"], StrCat(where, " models")));
  for (const std::string& m : rule.models) {
    HM_RETURN_IF_ERROR(CheckPattern(m, StrCat(where, " models")));
  }
  if (const YAML::Node verbs = node["verbs"]) {
    HM_ASSIGN_OR_RETURN(std::vector<std::string> list, StringList(verbs, StrCat(where, " verbs")));
    rule.infer = rule.read = false;
    for (const std::string& v : list) {
      if (v == "infer") {
        rule.infer = true;
      } else if (v == "read") {
        rule.read = true;
      } else {
        return absl::InvalidArgumentError(StrCat(where, " verbs: '", v, "' is not infer or read"));
      }
    }
  }
  return rule;
}

}  // namespace

Caller CallerOfTlsPeer(std::string_view tls_peer) {
  if (tls_peer.empty()) return Caller{};
  if (tls_peer.starts_with(kClientPrefix)) {
    return Caller{Caller::Kind::kClient, tls_peer.substr(kClientPrefix.size())};
  }
  if (tls_peer.starts_with(kOperatorPrefix)) {
    return Caller{Caller::Kind::kOperator, tls_peer.substr(kOperatorPrefix.size())};
  }
  return Caller{Caller::Kind::kMember, tls_peer};
}

std::string TlsPeerName(Caller::Kind kind, std::string_view name) {
  switch (kind) {
    case Caller::Kind::kClient:
      return StrCat(kClientPrefix, name);
    case Caller::Kind::kOperator:
      return StrCat(kOperatorPrefix, name);
    default:
      return std::string(name);
  }
}

std::string DescribeCaller(const Caller& caller) {
  switch (caller.kind) {
    case Caller::Kind::kMember:
      return StrCat("member '", caller.name, "'");
    case Caller::Kind::kClient:
      return StrCat("client '", caller.name, "'");
    case Caller::Kind::kOperator:
      return StrCat("operator '", caller.name, "'");
    default:
      return "anyone";
  }
}

std::string_view PolicyVerbName(PolicyVerb verb) {
  return verb == PolicyVerb::kInfer ? "infer" : "read";
}

absl::StatusOr<Policy> Policy::Parse(std::string_view yaml, uint64_t version) {
  if (yaml.size() > kMaxPolicyBytes) {
    return absl::InvalidArgumentError(StrCat("the policy takes ", yaml.size(),
                                             " bytes, more than the limit of ", kMaxPolicyBytes));
  }
  Policy policy;
  policy.version_ = version;
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(StrCat("the policy is not YAML: ", e.what()));
  }
  if (root.IsNull()) return policy;  // the empty document: no policy
  try {
    if (!root.IsMap()) return absl::InvalidArgumentError("the policy is not a mapping");
    for (const auto& field : root) {
      const std::string key = field.first.as<std::string>();
      if (key != "rules" && key != "kind") {
        return absl::InvalidArgumentError(
            StrCat("unknown field '", key, "' in the policy (kind, rules)"));
      }
    }
    if (const YAML::Node kind = root["kind"];
        kind && (!kind.IsScalar() || kind.as<std::string>() != "AuthorizationPolicy")) {
      return absl::InvalidArgumentError("the policy's kind, if given, is AuthorizationPolicy");
    }
    const YAML::Node rules = root["rules"];
    if (!rules) return absl::InvalidArgumentError("the policy has no 'rules' list");
    if (!rules.IsSequence() && !rules.IsNull()) {
      return absl::InvalidArgumentError("the policy's 'rules' is not a list");
    }
    if (rules.size() > kMaxPolicyRules) {
      return absl::InvalidArgumentError(StrCat("the policy has ", rules.size(),
                                               " rules, more than the limit of ", kMaxPolicyRules));
    }
    std::set<std::string> names;
    for (size_t i = 0; i < rules.size(); ++i) {
      HM_ASSIGN_OR_RETURN(Rule rule, ParseRule(rules[i], i, names));
      policy.rules_.push_back(std::move(rule));
    }
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(StrCat("the policy cannot be read: ", e.what()));
  }
  policy.present_ = true;
  return policy;
}

absl::Status Policy::Check(const Caller& caller, std::string_view model, PolicyVerb verb) const {
  if (!present_ || caller.kind == Caller::Kind::kMember || caller.kind == Caller::Kind::kOperator) {
    return absl::OkStatus();
  }
  auto applies = [&](const Rule& rule) {
    if (verb == PolicyVerb::kInfer ? !rule.infer : !rule.read) return false;
    bool from = false, to = false;
    for (const std::string& f : rule.from) from = from || FromMatches(f, caller);
    for (const std::string& m : rule.models) to = to || Matches(m, model);
    return from && to;
  };
  for (const Rule& rule : rules_) {
    if (rule.deny && applies(rule)) {
      return absl::PermissionDeniedError(StrCat("denied by rule '", rule.name,
                                                "' of the mesh policy (version ", version_,
                                                "): ", DescribeCaller(caller), " may not ",
                                                PolicyVerbName(verb), " model '", model, "'"));
    }
  }
  for (const Rule& rule : rules_) {
    if (!rule.deny && applies(rule)) return absl::OkStatus();
  }
  return absl::PermissionDeniedError(StrCat(
      "no rule of the mesh policy (version ", version_, ") allows ", DescribeCaller(caller), " to ",
      PolicyVerbName(verb), " model '", model, "' (what a policy does not allow is denied)"));
}

}  // namespace hivemesh
