// libFuzzer target for client bearer tokens (identity/client_token.h), which anyone on the
// network can send in an Authorization header. Two ways in, chosen by the first byte:
//  - the rest as token text, checked as a node checks it: whatever the bytes, no crash, and
//    nothing unsigned is taken (the key that signs nothing here never signed these bytes);
//  - the rest as a payload the issuer signed (an issuer with a bug, or a future format): the
//    signature holds, so the payload parser meets every shape of input; a token it takes names
//    a client and models that pass the token's own rules.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/strings/escaping.h"
#include "identity/certs.h"
#include "identity/client_token.h"
#include "identity/node_key.h"

namespace {

using hivemesh::identity::Certificate;
using hivemesh::identity::NodeKey;

constexpr int64_t kNow = 1'800'000'000;
const hivemesh::identity::WallTime kWallNow{std::chrono::seconds(kNow)};

struct Mesh {
  NodeKey root_key = NodeKey::FromSeed(std::string(32, 'r'));
  NodeKey issuer_key = NodeKey::FromSeed(std::string(32, 'i'));
  std::string mesh_id = std::string(32, 'a');
  Certificate root = hivemesh::identity::MakeRootCertificate(root_key, mesh_id, kWallNow);
  Certificate issuer = hivemesh::identity::MakeIssuerCertificate(issuer_key.public_key(), "fuzz",
                                                                 root, root_key, kWallNow);
};

const Mesh& TheMesh() {
  static const Mesh* mesh = new Mesh();
  return *mesh;
}

bool ValidText(std::string_view s, bool pattern) {
  if (s.empty() || s.size() > 128) return false;
  if (pattern && s.back() == '*') s.remove_suffix(1);
  for (const char c : s) {
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
          c == '_' || c == '-')) {
      return false;
    }
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const Mesh& mesh = TheMesh();
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::string text;
  if (data[0] & 1) {
    std::string message("hivemesh client token v1", 24);
    message += '\0';
    message.append(rest);
    text = "HMC1." + absl::WebSafeBase64Escape(std::string(rest)) + "." +
           absl::WebSafeBase64Escape(mesh.issuer_key.Sign(message));
  } else {
    text = std::string(rest);
  }
  absl::StatusOr<hivemesh::identity::ClientToken> token =
      hivemesh::identity::VerifyClientToken(text, {mesh.issuer}, mesh.mesh_id, kNow);
  if (!token.ok()) return 0;
  if (!(data[0] & 1)) __builtin_trap();  // an unsigned token was taken
  if (!ValidText(token->subject, false) || token->models.empty()) __builtin_trap();
  for (const std::string& m : token->models) {
    if (!ValidText(m, true)) __builtin_trap();
  }
  if (token->expires <= kNow || token->mesh_id != mesh.mesh_id) __builtin_trap();
  return 0;
}
