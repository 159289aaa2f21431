// The mesh's certificates (docs/identity.md): a root CA, issuer CAs under it, and node
// certificates that bind a node's own Ed25519 key (node_key.h) to its name, role and labels.
// X.509 v3 through OpenSSL 3, Ed25519 throughout.
//
// A node certificate says, besides its key and validity:
//   subject CN = <name>
//   URI SANs   spiffe://<mesh id>/node/<name>
//              urn:hivemesh:role:<node|operator>
//              urn:hivemesh:label:<key>=<value>   (one per label, e.g. zone=a)
// and is not a CA. A client certificate (`hivemesh cert issue-client`: a program or a person that
// calls the mesh's API, not a member) names spiffe://<mesh id>/client/<name> instead, with role
// client or operator. CA certificates carry the URI SAN spiffe://<mesh id>, so a root names its
// mesh. Validity starts kBackdate before the time of issue, for clocks that lag.
//
// Every function here is pure: the time is passed in (`now`), nothing is read from the clock,
// the disk or the network. Serial numbers and mesh ids come from the OS random source.
//
// Thread safety: a Certificate is an immutable value (copies share the OpenSSL object); the
// free functions may be called from any number of threads at once.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "identity/node_key.h"

namespace hivemesh::identity {

using WallTime = std::chrono::system_clock::time_point;
using std::chrono::seconds;

inline constexpr seconds kBackdate{300};
inline constexpr seconds kRootValidity{10 * 365 * 86400};
inline constexpr seconds kIssuerValidity{365 * 86400};
inline constexpr seconds kNodeValidity{7 * 86400};

enum class Role : uint8_t { kNode, kOperator, kClient };
std::string_view RoleName(Role r);  // "node", "operator", "client"
absl::StatusOr<Role> ParseRole(std::string_view name);

// What a node certificate says about its holder.
struct NodeIdentity {
  std::string mesh_id;  // 32 hex digits
  std::string name;
  Role role = Role::kNode;
  std::map<std::string, std::string> labels;
  std::string public_key;  // raw Ed25519, kPublicKeyBytes
  // A client certificate (spiffe://<mesh id>/client/<name>): never a member of the mesh.
  bool client = false;
  // Read from a certificate (ignored when issuing):
  std::string serial;  // hex
  WallTime not_before;
  WallTime not_after;

  std::string SpiffeId() const;  // spiffe://<mesh id>/node/<name> (or /client/<name>)
};

class Certificate {
 public:
  // The first certificate of a PEM text, or of DER bytes.
  static absl::StatusOr<Certificate> FromPem(std::string_view pem);
  static absl::StatusOr<Certificate> FromDer(std::string_view der);
  // Every certificate of a PEM text (a chain or a bundle); an error if there is none.
  static absl::StatusOr<std::vector<Certificate>> AllFromPem(std::string_view pem);

  std::string ToPem() const;
  std::string Der() const;
  // SHA-256 of the DER encoding, 64 hex digits: a root's digest is what join tokens carry.
  std::string Digest() const;
  std::string CommonName() const;
  std::string public_key() const;  // raw Ed25519, or empty if the key is of another kind
  WallTime not_before() const;
  WallTime not_after() const;
  bool is_ca() const;
  // The mesh a CA certificate names (its spiffe://<mesh id> SAN), or empty.
  std::string MeshId() const;
  // True if `issuer`'s key signed this certificate.
  bool SignedBy(const Certificate& issuer) const;
  // What a node certificate says, unverified (VerifyNodeCertificate verifies).
  absl::StatusOr<NodeIdentity> Identity() const;

  struct Impl;
  const Impl& impl() const { return *impl_; }

 private:
  explicit Certificate(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
  friend struct CertificateFactory;
};

// 16 random bytes in hex: the id of a new mesh.
std::string NewMeshId();

// A self-signed root CA for `mesh_id`, with `key`.
Certificate MakeRootCertificate(const NodeKey& key, std::string_view mesh_id, WallTime now,
                                seconds validity = kRootValidity);
// `new_root`'s key and names certified by `old_root` (a root rotation, mesh_files.h): a node
// that trusts only the old root checks chains under the new one through this certificate.
Certificate CrossSignRoot(const Certificate& new_root, const Certificate& old_root,
                          const NodeKey& old_root_key, WallTime now);
// An issuer CA for `issuer_key`, signed by the root (which may sign nothing below issuers).
Certificate MakeIssuerCertificate(std::string_view issuer_public_key, std::string_view name,
                                  const Certificate& root, const NodeKey& root_key, WallTime now,
                                  seconds validity = kIssuerValidity);
// A node certificate for `who` (name, role, labels, public key; the mesh id is the issuer's),
// signed by an issuer. Errors name the field: a name or label of the wrong characters or
// length, a key of the wrong size, an issuer that is not a CA, role client for a node or role
// node for a client.
absl::StatusOr<Certificate> IssueNodeCertificate(const NodeIdentity& who, const Certificate& issuer,
                                                 const NodeKey& issuer_key, WallTime now,
                                                 seconds validity = kNodeValidity);

// Checks that `leaf` is a node certificate that chains, through `intermediates` (self-signed
// ones are left out: only `roots` anchor a chain), to one of `roots`, every certificate valid at
// `now`, and that it belongs to the mesh of the root it chains to; returns what it says. With
// `allow_expired`, a leaf past its end is checked as of its last second instead (the chain must
// have been valid then): renewal of a node that was offline longer than its certificate's life
// (docs/identity.md). Errors say why, in OpenSSL's words ("certificate has expired", "unable to get
// local issuer certificate", ...).
absl::StatusOr<NodeIdentity> VerifyNodeCertificate(const Certificate& leaf,
                                                   const std::vector<Certificate>& intermediates,
                                                   const std::vector<Certificate>& roots,
                                                   WallTime now, bool allow_expired = false);

// Checks that `issuer` is an issuer CA certificate of the mesh (docs/identity.md, "More than one
// issuer"): a CA named "hivemesh issuer <name>", signed by one of `roots` (not a root itself),
// of that root's mesh, valid at `now`. PERMISSION_DENIED saying why not.
absl::Status VerifyIssuerCertificate(const Certificate& issuer,
                                     const std::vector<Certificate>& roots, WallTime now);
// The node an issuer certificate was made for ("hivemesh issuer <name>"), or empty.
std::string IssuerName(const Certificate& issuer);

// Checks a node name or a label key or value: 1 to 63 of [A-Za-z0-9._-], not starting with '.'
// or '-'. `what` names the field in the error.
absl::Status CheckCertificateText(std::string_view text, std::string_view what);
// What a node certificate must hold: a name and labels that pass CheckCertificateText, and a key
// of kPublicKeyBytes. Errors name the field.
absl::Status CheckNodeIdentity(std::string_view name,
                               const std::map<std::string, std::string>& labels,
                               std::string_view public_key);

// A join token (docs/identity.md): HM1-<CA digest: 64 hex>-<id: 8 hex>.<secret: 32 hex>. The
// digest lets a joining node check the mesh's CA before it sends anything secret.
struct JoinToken {
  std::string ca_digest;
  std::string id;
  std::string secret;

  static JoinToken Generate(std::string_view ca_digest);
  static absl::StatusOr<JoinToken> Parse(std::string_view text);
  std::string ToString() const;
};

}  // namespace hivemesh::identity
