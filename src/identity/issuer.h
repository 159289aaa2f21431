// The issuer: what a node holding issuer rights decides when another node asks for a
// certificate (docs/identity.md). Join tokens, joins and renewals, as a pure kernel: the time is
// passed in, and what the mesh knows (which key a name is bound to) is asked through a function.
// The transport (TLS on the gossip port) hands it requests; it never does I/O.
//
// - A token is created here (CreateToken) or learnt from another issuer (AddToken). Only the
//   SHA-256 of its secret is kept. It has a role, an expiry and a number of uses (0: unlimited),
//   and may be revoked.
// - Join: a valid token, a name and labels that pass CheckCertificateText, a name not bound to
//   another key, a key not revoked: a node certificate with the token's role, and one use less.
// - Join with an issuer token, at the node holding the root key: the same, and an issuer
//   certificate for the joining node's issuer key, signed by the root.
// - Renew: the node's current certificate, which must chain to a trusted root (also after it
//   expired: a node that was offline past its certificate's life), whose key the transport saw
//   proved (the TLS handshake), and neither the key nor the name revoked: a new certificate with
//   the same name, role and labels. No token and no operator are needed.
//
// Thread safety: none; the caller serializes (one Issuer per node, behind the node's lock).
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "identity/certs.h"

namespace hivemesh::identity {

struct TokenRecord {
  std::string id;
  Role role = Role::kNode;
  std::string secret_sha256;  // hex
  WallTime created;
  WallTime expires;
  int uses = 0;  // 0: unlimited
  int used = 0;
  bool revoked = false;
  std::string created_by;  // the node that made it
  // An issuer token (hivemesh token create --role issuer): the node that joins with it gets issuer
  // rights too (an issuer certificate for a key of its own), from the node holding the root key.
  bool issuer = false;
};

struct JoinRequest {
  std::string token_id;
  std::string token_secret;
  std::string name;
  std::map<std::string, std::string> labels;
  std::string public_key;  // raw Ed25519: the key the certificate binds
  // Raw Ed25519: the key an issuer certificate binds if the token is an issuer token (the joining
  // node made it and keeps it; it sends one with every join). Empty: none.
  std::string issuer_key;
};

// What a joining or renewing node receives.
struct Issued {
  Certificate cert;
  std::vector<Certificate> chain;  // the issuer's certificate
  std::vector<Certificate> roots;  // the trust bundle
  // Joins with an issuer token: the root's certificate of JoinRequest::issuer_key.
  std::optional<Certificate> issuer_cert;
};

inline constexpr seconds kMaxOffline{365 * 86400};

// What an issuer signs to revoke `public_key` (raw Ed25519), bound to the member `name`.
std::string RevocationMessage(std::string_view public_key, std::string_view name);
// True if `signature` is `issuer`'s (an issuer certificate's key) over that message.
bool VerifyRevocation(const Certificate& issuer, std::string_view public_key, std::string_view name,
                      std::string_view signature);

// What an issuer signs to put a policy document (api/authorization_policy.h) in force across the
// mesh: its version and text.
std::string PolicyMessage(uint64_t version, std::string_view document);
bool VerifyPolicy(const Certificate& issuer, uint64_t version, std::string_view document,
                  std::string_view signature);

// What an issuer signs to hand out the mesh's gossip keys (base64, the primary first) as their
// version `version` (identity/mesh_files.h): members relay them to one another.
std::string GossipKeysMessage(uint64_t version, const std::vector<std::string>& keys);
bool VerifyGossipKeys(const Certificate& issuer, uint64_t version,
                      const std::vector<std::string>& keys, std::string_view signature);

// Longest life of a client certificate.
inline constexpr seconds kMaxClientValidity{365 * 86400};

class Issuer {
 public:
  // The key a name is bound to in the mesh now (membership), or nullopt if the name is free.
  using KeyOf = std::function<std::optional<std::string>(std::string_view name)>;

  Issuer(Certificate issuer, NodeKey issuer_key, std::vector<Certificate> roots,
         std::string self_name, seconds node_validity = kNodeValidity);

  // A new token. ttl > 0; uses >= 0 (0: unlimited). `issuer`: an issuer token (TokenRecord).
  JoinToken CreateToken(Role role, seconds ttl, int uses, WallTime now, bool issuer = false);
  // A token another issuer made (spread by gossip): taken if unknown; for a known id, `used`
  // becomes the larger count and a revocation sticks.
  void AddToken(const TokenRecord& record);
  absl::Status RevokeToken(std::string_view id);
  // Every token not yet expired at `now`, revoked and used-up ones included (they say so).
  std::vector<TokenRecord> Tokens(WallTime now) const;
  // Forgets tokens that expired more than a day before `now`.
  void ForgetExpired(WallTime now);

  absl::StatusOr<Issued> Join(const JoinRequest& request, WallTime now, const KeyOf& key_of);
  // `chain`: the intermediates the node presented with `current` (its issuer's certificate).
  // A certificate that expired more than kMaxOffline ago is not renewed.
  absl::StatusOr<Issued> Renew(const Certificate& current, const std::vector<Certificate>& chain,
                               std::string_view proved_key, WallTime now);

  // A client certificate (certs.h) for `name` with `role` (client or operator) binding
  // `public_key`, valid for `validity` (at most kMaxClientValidity). Not renewed: a client gets a
  // new one. Errors name the field; a revoked key is refused.
  absl::StatusOr<Issued> IssueClient(std::string_view name, Role role, std::string_view public_key,
                                     seconds validity, WallTime now);

  // A bearer token (client_token.h) for client `name`, for `models`, valid for `validity`.
  // INVALID_ARGUMENT naming the field.
  absl::StatusOr<std::string> IssueClientToken(std::string_view name,
                                               const std::vector<std::string>& models,
                                               seconds validity, WallTime now) const;

  // Revokes a node's key, for good: no renewal and no join with it (a name is bound to a node
  // only through its key, so this revokes the node).
  void RevokeKey(std::string_view public_key);
  bool IsRevoked(std::string_view public_key) const;
  // The issuer's signature of RevocationMessage(public_key, name): how other nodes know a
  // revocation they fetch came from an issuer of the mesh.
  std::string SignRevocation(std::string_view public_key, std::string_view name) const;
  std::string SignPolicy(uint64_t version, std::string_view document) const;
  const Certificate& certificate() const { return issuer_; }
  // A root rotation (mesh_files.h): the issuer's certificate and the trust bundle from now on
  // (the key stays). New tokens name the first root.
  void UseCertificates(Certificate issuer, std::vector<Certificate> roots);

  // The root key (mesh_files.h), when this node holds it: only then does a join with an issuer
  // token get issuer rights here. nullopt: exported, or a granted issuer.
  void UseRootKey(std::optional<NodeKey> root_key) { root_key_ = std::move(root_key); }
  bool holds_root_key() const { return root_key_.has_value(); }

  const std::string& ca_digest() const { return ca_digest_; }
  const std::vector<Certificate>& roots() const { return roots_; }

 private:
  absl::StatusOr<Issued> Issue(const NodeIdentity& who, WallTime now);

  Certificate issuer_;
  NodeKey issuer_key_;
  std::optional<NodeKey> root_key_;
  std::vector<Certificate> roots_;
  std::string ca_digest_;  // of roots_[0], the root new tokens name
  std::string self_name_;
  seconds node_validity_;
  std::map<std::string, TokenRecord, std::less<>> tokens_;  // by id
  std::set<std::string, std::less<>> revoked_keys_;
};

}  // namespace hivemesh::identity
