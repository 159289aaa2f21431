#include "api/admin_access.h"

#include "api/authorization_policy.h"

#include <arpa/inet.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <utility>

#include "base/strings.h"

namespace hivemesh {
namespace {

std::array<unsigned char, 32> Sha256(std::string_view bytes) {
  std::array<unsigned char, 32> digest{};
  SHA256(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), digest.data());
  return digest;
}

constexpr std::string_view kBearer = "Bearer ";

absl::Status CheckTokenText(std::string_view token) {
  if (token.size() < kMinAdminTokenLength) {
    return absl::InvalidArgumentError(
        StrCat("the admin token has ", token.size(), " characters; it needs at least ",
               kMinAdminTokenLength, " (e.g. the output of `openssl rand -hex 32`)"));
  }
  for (unsigned char c : token) {
    if (c <= 0x20 || c >= 0x7f) {
      return absl::InvalidArgumentError(
          "the admin token may hold only printable ASCII characters without spaces");
    }
  }
  return absl::OkStatus();
}

}  // namespace

// The token of an "Authorization: Bearer <token>" value (the scheme is case-insensitive, as in
// RFC 9110), or empty.
std::string_view BearerToken(std::string_view authorization) {
  if (authorization.size() <= kBearer.size()) return {};
  for (size_t i = 0; i < kBearer.size(); ++i) {
    const char c = authorization[i];
    const char lower = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    const char want = kBearer[i];
    const char want_lower =
        (want >= 'A' && want <= 'Z') ? static_cast<char>(want - 'A' + 'a') : want;
    if (lower != want_lower) return {};
  }
  std::string_view token = authorization.substr(kBearer.size());
  while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
  while (!token.empty() && token.back() == ' ') token.remove_suffix(1);
  return token;
}

absl::StatusOr<AdminAccessMode> AdminAccessModeFromName(std::string_view name) {
  if (name == "loopback") return AdminAccessMode::kLoopback;
  if (name == "token") return AdminAccessMode::kToken;
  if (name == "any") return AdminAccessMode::kAny;
  return absl::InvalidArgumentError(
      StrCat("admin_access: '", name, "' is not one of loopback, token, any"));
}

std::string_view AdminAccessModeName(AdminAccessMode mode) {
  switch (mode) {
    case AdminAccessMode::kLoopback:
      return "loopback";
    case AdminAccessMode::kToken:
      return "token";
    case AdminAccessMode::kAny:
      return "any";
  }
  return "";
}

AdminAccess AdminAccess::Any() {
  AdminAccess a;
  a.mode_ = AdminAccessMode::kAny;
  return a;
}

absl::StatusOr<AdminAccess> AdminAccess::Token(std::string_view token) {
  absl::Status valid = CheckTokenText(token);
  if (!valid.ok()) return valid;
  AdminAccess a;
  a.mode_ = AdminAccessMode::kToken;
  a.token_digest_ = Sha256(token);
  return a;
}

absl::Status AdminAccess::Check(const AdminCaller& caller) const {
  // An operator's certificate of the mesh, proved in the TLS handshake, is enough in any mode.
  if (CallerOfTlsPeer(caller.tls_peer).kind == Caller::Kind::kOperator) return absl::OkStatus();
  switch (mode_) {
    case AdminAccessMode::kAny:
      return absl::OkStatus();
    case AdminAccessMode::kLoopback:
      if (IsLoopbackAddress(caller.address)) return absl::OkStatus();
      return absl::PermissionDeniedError(
          "loading and unloading models is allowed only from the node itself (admin_access: "
          "loopback); call from the node, present an operator certificate of the mesh "
          "(hivemesh cert issue-client NAME --role operator), or set admin_access: token and "
          "admin_token_file on the node and send Authorization: Bearer <token>");
    case AdminAccessMode::kToken: {
      const std::string_view token = BearerToken(caller.authorization);
      if (token.empty()) {
        return absl::PermissionDeniedError(
            "loading and unloading models needs the node's admin token (admin_access: token): "
            "send Authorization: Bearer <the token in the node's admin_token_file>, or present "
            "an operator certificate of the mesh");
      }
      const std::array<unsigned char, 32> presented = Sha256(token);
      if (CRYPTO_memcmp(presented.data(), token_digest_.data(), presented.size()) != 0) {
        return absl::PermissionDeniedError(
            "the admin token sent is not the node's (admin_access: token): send Authorization: "
            "Bearer <the token in the node's admin_token_file>");
      }
      return absl::OkStatus();
    }
  }
  return absl::PermissionDeniedError("admin calls are not allowed");
}

bool IsLoopbackAddress(std::string_view ip) {
  if (ip.empty() || ip.size() >= INET6_ADDRSTRLEN) return false;
  char text[INET6_ADDRSTRLEN] = {};
  ip.copy(text, ip.size());
  unsigned char v4[4];
  if (inet_pton(AF_INET, text, v4) == 1) return v4[0] == 127;
  unsigned char v6[16];
  if (inet_pton(AF_INET6, text, v6) != 1) return false;
  static constexpr unsigned char kLoopback6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  static constexpr unsigned char kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::equal(v6, v6 + 16, kLoopback6)) return true;
  return std::equal(v6, v6 + 12, kMapped) && v6[12] == 127;
}

std::string AddressOfGrpcPeer(std::string_view peer) {
  if (peer.starts_with("ipv4:")) {
    std::string_view rest = peer.substr(5);
    return std::string(rest.substr(0, rest.rfind(':')));
  }
  if (peer.starts_with("ipv6:")) {
    std::string rest(peer.substr(5));
    // Newer gRPC versions percent-encode the brackets.
    for (auto [from, to] : {std::pair{"%5B", "["}, std::pair{"%5D", "]"}, std::pair{"%5b", "["},
                            std::pair{"%5d", "]"}}) {
      for (size_t at; (at = rest.find(from)) != std::string::npos;) rest.replace(at, 3, to);
    }
    const size_t open = rest.find('[');
    const size_t close = rest.find(']');
    if (open != 0 || close == std::string::npos) return {};
    std::string ip = rest.substr(1, close - 1);
    // A scope id ("fe80::1%25eth0") is not part of the address.
    if (size_t pct = ip.find('%'); pct != std::string::npos) ip.resize(pct);
    return ip;
  }
  return {};
}

absl::StatusOr<std::string> ReadAdminTokenFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(StrCat("admin_token_file: cannot read '", path, "'"));
  }
  std::stringstream text;
  text << in.rdbuf();
  std::string token = text.str();
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r' || token.back() == ' ' ||
                            token.back() == '\t')) {
    token.pop_back();
  }
  absl::Status valid = CheckTokenText(token);
  if (!valid.ok()) {
    return absl::InvalidArgumentError(StrCat("admin_token_file '", path, "': ", MessageOf(valid)));
  }
  return token;
}

}  // namespace hivemesh
