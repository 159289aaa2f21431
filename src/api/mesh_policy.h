// The mesh's authorization policy on one node (docs/security.md, "The policy document"): the
// signed document in force, how it is applied at an issuer, and how it reaches every node.
//
// - An operator signs a document with the key of its operator certificate (`hivemesh policy
//   apply FILE --operator-cert NAME.pem --operator-key NAME.key`) and hands it to any node (PUT
//   /v1/mesh/policy, a signed JSON body: the signature is the authority, so no admin access is
//   needed). Each node checks the operator's certificate (the mesh's, role operator, not
//   revoked; valid when it is offered, and when it was signed for a document saved before a
//   restart) and the signature (the agent's OperatorCheck).
// - Or an operator applies a bare document at an issuer node (PUT /v1/mesh/policy with the
//   YAML, an admin call: the node's admin_access or an operator certificate). The issuer checks
//   it (Policy::Parse), gives it the next version, signs version and text with its issuer key
//   (identity::SignPolicy) and puts it in force.
// - Every node announces the version it holds in its gossip metadata; a node that sees a member
//   hold a newer one fetches it from that member (GET /v1/mesh/policy, members over mutual TLS)
//   and takes it only if an issuer of the mesh signed it and its version is newer than its own.
//   A node relays what it fetched, so the document spreads through any member.
// - The document in force is kept in <state>/mesh/policy (JSON: version, document, signature),
//   so a node that restarts enforces it before it hears from anyone. A saved document whose
//   signature does not verify stops the node: starting without it would open what it denies.
//
// Thread safety: every method may be called from any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "api/admin_access.h"
#include "api/authorization_policy.h"
#include "base/rejections.h"
#include "identity/certs.h"
#include "transport/http_server.h"

namespace hivemesh {

struct SignedPolicy {
  uint64_t version = 0;   // 0: none was ever applied
  std::string document;   // YAML (api/authorization_policy.h); empty: no policy
  std::string signature;  // over identity::PolicyMessage(version, document): the signer's
  // Empty: an issuer of the mesh signed it. Otherwise the operator who signed it: its client
  // certificate of role operator, then its issuer's (PEM). An operator's version is the unix
  // time of signing in milliseconds, so that it needs no node to number it.
  std::string signer;
};

// {"version": N, "document": "...", "signature": "<hex>"[, "signer": "<PEM>"]}; the decoder
// refuses anything else, documents over kMaxPolicyBytes and signers over 16 KiB included.
std::string EncodeSignedPolicy(const SignedPolicy& policy);
absl::StatusOr<SignedPolicy> DecodeSignedPolicy(std::string_view json);

class MeshPolicy {
 public:
  // Keeps the document in force in `path` and puts it in `holder` for the front ends.
  MeshPolicy(std::string path, std::shared_ptr<PolicyHolder> holder);

  // Checks an operator's signature (SignedPolicy::signer): that `signer` (PEM) is an operator's
  // certificate of the mesh, not revoked, valid at `at_unix`, and that its key made `signature`
  // over `message`. Returns the operator's name, or why not. Without one, documents operators
  // signed are refused. REQUIRES: set before Load and Offer are called.
  using OperatorCheck =
      std::function<absl::StatusOr<std::string>(std::string_view signer, std::string_view message,
                                                std::string_view signature, int64_t at_unix)>;
  void SetOperatorCheck(OperatorCheck check) { operator_check_ = std::move(check); }

  // Loads the saved document, if any, verified against `issuers` (the node's chain). Errors name
  // the file: unreadable, not a policy, or not signed by an issuer of the mesh.
  absl::Status Load(const std::vector<identity::Certificate>& issuers);

  // Takes `offered` if its version is newer than the one in force, an issuer among `issuers`
  // signed it and it parses; saves it before it takes effect. True if taken, false if not newer;
  // an error says why it was refused.
  absl::StatusOr<bool> Offer(const SignedPolicy& offered,
                             const std::vector<identity::Certificate>& issuers);

  // At an issuer: `document` checked, given the next version, signed by `sign(version,
  // document)` and put in force. Returns the version. INVALID_ARGUMENT naming what is wrong.
  absl::StatusOr<uint64_t> Apply(std::string_view document,
                                 const std::function<std::string(uint64_t, std::string_view)>& sign,
                                 const std::vector<identity::Certificate>& issuers);

  SignedPolicy current() const;
  uint64_t version() const;

 private:
  // `saved`: the document this node enforced before it restarted (an operator's certificate is
  // checked at the time it signed, not now).
  absl::StatusOr<bool> OfferLocked(const SignedPolicy& offered,
                                   const std::vector<identity::Certificate>& issuers, bool saved)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // OK if an issuer among `issuers`, or an operator (operator_check_), signed `p`.
  absl::Status CheckSignature(const SignedPolicy& p,
                              const std::vector<identity::Certificate>& issuers, bool saved) const;
  OperatorCheck operator_check_;
  const std::string path_;
  const std::shared_ptr<PolicyHolder> holder_;
  mutable absl::Mutex mu_;
  SignedPolicy current_ ABSL_GUARDED_BY(mu_);
};

// The policy's REST calls:
//   GET /v1/mesh/policy  -> the signed document in force (EncodeSignedPolicy). Members (over
//                           mutual TLS) and admins.
//   PUT /v1/mesh/policy  (body: the YAML document; empty: no policy) -> 200 {"version": N}. An
//                           admin call, at an issuer node (409 elsewhere, saying so); 400 naming
//                           what is wrong with the document.
//                        (body: a signed document, EncodeSignedPolicy, an operator's) -> 200
//                           {"version": N, "taken": true|false (not newer)}. At any node, from
//                           anyone: the signature is checked, not the caller; 403 saying why a
//                           signature is refused.
class PolicyHandler {
 public:
  // `apply` is MeshPolicy::Apply with this node's issuer (null: the node holds no issuer
  // rights); `applied` runs after a new version is in force (the node announces it).
  PolicyHandler(std::shared_ptr<MeshPolicy> policy, AdminAccess admin,
                std::shared_ptr<Rejections> rejections,
                std::function<absl::StatusOr<uint64_t>(std::string_view document)> apply,
                std::function<void()> applied);
  // PUT with a signed document calls `offer` (MeshPolicy::Offer with this node's issuers).
  // REQUIRES: called before the handler serves.
  void SetOffer(std::function<absl::StatusOr<bool>(const SignedPolicy&)> offer) {
    offer_ = std::move(offer);
  }
  // True if the request was for /v1/mesh/policy (and was answered).
  bool Handle(const HttpRequest& request, HttpResponder& respond) const;

 private:
  void OfferSigned(const HttpRequest& request, HttpResponder& respond) const;
  std::function<absl::StatusOr<bool>(const SignedPolicy&)> offer_;
  const std::shared_ptr<MeshPolicy> policy_;
  const AdminAccess admin_;
  const std::shared_ptr<Rejections> rejections_;
  const std::function<absl::StatusOr<uint64_t>(std::string_view document)> apply_;
  const std::function<void()> applied_;
};

}  // namespace hivemesh
