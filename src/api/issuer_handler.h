// What an issuer node (docs/identity.md) offers its operators over REST: join tokens, and
// revocations of node keys. Every call is an admin call (admin_access.h):
//
//   POST   /v1/mesh/tokens       {"role": "node", "ttl": "24h", "uses": 0}  -> 201
//          {"token": "HM1-...", "id", "role", "expires" (unix s), "uses"}
//          With "role": "client", "name" and "models": a bearer token for that client
//          (identity/client_token.h), kept nowhere -> 201 {"token": "HMC1...", "role", "name",
//          "models", "expires"}
//   GET    /v1/mesh/tokens       -> {"tokens": [{"id", "role", "created", "expires", "uses",
//                                    "used", "revoked", "created_by"}]}  (never a secret)
//   DELETE /v1/mesh/tokens/<id>  -> {} or 404
//   POST   /v1/mesh/revocations  {"name": "cam-1"}  -> 201 {"name", "key"}: the key the member's
//          name is bound to in gossip is refused renewal and joins from then on (404 for a name
//          no member has). {"name": "cam-app", "tokens": true} -> 201 {"name", "client",
//          "tokens_issued_before" (unix s)}: client cam-app's bearer tokens issued so far are
//          refused on every node (identity/client_token.h)
//   GET    /v1/mesh/revocations  -> {"revocations": [{"name", "key", "when"}]}
//   POST   /v1/mesh/client-certificates  {"name", "role": "client"|"operator", "public_key"
//          (hex), "ttl": "30d"} -> 201 {"name", "role", "spiffe_id", "expires", "certificate"
//          (PEM: the certificate, then its issuer's), "roots" (PEM)}: a client certificate
//          (identity/certs.h) for a key the client made and keeps
//   POST   /v1/mesh/ca/rotate  -> 200 {"root": "<digest of the new root>"}: a root rotation
//          (identity/mesh_files.h), at the node holding the root key
//   POST   /v1/mesh/ca/export-key  {"remove": true} -> 200 {"key": PEM, "removed"}: the root
//          key, dropped from the node with "remove" (the root CA offline). Only to a caller on
//          the node itself (loopback) or presenting an operator certificate, whatever
//          admin_access allows: a private key never crosses the network in the clear
//   PUT    /v1/mesh/ca/key  (body: the PEM) -> 200 {}: the root key back, if it is the mesh's
//   GET    /v1/mesh/gossip-keys  members, over mutual TLS: the gossip keys this node holds
//          (EncodeGossipKeys); admins: {"version", "keys": <how many>, "step"}, never a key.
//          Served by every node, issuer or not.
//   POST   /v1/mesh/gossip-keys/rotate  -> 200 {"version", "step"}: a gossip key rotation
//          (identity/mesh_files.h), at the issuer that created the mesh
//   GET    /v1/mesh/issuers  members and admins: every issuer certificate of the mesh this node
//          knows (PEM). Served by every node.
//   POST   /v1/mesh/issuer/tokens  (body: the tokens file's lines, identity/issuer_service.h)
//          -> 200 {}: another issuer's join tokens, taken only from a member that holds an
//          issuer certificate of the mesh, over mutual TLS
//
// POST /v1/mesh/tokens takes "role": "issuer" too (where the root key is): the node that joins
// with that token gets issuer rights.
//
// A node without issuer rights answers 409, saying so.
//
// Thread safety: Handle may be called from any thread.
#pragma once

#include <memory>

#include "api/admin_access.h"
#include "base/rejections.h"
#include "identity/issuer.h"
#include "transport/http_server.h"

namespace hivemesh {
namespace identity {
class IssuerService;
struct MeshCredentials;
}  // namespace identity

// The mesh's gossip keys as a member hands them to another: version, keys (base64, the primary
// first) and the issuer's signature over both (identity::GossipKeysMessage).
struct SignedGossipKeys {
  uint64_t version = 0;
  std::vector<std::string> keys;
  std::string signature;  // raw bytes
};
std::string EncodeGossipKeys(const SignedGossipKeys& keys);
// Bounded: at most 8 keys of at most 64 characters. Errors say what is wrong.
absl::StatusOr<SignedGossipKeys> DecodeGossipKeys(std::string_view body);

class IssuerHandler {
 public:
  // `issuer` null: the node holds no issuer rights. `key_of`: the key a name is bound to.
  // `on_revoked(name, key)` runs after a member's key is revoked (the node closes its
  // connections and drops it from the membership).
  IssuerHandler(
      std::shared_ptr<identity::IssuerService> issuer, AdminAccess admin,
      std::shared_ptr<Rejections> rejections, identity::Issuer::KeyOf key_of,
      std::function<void(const std::string& name, const std::string& key)> on_revoked = nullptr);
  // POST /v1/mesh/ca/rotate calls `rotate` (the agent's root rotation: the new root's digest,
  // or why not). Without it, the call answers 409. REQUIRES: called before the handler serves.
  void SetRootRotation(std::function<absl::StatusOr<std::string>()> rotate) {
    rotate_ = std::move(rotate);
  }
  // POST /v1/mesh/ca/export-key calls `export_key(remove)`, PUT /v1/mesh/ca/key
  // `import_key(pem)` (the agent's). Without them, both answer 409. REQUIRES: called before the
  // handler serves.
  void SetRootKey(std::function<absl::StatusOr<std::string>(bool remove)> export_key,
                  std::function<absl::Status(std::string_view pem)> import_key) {
    export_key_ = std::move(export_key);
    import_key_ = std::move(import_key);
  }
  // GET /v1/mesh/gossip-keys answers from `current` (the node's credentials); POST
  // /v1/mesh/gossip-keys/rotate calls `rotate` (the agent's: the version in force, or why not).
  // Without them, both answer 409. REQUIRES: called before the handler serves.
  void SetGossipKeys(std::function<std::shared_ptr<const identity::MeshCredentials>()> current,
                     std::function<absl::StatusOr<uint64_t>()> rotate) {
    current_ = std::move(current);
    rotate_keys_ = std::move(rotate);
  }
  // More than one issuer (docs/identity.md): POST /v1/mesh/issuer/tokens takes tokens only from
  // a member `is_issuer` names; `on_token` runs after a token is made here (the agent hands the
  // list to the other issuers). REQUIRES: called before the handler serves.
  void SetIssuers(std::function<bool(std::string_view member)> is_issuer,
                  std::function<void()> on_token) {
    is_issuer_ = std::move(is_issuer);
    on_token_ = std::move(on_token);
  }
  // True if the request was for /v1/mesh/tokens or /v1/mesh/revocations (and was answered).
  bool Handle(const HttpRequest& request, HttpResponder& respond) const;

 private:
  std::shared_ptr<identity::IssuerService> issuer_;
  AdminAccess admin_;
  std::shared_ptr<Rejections> rejections_;
  identity::Issuer::KeyOf key_of_;
  std::function<void(const std::string& name, const std::string& key)> on_revoked_;

  // OK if the caller is an admin (the refusal is counted).
  absl::Status AdminAllowed(const HttpRequest& request, std::string_view path) const;
  // OK if the caller is an admin and this node an issuer.
  absl::Status Allowed(const HttpRequest& request, std::string_view path) const;
  void Revocations(const HttpRequest& request, HttpResponder& respond) const;
  void RevokedKeys(const HttpRequest& request, HttpResponder& respond) const;
  void ClientCertificate(const HttpRequest& request, HttpResponder& respond) const;
  void RotateRoot(const HttpRequest& request, HttpResponder& respond) const;
  void GossipKeys(const HttpRequest& request, HttpResponder& respond) const;
  void RotateGossipKeys(const HttpRequest& request, HttpResponder& respond) const;
  void ExportRootKey(const HttpRequest& request, HttpResponder& respond) const;
  void ImportRootKey(const HttpRequest& request, HttpResponder& respond) const;
  void Issuers(const HttpRequest& request, HttpResponder& respond) const;
  void LearnTokens(const HttpRequest& request, HttpResponder& respond) const;
  std::function<bool(std::string_view member)> is_issuer_;
  std::function<void()> on_token_;
  std::function<absl::StatusOr<std::string>(bool remove)> export_key_;
  std::function<absl::Status(std::string_view pem)> import_key_;
  std::function<absl::StatusOr<std::string>()> rotate_;
  std::function<std::shared_ptr<const identity::MeshCredentials>()> current_;
  std::function<absl::StatusOr<uint64_t>()> rotate_keys_;
};

}  // namespace hivemesh
