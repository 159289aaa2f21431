// libFuzzer target for what one issuer takes from another (docs/identity.md, "More than one
// issuer"). Two ways in, chosen by the first byte:
//  - the rest as a token list (POST /v1/mesh/issuer/tokens, the tokens file's lines): whatever
//    the bytes, no crash; a list that parses formats back to a list that parses alike;
//  - the rest as PEM offered as the mesh's issuer certificates (GET /v1/mesh/issuers, join and
//    renewal answers): no crash, and nothing is taken, since the root that would have to sign
//    it signs nothing here.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "identity/certs.h"
#include "identity/issuer.h"
#include "identity/issuer_service.h"
#include "identity/mesh_files.h"

namespace {

using hivemesh::identity::Certificate;
using hivemesh::identity::MeshCredentials;
using hivemesh::identity::NodeKey;
using hivemesh::identity::TokenRecord;

const hivemesh::identity::WallTime kNow{std::chrono::seconds(1'800'000'000)};

const MeshCredentials& TheMesh() {
  static const MeshCredentials* mesh = [] {
    auto* m = new MeshCredentials();
    const NodeKey root_key = NodeKey::FromSeed(std::string(32, 'r'));
    const NodeKey issuer_key = NodeKey::FromSeed(std::string(32, 'i'));
    const Certificate root =
        hivemesh::identity::MakeRootCertificate(root_key, std::string(32, 'a'), kNow);
    m->roots = {root};
    m->issuer_cert = hivemesh::identity::MakeIssuerCertificate(issuer_key.public_key(), "fuzz",
                                                               root, root_key, kNow);
    m->issuer_key = issuer_key;
    return m;
  }();
  return *mesh;
}

void Tokens(std::string_view text) {
  absl::StatusOr<std::vector<TokenRecord>> parsed = hivemesh::identity::ParseTokens(text);
  if (!parsed.ok()) return;
  absl::StatusOr<std::vector<TokenRecord>> again =
      hivemesh::identity::ParseTokens(hivemesh::identity::FormatTokens(*parsed));
  if (!again.ok() || again->size() != parsed->size()) __builtin_trap();
  for (size_t i = 0; i < parsed->size(); ++i) {
    const TokenRecord &a = (*parsed)[i], &b = (*again)[i];
    if (a.id != b.id || a.secret_sha256 != b.secret_sha256 || a.uses != b.uses ||
        a.used != b.used || a.revoked != b.revoked || a.issuer != b.issuer ||
        a.expires != b.expires) {
      __builtin_trap();
    }
  }
}

void Issuers(std::string_view pem) {
  absl::StatusOr<std::vector<Certificate>> certs = Certificate::AllFromPem(pem);
  if (!certs.ok()) return;
  MeshCredentials mesh = TheMesh();
  for (const Certificate& c : *certs) {
    (void)hivemesh::identity::IssuerName(c);
    (void)hivemesh::identity::VerifyIssuerCertificate(c, mesh.roots, kNow);
  }
  if (hivemesh::identity::TakeIssuers(mesh, *certs, kNow) != 0) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] & 1) {
    Issuers(rest);
  } else {
    Tokens(rest);
  }
  return 0;
}
