// MemberCheck: who a request from a peer comes from. The mesh's "members only" rule for
// forwarded requests rests on it (docs/security.md).
//
// A peer forwards a request with Hivemesh-Hops and names itself in Hivemesh-Origin. Neither
// header proves anything: both are text anyone can send. The origin is believed only if
//  - the request came on a mesh link opened by that very origin (AuthorizeLink, given to the
//    HTTP server as authorize_link, named the link's member; HttpRequest::link_member()), or
//  - it came over a TLS connection whose client certificate names the origin
//    (HttpRequest::tls_peer(): the server's TLS check verified the certificate), or
//  - (insecure meshes only) it came over plain HTTP with a valid request credential of its own
//    from the origin.
// AuthorizeLink opens a link for a TLS client whose certificate the server's check accepted, or
// (insecure meshes only) for an upgrade that carries a valid link credential. With require_tls
// (a node of a secure mesh), credentials are not enough: a member shows its certificate.
// Credentials (identity/member_credential.h) are signed by the key gossip bound the origin's name
// to, addressed to this node, fresh, and taken once.
//
// Refusals are PermissionDenied (403: the forwarder retries a peer that has not learnt its key
// yet, then tries elsewhere) or Unavailable when the replay memory is full (503). Forwarded
// requests refused are counted in Rejections (forward_unauthenticated, credential_replayed);
// refused link upgrades are counted by the HTTP server (link_unauthenticated).
//
// Thread safety: both calls may run on any number of threads at once.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/rejections.h"
#include "identity/member_credential.h"
#include "transport/http_server.h"

namespace hivemesh {

class MemberCheck {
 public:
  // `unix_ms`: the wall clock in Unix milliseconds (credentials carry wall-clock times).
  MemberCheck(std::shared_ptr<identity::CredentialVerifier> verifier,
              std::shared_ptr<Rejections> rejections, std::function<int64_t()> unix_ms,
              bool require_tls = false);

  // For HttpServerOptions::authorize_link: the member whose link credential the upgrade carries.
  absl::StatusOr<std::string> AuthorizeLink(const HttpRequest& upgrade) const;

  // OK if `request`, which names `origin` as its sender, comes from that member.
  absl::Status CheckForwarded(const HttpRequest& request, std::string_view origin) const;

 private:
  const std::shared_ptr<identity::CredentialVerifier> verifier_;
  const std::shared_ptr<Rejections> rejections_;
  const std::function<int64_t()> unix_ms_;
  const bool require_tls_;
};

// The wall clock in Unix milliseconds.
int64_t UnixMillisNow();

// The member a request to a members-only endpoint (the mesh's policy, revocations, gossip keys)
// comes from, over mutual TLS: the member of the mesh link it came on, or the member a TLS
// connection's certificate names (never a client's or an operator's certificate). Empty for
// anyone else. Peers' requests go on a link when one is open, so both count.
std::string_view MemberOf(const HttpRequest& request);

}  // namespace hivemesh
