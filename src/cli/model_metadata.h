// A model's KServe v2 metadata (GET /v2/models/<name>), as the CLI reads it. Pure.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace hivemesh::cli {

struct TensorMetadata {
  std::string name;
  std::string datatype;        // wire name: "FP32", "BYTES", ...
  std::vector<int64_t> shape;  // -1: variable dimension
  bool optional = false;
};

struct ModelMetadata {
  std::string name;
  std::vector<std::string> versions;
  std::string platform;
  std::vector<TensorMetadata> inputs;
  std::vector<TensorMetadata> outputs;
};

// INTERNAL if `json` is not model metadata (the node's answer cannot be read).
absl::StatusOr<ModelMetadata> ParseModelMetadata(std::string_view json);

// "/v2/models/<model>" or "/v2/models/<model>/versions/<version>", then `suffix`
// ("", "/infer", ...). Model names are sent as given (the node's names are URL-safe).
std::string ModelPath(std::string_view model, std::string_view version,
                      std::string_view suffix = "");

}  // namespace hivemesh::cli
