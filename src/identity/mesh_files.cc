#include "identity/mesh_files.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fstream>
#include <set>
#include <sstream>

#include "base/hex.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "identity/issuer.h"
#include "identity/key_file.h"

namespace hivemesh::identity {
namespace {

std::string MeshDir(const std::string& state_dir) { return state_dir + "/mesh"; }

bool Exists(const std::string& path) { return access(path.c_str(), F_OK) == 0; }

absl::StatusOr<std::vector<Certificate>> ReadCertificates(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::FailedPreconditionError(StrCat(path, ": cannot read it"));
  std::ostringstream text;
  text << in.rdbuf();
  absl::StatusOr<std::vector<Certificate>> certs = Certificate::AllFromPem(text.str());
  if (!certs.ok()) {
    return absl::FailedPreconditionError(StrCat(path, ": ", MessageOf(certs.status())));
  }
  return certs;
}

std::string Pem(const std::vector<Certificate>& certs) {
  std::string out;
  for (const Certificate& c : certs) out += c.ToPem();
  return out;
}

// gossip.keys: one base64 key per line, the primary first. Since key rotation, lines
// "version N", "signature <hex>" and (at an issuer, during a rotation) "step S" come first; a
// file without them is version 0.
absl::Status ParseGossipKeys(std::string_view text, MeshCredentials& mesh) {
  for (std::string_view line : Split(text, '\n')) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
    if (line.empty()) continue;
    const size_t space = line.find(' ');
    if (space == std::string_view::npos) {
      mesh.gossip_keys.emplace_back(line);
      continue;
    }
    const std::string_view field = line.substr(0, space), value = line.substr(space + 1);
    std::optional<std::string> signature;
    std::optional<uint64_t> number;
    if (field == "signature" && (signature = HexDecode(value))) {
      mesh.gossip_keys_signature = std::move(*signature);
    } else if (field == "version" && (number = ParseUint(value))) {
      mesh.gossip_keys_version = *number;
    } else if (field == "step" && (number = ParseUint(value)) && *number <= 2) {
      mesh.gossip_rotation_step = static_cast<int>(*number);
    } else {
      return absl::InvalidArgumentError(
          StrCat("gossip.keys: a line '", field, " ...' that is not version, signature or step"));
    }
  }
  return absl::OkStatus();
}

std::string GossipKeysText(const MeshCredentials& mesh) {
  std::string text;
  if (mesh.gossip_keys_version > 0) StrAppend(&text, "version ", mesh.gossip_keys_version, "\n");
  if (!mesh.gossip_keys_signature.empty()) {
    StrAppend(&text, "signature ", HexEncode(mesh.gossip_keys_signature), "\n");
  }
  if (mesh.gossip_rotation_step > 0) StrAppend(&text, "step ", mesh.gossip_rotation_step, "\n");
  for (const std::string& k : mesh.gossip_keys) StrAppend(&text, k, "\n");
  return text;
}

absl::Status SignNextGossipKeys(MeshCredentials& mesh) {
  ++mesh.gossip_keys_version;
  mesh.gossip_keys_signature =
      mesh.issuer_key->Sign(GossipKeysMessage(mesh.gossip_keys_version, mesh.gossip_keys));
  return absl::OkStatus();
}

}  // namespace

std::vector<Certificate> MeshIssuers(const MeshCredentials& mesh) {
  std::vector<Certificate> out;
  // By key: a root rotation certifies an issuer's key anew, and either certificate checks what
  // that key signs. The first one met is kept (a renewal's chain is the freshest).
  std::set<std::string> seen;
  const auto add = [&](const Certificate& c) {
    if (seen.insert(c.public_key()).second) out.push_back(c);
  };
  for (const Certificate& c : mesh.node_chain) add(c);
  if (mesh.issuer_cert) add(*mesh.issuer_cert);
  for (const Certificate& c : mesh.issuers) add(c);
  return out;
}

size_t TakeIssuers(MeshCredentials& mesh, const std::vector<Certificate>& offered, WallTime now) {
  std::set<std::string> known;  // keys
  for (const Certificate& c : MeshIssuers(mesh)) known.insert(c.public_key());
  size_t taken = 0;
  for (const Certificate& c : offered) {
    if (mesh.issuers.size() >= kMaxIssuers) break;
    if (known.count(c.public_key()) > 0 || !VerifyIssuerCertificate(c, mesh.roots, now).ok()) {
      continue;
    }
    known.insert(c.public_key());
    mesh.issuers.push_back(c);
    ++taken;
  }
  return taken;
}

absl::StatusOr<MeshCredentials> LoadMesh(const std::string& state_dir) {
  const std::string dir = MeshDir(state_dir);
  MeshCredentials mesh;
  if (!Exists(dir + "/roots.pem")) {
    if (Exists(dir + "/node.pem")) {
      return absl::FailedPreconditionError(
          StrCat(dir, "/node.pem is there but roots.pem is not: the node cannot check its peers"));
    }
    return mesh;
  }
  HM_ASSIGN_OR_RETURN(mesh.roots, ReadCertificates(dir + "/roots.pem"));
  if (Exists(dir + "/node.pem")) {
    HM_ASSIGN_OR_RETURN(std::vector<Certificate> chain, ReadCertificates(dir + "/node.pem"));
    mesh.node_cert = chain.front();
    mesh.node_chain.assign(chain.begin() + 1, chain.end());
  }
  if (Exists(dir + "/issuer.pem")) {
    HM_ASSIGN_OR_RETURN(std::vector<Certificate> issuer, ReadCertificates(dir + "/issuer.pem"));
    mesh.issuer_cert = issuer.front();
    HM_ASSIGN_OR_RETURN(mesh.issuer_key, ReadKeyFile(dir + "/issuer.key", "issuer key"));
  }
  if (Exists(dir + "/issuers.pem")) {
    HM_ASSIGN_OR_RETURN(mesh.issuers, ReadCertificates(dir + "/issuers.pem"));
  }
  mesh.granted_issuer = Exists(dir + "/issuer.granted");
  if (Exists(dir + "/root.key")) {
    HM_ASSIGN_OR_RETURN(mesh.root_key, ReadKeyFile(dir + "/root.key", "root key"));
  }
  if (Exists(dir + "/gossip.keys")) {
    HM_ASSIGN_OR_RETURN(std::string text, ReadSecretFile(dir + "/gossip.keys", "gossip keys"));
    HM_RETURN_IF_ERROR(ParseGossipKeys(text, mesh));
  }
  return mesh;
}

absl::Status SaveMesh(const std::string& state_dir, const MeshCredentials& mesh) {
  const std::string dir = MeshDir(state_dir);
  HM_RETURN_IF_ERROR(MakeStateFolder(dir));
  // Keys before the certificates that name them, and roots last: a node stopped half-way has
  // no roots.pem yet and starts over, rather than with a certificate and no key.
  if (mesh.root_key) {
    HM_RETURN_IF_ERROR(ReplaceFile(dir + "/root.key", mesh.root_key->ToPem(), 0600));
  } else if (Exists(dir + "/root.key") && ::unlink((dir + "/root.key").c_str()) != 0) {
    // Exported (hivemesh ca export-key): it lives elsewhere now.
    return absl::InternalError(StrCat("cannot remove ", dir, "/root.key: ", std::strerror(errno)));
  }
  if (!mesh.gossip_keys.empty()) {
    HM_RETURN_IF_ERROR(ReplaceFile(dir + "/gossip.keys", GossipKeysText(mesh), 0600));
  }
  if (mesh.issuer_cert && mesh.issuer_key) {
    HM_RETURN_IF_ERROR(ReplaceFile(dir + "/issuer.key", mesh.issuer_key->ToPem(), 0600));
    HM_RETURN_IF_ERROR(ReplaceFile(dir + "/issuer.pem", mesh.issuer_cert->ToPem(), 0644));
    if (mesh.granted_issuer) {
      HM_RETURN_IF_ERROR(ReplaceFile(dir + "/issuer.granted", "granted by a join\n", 0644));
    }
  }
  if (!mesh.issuers.empty()) {
    HM_RETURN_IF_ERROR(ReplaceFile(dir + "/issuers.pem", Pem(mesh.issuers), 0644));
  }
  if (mesh.node_cert) {
    std::vector<Certificate> chain = {*mesh.node_cert};
    chain.insert(chain.end(), mesh.node_chain.begin(), mesh.node_chain.end());
    HM_RETURN_IF_ERROR(ReplaceFile(dir + "/node.pem", Pem(chain), 0644));
  }
  if (!mesh.roots.empty())
    HM_RETURN_IF_ERROR(ReplaceFile(dir + "/roots.pem", Pem(mesh.roots), 0644));
  return absl::OkStatus();
}

absl::Status StartGossipKeyRotation(MeshCredentials& mesh) {
  if (!mesh.issuer_key || mesh.gossip_keys.empty()) {
    return absl::FailedPreconditionError(
        "this node holds no issuer rights or no gossip keys: rotate them at an issuer");
  }
  if (mesh.gossip_rotation_step != 0) {
    return absl::FailedPreconditionError(
        "a gossip key rotation is under way: it finishes once every member holds its keys");
  }
  mesh.gossip_keys = {mesh.gossip_keys.front(), NewGossipKey()};
  mesh.gossip_rotation_step = 1;
  return SignNextGossipKeys(mesh);
}

absl::Status AdvanceGossipKeyRotation(MeshCredentials& mesh) {
  if (!mesh.issuer_key || mesh.gossip_keys.size() != 2 || mesh.gossip_rotation_step == 0) {
    return absl::FailedPreconditionError("no gossip key rotation is under way");
  }
  if (mesh.gossip_rotation_step == 1) {
    std::swap(mesh.gossip_keys[0], mesh.gossip_keys[1]);  // the new key seals
    mesh.gossip_rotation_step = 2;
  } else {
    mesh.gossip_keys.pop_back();  // the old key goes
    mesh.gossip_rotation_step = 0;
  }
  return SignNextGossipKeys(mesh);
}

absl::StatusOr<MeshCredentials> CreateMesh(const NodeKey& node_key, const std::string& name,
                                           const std::map<std::string, std::string>& labels,
                                           WallTime now, seconds node_validity) {
  MeshCredentials mesh;
  const NodeKey root_key = NodeKey::Generate();
  const NodeKey issuer_key = NodeKey::Generate();
  const Certificate root = MakeRootCertificate(root_key, NewMeshId(), now);
  const Certificate issuer =
      MakeIssuerCertificate(issuer_key.public_key(), name, root, root_key, now);
  NodeIdentity who;
  who.name = name;
  who.labels = labels;
  who.public_key = node_key.public_key();
  HM_ASSIGN_OR_RETURN(Certificate cert,
                      IssueNodeCertificate(who, issuer, issuer_key, now, node_validity));
  mesh.roots = {root};
  mesh.node_cert = cert;
  mesh.node_chain = {issuer};
  mesh.issuer_cert = issuer;
  mesh.issuer_key = issuer_key;
  mesh.root_key = root_key;
  mesh.gossip_keys = {NewGossipKey()};
  return mesh;
}

bool RootRotationPending(const MeshCredentials& mesh) {
  return mesh.issuer_cert.has_value() && !mesh.roots.empty() &&
         !mesh.issuer_cert->SignedBy(mesh.roots.front());
}

absl::Status StartRootRotation(MeshCredentials& mesh, WallTime now) {
  if (!mesh.root_key || !mesh.issuer_cert || !mesh.issuer_key || mesh.roots.empty()) {
    return absl::FailedPreconditionError(
        "this node holds no root key and issuer rights: rotate the root where its key is (or bring "
        "an exported key back: hivemesh ca import-key FILE)");
  }
  if (RootRotationPending(mesh)) {
    return absl::FailedPreconditionError(
        "a root rotation is under way: it finishes once every member trusts the new root");
  }
  const NodeKey root_key = NodeKey::Generate();
  const Certificate old_root = mesh.roots.front();
  const Certificate root = MakeRootCertificate(root_key, old_root.MeshId(), now);
  // The old root vouches for the new one: a node that trusts only the old root (offline through
  // the rotation) still checks what is signed under the new one, and renews.
  mesh.roots.push_back(CrossSignRoot(root, old_root, *mesh.root_key, now));
  mesh.roots.insert(mesh.roots.begin(), root);
  mesh.root_key = root_key;
  return absl::OkStatus();
}

absl::Status FinishRootRotation(MeshCredentials& mesh, WallTime now) {
  if (!RootRotationPending(mesh) || !mesh.root_key || !mesh.issuer_key) {
    return absl::FailedPreconditionError("no root rotation is under way");
  }
  constexpr std::string_view kPrefix = "hivemesh issuer ";
  std::string name = mesh.issuer_cert->CommonName();
  if (name.starts_with(kPrefix)) name.erase(0, kPrefix.size());
  mesh.issuer_cert = MakeIssuerCertificate(mesh.issuer_key->public_key(), name, mesh.roots.front(),
                                           *mesh.root_key, now);
  return absl::OkStatus();
}

}  // namespace hivemesh::identity
