// AdminAccess: who may change a node through its APIs, checked in one place that every front end
// calls (the REST handler and the gRPC service), so that later kinds of credentials (operator
// certificates and roles) are added here and nowhere else.
//
// The calls that change a node are the repository's load and unload (REST
// POST /v2/repository/models/<m>/load|unload, gRPC RepositoryModelLoad/Unload) and the join
// tokens and revocations of an issuer node (/v1/mesh/tokens, /v1/mesh/revocations,
// api/issuer_handler.h). Everything else a client can call reads (index, metadata, health,
// statistics, /metrics, the rest of /v1/mesh/*) or infers, and needs no admin credential. The
// operator setting `admin_access` chooses the rule:
//
//   loopback  (the default) only clients connecting from the node itself: 127.0.0.0/8, ::1 and
//             ::ffff:127.0.0.0/104. Anyone else on the network is refused, whatever they send.
//   token     any address, with `Authorization: Bearer <token>` (gRPC: metadata "authorization"
//             with the same value), the token being the content of `admin_token_file`. The
//             presented token is hashed (SHA-256) and the digests compared in constant time, so
//             neither the token nor its length shows in how long a refusal takes.
//   any       no check, for labs; the agent warns at start.
//
// In every mode, a client that presents an operator certificate of the mesh over TLS
// (`hivemesh cert issue-client NAME --role operator`; api/authorization_policy.h) may.
//
// A refusal is PERMISSION_DENIED (HTTP 403) whose message says what to do.
//
// Thread safety: an AdminAccess is immutable once made; Check may be called from any thread.
#pragma once

#include <array>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace hivemesh {

enum class AdminAccessMode { kLoopback, kToken, kAny };
// "loopback" | "token" | "any".
absl::StatusOr<AdminAccessMode> AdminAccessModeFromName(std::string_view name);
std::string_view AdminAccessModeName(AdminAccessMode mode);

// Who asks for an admin call, as its front end saw it. Views: valid for the call's duration.
struct AdminCaller {
  std::string_view address;        // the peer's IP address as text ("10.0.0.7", "::1"); may be ""
  std::string_view authorization;  // the Authorization header (or gRPC metadata), or ""
  std::string_view tls_peer;       // HttpRequest::tls_peer(): "operator:<name>" for an operator
};

// Shortest admin token accepted: 16 characters of a random token are 96 bits or more.
inline constexpr size_t kMinAdminTokenLength = 16;

class AdminAccess {
 public:
  // The default: loopback.
  AdminAccess() = default;
  static AdminAccess Loopback() { return AdminAccess(); }
  static AdminAccess Any();
  // INVALID_ARGUMENT if `token` is shorter than kMinAdminTokenLength or holds a byte outside
  // printable ASCII or a space (it has to fit an HTTP header as it is).
  static absl::StatusOr<AdminAccess> Token(std::string_view token);

  AdminAccessMode mode() const { return mode_; }
  // OK if `caller` may change the node; else PERMISSION_DENIED saying what to do.
  absl::Status Check(const AdminCaller& caller) const;

 private:
  AdminAccessMode mode_ = AdminAccessMode::kLoopback;
  std::array<unsigned char, 32> token_digest_{};  // SHA-256 of the token (kToken)
};

// True for 127.0.0.0/8, ::1 and IPv4-mapped 127.0.0.0/8 (::ffff:127.x.y.z). False for anything
// that is not an IP address.
bool IsLoopbackAddress(std::string_view ip);

// The IP address in a gRPC peer string: "ipv4:127.0.0.1:5000" -> "127.0.0.1",
// "ipv6:[::1]:5000" (or "ipv6:%5B::1%5D:5000") -> "::1". Empty for other kinds of peers (unix
// sockets), which are then treated as not loopback.
std::string AddressOfGrpcPeer(std::string_view peer);

// The token of an "Authorization: Bearer <token>" value (the scheme is case-insensitive, as in
// RFC 9110), or empty.
std::string_view BearerToken(std::string_view authorization);

// Reads an admin token from `path`: the file's content without trailing whitespace, held to the
// rules of AdminAccess::Token. Errors name the file and the setting, never the token.
absl::StatusOr<std::string> ReadAdminTokenFile(const std::string& path);

}  // namespace hivemesh
