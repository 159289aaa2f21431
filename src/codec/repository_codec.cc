#include "codec/repository_codec.h"

#include <simdjson.h>

#include <charconv>
#include <optional>

#include "base/hex.h"
#include "base/status_macros.h"
#include "base/strings.h"

namespace hivemesh {
namespace {

// The body as a JSON object, or why not. `empty` is set for a body of only whitespace.
absl::StatusOr<simdjson::dom::object> ObjectOf(simdjson::dom::parser& parser, std::string_view body,
                                               bool* empty) {
  *empty = body.find_first_not_of(" \t\r\n") == std::string_view::npos;
  if (*empty) return simdjson::dom::object();
  simdjson::dom::element doc;
  if (parser.parse(body.data(), body.size()).get(doc) != simdjson::SUCCESS) {
    return absl::InvalidArgumentError("the request body is not valid JSON");
  }
  simdjson::dom::object object;
  if (doc.get(object) != simdjson::SUCCESS) {
    return absl::InvalidArgumentError("the request body must be a JSON object");
  }
  return object;
}

}  // namespace

absl::StatusOr<RepositoryIndexRequest> DecodeRepositoryIndexRequest(std::string_view body) {
  simdjson::dom::parser parser;
  bool empty;
  absl::StatusOr<simdjson::dom::object> object = ObjectOf(parser, body, &empty);
  if (!object.ok()) return object.status();
  RepositoryIndexRequest out;
  if (empty) return out;
  for (auto [key, value] : *object) {
    if (key != "ready") continue;  // other fields (e.g. repository_name) do not apply
    if (value.get(out.ready_only) != simdjson::SUCCESS) {
      return absl::InvalidArgumentError("'ready' must be true or false");
    }
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> DecodeRepositoryControlParameters(std::string_view body) {
  simdjson::dom::parser parser;
  bool empty;
  absl::StatusOr<simdjson::dom::object> object = ObjectOf(parser, body, &empty);
  if (!object.ok()) return object.status();
  std::vector<std::string> names;
  if (empty) return names;
  for (auto [key, value] : *object) {
    if (key != "parameters") continue;
    simdjson::dom::object params;
    if (value.get(params) != simdjson::SUCCESS) {
      return absl::InvalidArgumentError("'parameters' must be a JSON object");
    }
    for (auto [name, _] : params) names.emplace_back(name);
  }
  return names;
}

absl::StatusOr<int64_t> ParseDurationSeconds(std::string_view text, std::string_view field) {
  int64_t unit = 1;
  std::string_view digits = text;
  if (!text.empty()) {
    switch (text.back()) {
      case 's':
        unit = 1;
        break;
      case 'm':
        unit = 60;
        break;
      case 'h':
        unit = 3600;
        break;
      case 'd':
        unit = 86400;
        break;
      default:
        unit = 0;
        break;
    }
    if (unit != 0) digits.remove_suffix(1);
    if (unit == 0) unit = 1;
  }
  int64_t n = 0;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
  if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size() || n <= 0 ||
      n > 400LL * 86400 / unit) {
    return absl::InvalidArgumentError(
        StrCat("'", field, "': '", text, "' is not a positive duration like 90s, 30m, 24h or 7d"));
  }
  return n * unit;
}

absl::StatusOr<RevocationRequest> DecodeRevocationRequest(std::string_view body) {
  simdjson::dom::parser parser;
  bool empty;
  absl::StatusOr<simdjson::dom::object> object = ObjectOf(parser, body, &empty);
  if (!object.ok()) return object.status();
  RevocationRequest out;
  for (auto [key, value] : *object) {
    std::string_view v;
    if (key == "tokens") {
      if (value.get(out.tokens) != simdjson::SUCCESS) {
        return absl::InvalidArgumentError("'tokens' must be true or false");
      }
      continue;
    }
    if (key != "name" && key != "key") {
      return absl::InvalidArgumentError(
          StrCat("unknown field '", key, "' (known: name, key, tokens)"));
    }
    if (value.get(v) != simdjson::SUCCESS || v.empty()) {
      return absl::InvalidArgumentError(key == "name" ? "'name' must be a member's or client's name"
                                                      : "'key' must be a public key in hex");
    }
    if (key == "name") {
      out.name = std::string(v);
    } else {
      std::optional<std::string> raw = HexDecode(v);
      if (!raw) return absl::InvalidArgumentError("'key' must be a public key in hex");
      out.key = std::move(*raw);
    }
  }
  if (out.name.empty()) {
    return absl::InvalidArgumentError("'name' is missing: which member or client to revoke");
  }
  if (out.tokens && !out.key.empty()) {
    return absl::InvalidArgumentError("'tokens' revokes a client's bearer tokens: give no 'key'");
  }
  return out;
}

absl::StatusOr<TokenCreateRequest> DecodeTokenCreateRequest(std::string_view body) {
  simdjson::dom::parser parser;
  bool empty;
  absl::StatusOr<simdjson::dom::object> object = ObjectOf(parser, body, &empty);
  if (!object.ok()) return object.status();
  TokenCreateRequest out;
  if (empty) return out;
  for (auto [key, value] : *object) {
    if (key == "role") {
      std::string_view role;
      if (value.get(role) != simdjson::SUCCESS) {
        return absl::InvalidArgumentError("'role' must be a string");
      }
      out.role = std::string(role);
    } else if (key == "ttl") {
      std::string_view text;
      int64_t n = 0;
      if (value.get(text) == simdjson::SUCCESS) {
        absl::StatusOr<int64_t> s = ParseDurationSeconds(text, "ttl");
        if (!s.ok()) return s.status();
        out.ttl_seconds = *s;
      } else if (value.get(n) == simdjson::SUCCESS && n > 0) {
        out.ttl_seconds = n;
      } else {
        return absl::InvalidArgumentError("'ttl' must be a duration (\"24h\") or seconds > 0");
      }
    } else if (key == "uses") {
      if (value.get(out.uses) != simdjson::SUCCESS || out.uses < 0 || out.uses > 1000000) {
        return absl::InvalidArgumentError(
            "'uses' must be an integer from 0 (unlimited) to 1000000");
      }
    } else if (key == "name") {
      std::string_view name;
      if (value.get(name) != simdjson::SUCCESS) {
        return absl::InvalidArgumentError("'name' must be a string");
      }
      out.name = std::string(name);
    } else if (key == "models") {
      simdjson::dom::array models;
      if (value.get(models) != simdjson::SUCCESS) {
        return absl::InvalidArgumentError("'models' must be an array of model names");
      }
      for (simdjson::dom::element m : models) {
        std::string_view name;
        if (m.get(name) != simdjson::SUCCESS || out.models.size() >= 64) {
          return absl::InvalidArgumentError("'models' must be an array of at most 64 names");
        }
        out.models.emplace_back(name);
      }
    } else {
      return absl::InvalidArgumentError(
          StrCat("unknown field '", key, "' (known: role, ttl, uses, name, models)"));
    }
  }
  if (out.ttl_seconds > 365LL * 86400) {
    return absl::InvalidArgumentError("'ttl' must be at most 365 days");
  }
  return out;
}

absl::StatusOr<ClientCertificateRequest> DecodeClientCertificateRequest(std::string_view body) {
  simdjson::dom::parser parser;
  bool empty;
  absl::StatusOr<simdjson::dom::object> object = ObjectOf(parser, body, &empty);
  if (!object.ok()) return object.status();
  ClientCertificateRequest out;
  bool have_key = false;
  for (auto [key, value] : *object) {
    std::string_view text;
    int64_t n = 0;
    if (key == "name" || key == "role" || key == "public_key") {
      if (value.get(text) != simdjson::SUCCESS) {
        return absl::InvalidArgumentError(StrCat("'", key, "' must be a string"));
      }
      if (key == "name") {
        out.name = std::string(text);
      } else if (key == "role") {
        out.role = std::string(text);
      } else {
        std::optional<std::string> raw = HexDecode(text);
        if (!raw) return absl::InvalidArgumentError("'public_key' must be hex");
        out.public_key = std::move(*raw);
        have_key = true;
      }
    } else if (key == "ttl") {
      if (value.get(text) == simdjson::SUCCESS) {
        HM_ASSIGN_OR_RETURN(out.ttl_seconds, ParseDurationSeconds(text, "ttl"));
      } else if (value.get(n) == simdjson::SUCCESS && n > 0) {
        out.ttl_seconds = n;
      } else {
        return absl::InvalidArgumentError("'ttl' must be a duration (\"30d\") or seconds > 0");
      }
    } else {
      return absl::InvalidArgumentError(
          StrCat("unknown field '", key, "' (known: name, role, public_key, ttl)"));
    }
  }
  if (out.name.empty()) return absl::InvalidArgumentError("'name' is required");
  if (!have_key) return absl::InvalidArgumentError("'public_key' is required");
  return out;
}

}  // namespace hivemesh
