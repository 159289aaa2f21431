// The mesh's credentials in the state folder (docs/identity.md):
//
//   <state>/mesh/roots.pem    the trust bundle: the root certificates this node trusts
//   <state>/mesh/node.pem     this node's certificate, then its issuer's
//   <state>/mesh/issuer.pem   the issuer certificate (issuer nodes only)
//   <state>/mesh/issuer.key   its key, PEM, 0600
//   <state>/mesh/root.key     the root key, PEM, 0600: on the node that created the mesh, until
//                             an operator exports and removes it
//   <state>/mesh/issuers.pem  the mesh's other issuer certificates (nodes granted issuer rights,
//                             docs/identity.md), learnt from members; public
//   <state>/mesh/issuer.granted  present on a node whose issuer rights were granted by a join
//                             (not the node that created the mesh)
//
// The node's own key stays in <state>/node.key (key_file.h): a node certificate binds it.
//
// Thread safety: none needed; called at start-up and by the one thread that renews.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "identity/certs.h"
#include "identity/node_key.h"

namespace hivemesh::identity {

struct MeshCredentials {
  std::vector<Certificate> roots;
  std::optional<Certificate> node_cert;
  std::vector<Certificate> node_chain;  // the node certificate's issuer
  std::optional<Certificate> issuer_cert;
  std::optional<NodeKey> issuer_key;
  std::optional<NodeKey> root_key;
  // The mesh's gossip encryption keys (base64 AES keys, membership/keyring.h), the primary
  // first: made with the mesh, handed to each node in its join and renewal answers, kept in
  // <state>/mesh/gossip.keys (0600). Empty for a mesh made before they were.
  std::vector<std::string> gossip_keys;
  // Their version (0: as the mesh was made) and an issuer's signature over version and keys
  // (GossipKeysMessage, identity/issuer.h; empty at version 0): members hand a newer version to
  // one another, and take it only if an issuer of the mesh signed it.
  uint64_t gossip_keys_version = 0;
  std::string gossip_keys_signature;
  // At the issuer, during a gossip key rotation: the step taken (1 or 2, below); 0 otherwise.
  int gossip_rotation_step = 0;
  // Issuer certificates of the mesh besides this node's own and its certificate's issuer
  // (docs/identity.md, "More than one issuer"): what a member signs or a peer presents under
  // any issuer is checked against them all (MeshIssuers). Each was checked against the roots
  // (VerifyIssuerCertificate) before it was taken.
  std::vector<Certificate> issuers;
  // This node's issuer rights were granted by a join with an issuer token: it issues and
  // renews certificates, spreads tokens and revocations, but the control versions (gossip key
  // rotation) stay with the node that created the mesh.
  bool granted_issuer = false;

  bool empty() const { return roots.empty(); }
  std::string ca_digest() const { return roots.empty() ? "" : roots.front().Digest(); }
};

// Most issuer certificates a node keeps (MeshCredentials::issuers): more are not taken.
inline constexpr size_t kMaxIssuers = 32;

// Every issuer certificate `mesh` knows: its certificate's issuer, its own issuer certificate
// and `issuers`, one per issuer key (the first met).
std::vector<Certificate> MeshIssuers(const MeshCredentials& mesh);
// Adds to `mesh.issuers` those of `offered` whose key it does not know that pass
// VerifyIssuerCertificate against its roots at `now`, up to kMaxIssuers in all. Returns how
// many it took.
size_t TakeIssuers(MeshCredentials& mesh, const std::vector<Certificate>& offered, WallTime now);

// What `state_dir` holds; an empty MeshCredentials if it holds no mesh. Errors name the file: a
// file that does not parse, a key readable by others, a node certificate without roots.
absl::StatusOr<MeshCredentials> LoadMesh(const std::string& state_dir);
// Writes every part `mesh` has (each file replaced atomically; keys 0600), and removes root.key
// when `mesh` holds no root key (exported: hivemesh ca export-key).
absl::Status SaveMesh(const std::string& state_dir, const MeshCredentials& mesh);

// A new mesh whose first node is `node_key`'s: a root and an issuer (each with a new key), and
// the node's certificate (role node, with `labels`, living `node_validity`).
absl::StatusOr<MeshCredentials> CreateMesh(const NodeKey& node_key, const std::string& name,
                                           const std::map<std::string, std::string>& labels,
                                           WallTime now, seconds node_validity = kNodeValidity);

// Root rotation (docs/identity.md), at the node holding the root key and issuer rights, in two
// steps so that no node ever meets a certificate it cannot check:
//  - StartRootRotation: a new root (a new key, the same mesh) goes first in the trust bundle,
//    the old one stays after it, and the old root's certificate of the new root's key (a cross
//    certificate) goes last: sent with every chain, it lets a node that trusts only the old
//    root check chains under the new one. The issuer still signs under the old root. Every node
//    takes the bundle at its next renewal (the agent renews at once when a member trusts more
//    roots).
//  - FinishRootRotation, once every member trusts both: the new root certifies the issuer's
//    key anew, so what the issuer signs from then on chains to the new root.
// FAILED_PRECONDITION without the root key or issuer rights, or (Start) while a rotation is
// under way.
absl::Status StartRootRotation(MeshCredentials& mesh, WallTime now);
absl::Status FinishRootRotation(MeshCredentials& mesh, WallTime now);
// True between the two steps: the issuer certificate is not signed by the first root.
bool RootRotationPending(const MeshCredentials& mesh);

// Gossip key rotation (docs/identity.md), at an issuer, in three versions of the keys so that
// whatever key a member seals with, every other member opens it, whichever of two neighbouring
// versions each holds:
//  - StartGossipKeyRotation: a new key is accepted, after the primary, which still seals (step 1);
//  - AdvanceGossipKeyRotation from step 1: the new key seals, the old one is still accepted
//    (step 2);
//  - AdvanceGossipKeyRotation from step 2: the old key is dropped (step 0: done).
// Each step is a new version signed with the issuer key. The agent takes the next step once
// every live member announces the version. FAILED_PRECONDITION without issuer rights or keys, or
// (Start) during a rotation, or (Advance) outside one.
absl::Status StartGossipKeyRotation(MeshCredentials& mesh);
absl::Status AdvanceGossipKeyRotation(MeshCredentials& mesh);

}  // namespace hivemesh::identity
