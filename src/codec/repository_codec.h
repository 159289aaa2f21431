// Bodies of the admin requests, decoded: the model repository extension's (KServe v2 / Triton)
// and the mesh's join tokens (docs/identity.md). Pure.
//
//   POST /v2/repository/index                      {"ready": true}        (body optional)
//   POST /v2/repository/models/<m>/load | unload   {"parameters": {...}}  (body optional)
//   POST /v1/mesh/tokens                           {"role": "node", "ttl": "24h", "uses": 0}
//                                                  (body and each field optional)
//   POST /v1/mesh/revocations                      {"name": "cam-1"}
#pragma once

#include <cstdint>
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

struct TokenCreateRequest {
  std::string role = "node";
  int64_t ttl_seconds = 86400;
  int64_t uses = 0;  // 0: unlimited; at most 1000000
  // Role client (a bearer token, identity/client_token.h): the client's name and its models.
  std::string name;
  std::vector<std::string> models;
};
// Fields: role (a string), ttl (a duration: "90s", "30m", "24h", "7d", or a number of seconds;
// at most 365 days), uses (an integer, 0 to 1000000), name (a string), models (an array of
// strings). An unknown field is refused, by name.
absl::StatusOr<TokenCreateRequest> DecodeTokenCreateRequest(std::string_view body);
// POST /v1/mesh/client-certificates: {"name": "cam-app", "role": "client" | "operator",
// "public_key": "<64 hex: raw Ed25519>", "ttl": "30d" (or seconds; default 30 days)}. Name and
// key are required; an unknown field is refused, by name.
struct ClientCertificateRequest {
  std::string name;
  std::string role = "client";
  std::string public_key;  // raw bytes
  int64_t ttl_seconds = 30 * 86400;
};
absl::StatusOr<ClientCertificateRequest> DecodeClientCertificateRequest(std::string_view body);
// POST /v1/mesh/revocations: {"name": "cam-7"} revokes the key a member's name is bound to;
// {"name": "ops", "key": "<64 hex>"} revokes that key (a client certificate's, which no member
// name binds). An unknown field is refused, by name.
struct RevocationRequest {
  std::string name;
  std::string key;      // raw bytes; empty: the key the member's name is bound to
  bool tokens = false;  // "tokens": true: client `name`'s bearer tokens issued so far
};
absl::StatusOr<RevocationRequest> DecodeRevocationRequest(std::string_view body);
// "90s", "30m", "24h", "7d" or plain seconds ("3600"): the seconds, or INVALID_ARGUMENT naming
// `field`. Must be positive.
absl::StatusOr<int64_t> ParseDurationSeconds(std::string_view text, std::string_view field);

}  // namespace hivemesh
