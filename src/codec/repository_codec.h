// Bodies of the model repository extension's requests (KServe v2 / Triton), decoded. Pure.
//
//   POST /v2/repository/index                      {"ready": true}        (body optional)
//   POST /v2/repository/models/<m>/load | unload   {"parameters": {...}}  (body optional)
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace hivemesh {

struct RepositoryIndexRequest {
  bool ready_only = false;  // list only the versions that serve
};
// An empty body is the default request. INVALID_ARGUMENT names what is wrong.
absl::StatusOr<RepositoryIndexRequest> DecodeRepositoryIndexRequest(std::string_view body);

// The names of the parameters a load or unload request carries (none for an empty body).
absl::StatusOr<std::vector<std::string>> DecodeRepositoryControlParameters(std::string_view body);

}  // namespace hivemesh
