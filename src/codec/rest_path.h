// The REST paths that name a model, parsed. Pure (no HTTP), so that the fuzzer reaches them.
//
//   /v2/models/<m>[/versions/<v>][/ready | /infer | /stats]
//   /v2/repository/models/<m>/load | /v2/repository/models/<m>/unload
//
// A path is matched as it arrives, without percent-decoding: "%2e%2e" is the model name
// "%2e%2e", which the model name rule (codec/model_name.h) refuses, so no spelling of a path
// names a model the rule does not allow.
//
// Both parsers answer
//   NOT_FOUND         not one of the paths above (the caller answers "no such endpoint")
//   INVALID_ARGUMENT  one of them, with a model or version name that breaks the rule (the message
//                     names the rule and shows the name bounded)
// The views returned point into `rest`.
#pragma once

#include <string_view>

#include "absl/status/statusor.h"

namespace hivemesh {

enum class ModelAction { kMetadata, kReady, kInfer, kStats };

struct ModelPath {
  std::string_view model;
  std::string_view version;  // empty: the model's default version
  ModelAction action = ModelAction::kMetadata;
};

// `rest`: the path after "/v2/models/", without the query.
absl::StatusOr<ModelPath> ParseModelPath(std::string_view rest);

enum class RepositoryAction { kLoad, kUnload };
// "load" | "unload".
std::string_view RepositoryActionName(RepositoryAction action);

struct RepositoryPath {
  std::string_view model;
  RepositoryAction action = RepositoryAction::kLoad;
};

// `rest`: the path after "/v2/repository/models/", without the query.
absl::StatusOr<RepositoryPath> ParseRepositoryPath(std::string_view rest);

}  // namespace hivemesh
