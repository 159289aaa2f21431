#include "api/member_check.h"

#include <chrono>
#include <utility>

#include "api/authorization_policy.h"
#include "base/strings.h"

namespace hivemesh {

namespace {
constexpr std::string_view kTlsOnly =
    "this node takes requests from members only over mutual TLS, with a certificate of the mesh "
    "(a node started with --insecure cannot be a member of a secure mesh)";
}  // namespace

MemberCheck::MemberCheck(std::shared_ptr<identity::CredentialVerifier> verifier,
                         std::shared_ptr<Rejections> rejections, std::function<int64_t()> unix_ms,
                         bool require_tls)
    : verifier_(std::move(verifier)),
      rejections_(std::move(rejections)),
      unix_ms_(std::move(unix_ms)),
      require_tls_(require_tls) {}

absl::StatusOr<std::string> MemberCheck::AuthorizeLink(const HttpRequest& upgrade) const {
  // The TLS handshake proved the certificate's key, and the server's check named its member.
  if (!upgrade.tls_peer().empty()) {
    const Caller caller = CallerOfTlsPeer(upgrade.tls_peer());
    if (caller.kind != Caller::Kind::kMember) {
      return absl::PermissionDeniedError(StrCat("mesh links are for members of the mesh, not ",
                                                DescribeCaller(caller), "'s client certificate"));
    }
    return std::string(upgrade.tls_peer());
  }
  if (require_tls_) {
    return absl::PermissionDeniedError(
        StrCat("mesh links are for members of the mesh: ", kTlsOnly));
  }
  absl::StatusOr<std::string> member = verifier_->Verify(
      upgrade.header(identity::kCredentialHeader), identity::kPurposeLink, unix_ms_());
  if (!member.ok()) {
    return absl::PermissionDeniedError(
        StrCat("mesh links are for members of the mesh: ", MessageOf(member.status())));
  }
  return member;
}

absl::Status MemberCheck::CheckForwarded(const HttpRequest& request,
                                         std::string_view origin) const {
  auto refuse = [&](Rejection reason, std::string_view why) {
    const std::string message =
        StrCat("forwarded requests are accepted only from members of the mesh: ", why);
    rejections_->Note(reason, request.remote_address(), message);
    return absl::PermissionDeniedError(message);
  };
  if (!request.link_member().empty()) {
    if (request.link_member() == origin) return absl::OkStatus();
    return refuse(Rejection::kForwardUnauthenticated,
                  StrCat("the request names '", origin, "' as its origin on a link opened by '",
                         request.link_member(), "'"));
  }
  if (!request.tls_peer().empty()) {
    const Caller caller = CallerOfTlsPeer(request.tls_peer());
    if (caller.kind != Caller::Kind::kMember) {
      return refuse(Rejection::kForwardUnauthenticated,
                    StrCat(DescribeCaller(caller), " holds a client certificate"));
    }
    if (request.tls_peer() == origin) return absl::OkStatus();
    return refuse(Rejection::kForwardUnauthenticated,
                  StrCat("the request names '", origin, "' as its origin on a connection of '",
                         request.tls_peer(), "'"));
  }
  if (require_tls_) return refuse(Rejection::kForwardUnauthenticated, kTlsOnly);
  absl::StatusOr<std::string> member = verifier_->Verify(
      request.header(identity::kCredentialHeader), identity::kPurposeRequest, unix_ms_());
  if (!member.ok()) {
    if (absl::IsUnavailable(member.status())) {
      rejections_->Note(Rejection::kForwardUnauthenticated, request.remote_address(),
                        MessageOf(member.status()));
      return member.status();
    }
    return refuse(absl::IsAlreadyExists(member.status()) ? Rejection::kCredentialReplayed
                                                         : Rejection::kForwardUnauthenticated,
                  MessageOf(member.status()));
  }
  if (*member != origin) {
    return refuse(Rejection::kForwardUnauthenticated,
                  StrCat("the request names '", origin,
                         "' as its origin but carries the credential of '", *member, "'"));
  }
  return absl::OkStatus();
}

int64_t UnixMillisNow() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string_view MemberOf(const HttpRequest& request) {
  if (!request.link_member().empty()) return request.link_member();
  const Caller caller = CallerOfTlsPeer(request.tls_peer());
  return caller.kind == Caller::Kind::kMember ? caller.name : std::string_view();
}

}  // namespace hivemesh
