// IssuerService: a node's issuer rights (issuer.h) behind a lock, with its join tokens kept in
// <state>/mesh/tokens so they survive restarts. One line per token, 0600:
//
//   v1 <id> <role> <sha-256 of the secret> <created unix s> <expires unix s> <uses> <used>
//      <revoked 0|1> <created by>
//
// The secret itself is never written: it is shown once, when the token is created. Revoked node
// keys are kept in <state>/mesh/revoked, one line each: v1 <key hex> <name> <unix s>.
//
// Thread safety: every method may be called from any thread.
#pragma once

#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "identity/issuer.h"
#include "identity/mesh_files.h"

namespace hivemesh::identity {

// Most tokens an issuer keeps at once (live, or expired less than a day ago).
inline constexpr size_t kMaxTokens = 1000;

class IssuerService {
 public:
  // The issuer of `mesh` (which must hold issuer rights: issuer_cert and issuer_key), with the
  // tokens in `state_dir`. Errors name the tokens file and its line.
  // Node certificates it issues live `node_validity`.
  static absl::StatusOr<std::unique_ptr<IssuerService>> Open(const std::string& state_dir,
                                                             const MeshCredentials& mesh,
                                                             std::string self_name,
                                                             seconds node_validity = kNodeValidity);

  // A new token, written to the tokens file before it is returned. RESOURCE_EXHAUSTED past
  // kMaxTokens; INVALID_ARGUMENT for ttl <= 0 or uses < 0. `issuer`: an issuer token, made only
  // where the root key is (FAILED_PRECONDITION elsewhere).
  absl::StatusOr<JoinToken> CreateToken(Role role, seconds ttl, int uses, WallTime now,
                                        bool issuer = false);
  // Tokens another issuer of the mesh holds (docs/identity.md, "More than one issuer"): unknown
  // ones are taken (up to kMaxTokens), known ones merge (Issuer::AddToken), expired ones are
  // left out; then the tokens file is written.
  absl::Status LearnTokens(const std::vector<TokenRecord>& records, WallTime now);
  // A revocation another issuer signed (checked by the caller): kept and refused here as if
  // made here, so that this issuer renews and admits no such key either. No-op if known.
  absl::Status Adopt(std::string_view name, std::string_view public_key, WallTime now);
  // Issuer::UseRootKey (the root key exported or imported).
  void UseRootKey(std::optional<NodeKey> root_key);
  std::vector<TokenRecord> Tokens(WallTime now) const;
  absl::Status RevokeToken(std::string_view id);
  // Issuer::Join; a use it spends is written to the tokens file before the certificate is
  // returned.
  absl::StatusOr<Issued> Join(const JoinRequest& request, WallTime now,
                              const Issuer::KeyOf& key_of);
  // Revokes `name`'s key for good (written to the revoked file first): it is refused renewal and
  // joins from now on. INVALID_ARGUMENT for a key of the wrong size.
  absl::Status RevokeNode(std::string_view name, std::string_view public_key, WallTime now);
  // Revokes `client`'s bearer tokens issued at or before `now` (client_token.h), kept and spread
  // like a key's revocation. Returns the revocation's name and pseudo key.
  absl::StatusOr<std::pair<std::string, std::string>> RevokeClientTokens(std::string_view client,
                                                                         WallTime now);
  // The latest revocation of `client`'s tokens made here: tokens issued at or before it (unix s)
  // are refused. 0: none.
  int64_t ClientTokensRevokedBefore(std::string_view client) const;
  struct Revocation {
    std::string public_key;
    std::string name;
    WallTime when;
  };
  std::vector<Revocation> Revocations() const;
  // Every revocation with the issuer's signature (Issuer::SignRevocation), for other nodes.
  struct SignedRevocation {
    std::string public_key;
    std::string name;
    std::string signature;
  };
  std::vector<SignedRevocation> SignedRevocations() const;
  size_t revocation_count() const;
  // Cheap and never waits for the disk (it is asked at every TLS handshake).
  bool IsRevoked(std::string_view public_key) const;
  // Issuer::IssueClient.
  absl::StatusOr<Issued> IssueClient(std::string_view name, Role role, std::string_view public_key,
                                     seconds validity, WallTime now);
  // Issuer::IssueClientToken.
  absl::StatusOr<std::string> IssueClientToken(std::string_view name,
                                               const std::vector<std::string>& models,
                                               seconds validity, WallTime now) const;
  // The issuer's signature of a policy document (Issuer::SignPolicy).
  std::string SignPolicy(uint64_t version, std::string_view document) const;
  // Issuer::Renew.
  absl::StatusOr<Issued> Renew(const Certificate& current, const std::vector<Certificate>& chain,
                               std::string_view proved_key, WallTime now);
  // True if a root of the trust bundle has this digest (a join token names one).
  bool TrustsRoot(std::string_view digest) const;
  // Issuer::UseCertificates.
  void UseCertificates(Certificate issuer, std::vector<Certificate> roots);

 private:
  IssuerService(std::string path, std::string revoked_path, Issuer issuer,
                std::vector<Revocation> revocations);
  absl::Status SaveLocked(WallTime now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // RevokeNode once `name` is checked.
  absl::Status RevokeChecked(std::string_view name, std::string_view public_key, WallTime now);

  const std::string path_;
  const std::string revoked_path_;
  mutable absl::Mutex mu_;
  Issuer issuer_ ABSL_GUARDED_BY(mu_);
  std::vector<Revocation> revocations_ ABSL_GUARDED_BY(mu_);
  // The revoked keys, apart: IsRevoked must not wait while mu_ is held for a file write.
  mutable absl::Mutex revoked_mu_ ABSL_ACQUIRED_AFTER(mu_);
  std::set<std::string, std::less<>> revoked_keys_ ABSL_GUARDED_BY(revoked_mu_);
};

// The tokens file's text for `tokens`, and back (errors name the line).
std::string FormatTokens(const std::vector<TokenRecord>& tokens);
absl::StatusOr<std::vector<TokenRecord>> ParseTokens(std::string_view text);

}  // namespace hivemesh::identity
