// Bearer tokens for the mesh's clients (docs/security.md, "Authorization"): for a program that
// cannot hold a client certificate (a script, a browser, a device behind a TLS-terminating
// proxy), an issuer signs a token that names the client and the models it may call, and any node
// checks it with the issuer certificate it already holds. No node keeps state for it: it is
// valid until it expires (at most kMaxClientTokenLife), until the issuer's key is rotated, or
// until its client's tokens are revoked (below).
//
//   HMC1.<payload>.<signature>     both base64url without padding
//   payload: {"mesh":"<id>","sub":"<name>","models":["a","b*"],"iat":<unix s>,"exp":<unix s>}
//   signature: the issuer's Ed25519 signature over "hivemesh client token v1\0" + payload
//
// A client's tokens are revoked by name (`hivemesh token revoke --client NAME`): every token of
// that client issued at or before the second of the revocation is refused from then on, on every
// node. The issuer records it as it revokes a key, under a name and a pseudo key of its own
// (below), so that it is signed, kept and spread by the same path.
//
// A client sends it as `Authorization: Bearer HMC1...` (REST) or the gRPC metadata
// "authorization" with the same value. The policy sees the caller as client:<sub>; the token's
// model list narrows what it may call further, whatever the policy allows.
//
// Pure: the time is passed in. Thread safety: free functions on values.
#pragma once

#include <cstdint>
#include <optional>
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

// The revocation of `client`'s tokens issued at or before `before` (unix s): the name it is kept
// under ("tokens:<client>@<before>"), and the pseudo key revoked with it (the SHA-256 of a label
// and the name: 32 bytes that no node's key is).
std::string ClientTokensRevocationName(std::string_view client, int64_t before);
std::string ClientTokensKey(std::string_view revocation_name);
struct ClientTokensRevocation {
  std::string client;
  int64_t before = 0;
};
// What a revocation's name revokes, if it is a ClientTokensRevocationName (nullopt otherwise).
std::optional<ClientTokensRevocation> ParseClientTokensRevocation(std::string_view name);

}  // namespace hivemesh::identity
