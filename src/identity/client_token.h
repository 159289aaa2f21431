// Bearer tokens for the mesh's clients (docs/security.md, "Authorization"): for a program that
// cannot hold a client certificate (a script, a browser, a device behind a TLS-terminating
// proxy), an issuer signs a token that names the client and the models it may call, and any node
// checks it with the issuer certificate it already holds. No node keeps state for it: it is
// valid until it expires (at most kMaxClientTokenLife), or until the issuer's key is rotated.
//
//   HMC1.<payload>.<signature>     both base64url without padding
//   payload: {"mesh":"<id>","sub":"<name>","models":["a","b*"],"iat":<unix s>,"exp":<unix s>}
//   signature: the issuer's Ed25519 signature over "hivemesh client token v1\0" + payload
//
// A client sends it as `Authorization: Bearer HMC1...` (REST) or the gRPC metadata
// "authorization" with the same value. The policy sees the caller as client:<sub>; the token's
// model list narrows what it may call further, whatever the policy allows.
//
// Pure: the time is passed in. Thread safety: free functions on values.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "identity/certs.h"
#include "identity/node_key.h"

namespace hivemesh::identity {

inline constexpr std::string_view kClientTokenPrefix = "HMC1.";
inline constexpr seconds kMaxClientTokenLife{365 * 86400};
// Longest token accepted: a payload with a long model list, and the signature, in base64url.
inline constexpr size_t kMaxClientTokenBytes = 4096;

struct ClientToken {
  std::string mesh_id;
  std::string subject;              // a client name (CheckCertificateText)
  std::vector<std::string> models;  // names, a trailing '*' matches a prefix; "*": every model
  int64_t issued = 0;               // unix s
  int64_t expires = 0;              // unix s

  // True if the token lets its holder call `model` (the policy still applies).
  bool Covers(std::string_view model) const;
};

// The token's text, signed with `issuer_key`. INVALID_ARGUMENT naming the field: a subject that
// is not a name, no models, a model pattern of the wrong characters, a life that is not
// positive or longer than kMaxClientTokenLife, or a payload over the size limit.
absl::StatusOr<std::string> SignClientToken(const ClientToken& token, const NodeKey& issuer_key);

// What a token says, if one of `issuers` (CA certificates of the mesh `mesh_id`) signed it and it
// is valid at `now_unix`. PERMISSION_DENIED saying why not: not a token, malformed, signed by no
// issuer, another mesh's, expired.
absl::StatusOr<ClientToken> VerifyClientToken(std::string_view text,
                                              const std::vector<Certificate>& issuers,
                                              std::string_view mesh_id, int64_t now_unix);

}  // namespace hivemesh::identity
