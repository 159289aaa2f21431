#include "codec/repository_codec.h"

#include <simdjson.h>

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

}  // namespace hivemesh
