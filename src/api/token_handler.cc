#include "api/token_handler.h"

#include <chrono>

#include "api/rest_infer.h"
#include "base/strings.h"
#include "codec/json_writer.h"
#include "codec/repository_codec.h"
#include "identity/issuer_service.h"

namespace hivemesh {
namespace {

constexpr std::string_view kTokens = "/v1/mesh/tokens";

int64_t Unix(identity::WallTime t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

}  // namespace

TokenHandler::TokenHandler(std::shared_ptr<identity::IssuerService> issuer, AdminAccess admin,
                           std::shared_ptr<Rejections> rejections)
    : issuer_(std::move(issuer)), admin_(admin), rejections_(std::move(rejections)) {}

bool TokenHandler::Handle(const HttpRequest& request, HttpResponder& respond) const {
  std::string_view path = request.target().substr(0, request.target().find('?'));
  if (!path.starts_with(kTokens)) return false;
  std::string_view id = path.substr(kTokens.size());
  if (!id.empty() && id != "/" && !id.starts_with("/")) return false;  // e.g. /v1/mesh/tokensX
  if (id.starts_with("/")) id.remove_prefix(1);
  const std::string_view method = request.method();
  if (id.empty() ? (method != "GET" && method != "POST") : method != "DELETE") {
    respond(MethodNotAllowed(method, path, id.empty() ? "GET, POST" : "DELETE"));
    return true;
  }
  const AdminCaller caller{request.remote_address(), request.header("Authorization")};
  if (absl::Status allowed = admin_.Check(caller); !allowed.ok()) {
    if (rejections_ != nullptr) {
      rejections_->Note(
          Rejection::kAdminDenied, caller.address,
          StrCat(method, " ", path, " (admin_access: ", AdminAccessModeName(admin_.mode()), ")"));
    }
    respond(ErrorResponse(allowed));
    return true;
  }
  if (issuer_ == nullptr) {
    respond(ErrorResponse(absl::FailedPreconditionError(
        "this node holds no issuer rights: ask the node that created the mesh")));
    return true;
  }
  const identity::WallTime now = std::chrono::system_clock::now();
  std::string out;
  JsonWriter w(out);
  if (method == "DELETE") {
    absl::Status revoked = issuer_->RevokeToken(id);
    respond(revoked.ok() ? JsonResponse(200, "{}") : ErrorResponse(revoked));
    return true;
  }
  if (method == "GET") {
    w.BeginObject().Key("tokens").BeginArray();
    for (const identity::TokenRecord& t : issuer_->Tokens(now)) {
      w.BeginObject();
      w.Key("id").String(t.id);
      w.Key("role").String(identity::RoleName(t.role));
      w.Key("created").Int(Unix(t.created));
      w.Key("expires").Int(Unix(t.expires));
      w.Key("uses").Int(t.uses);
      w.Key("used").Int(t.used);
      w.Key("revoked").Bool(t.revoked);
      w.Key("created_by").String(t.created_by);
      w.EndObject();
    }
    w.EndArray().EndObject();
    respond(JsonResponse(200, std::move(out)));
    return true;
  }
  const std::shared_ptr<const std::string> body = request.body();
  absl::StatusOr<TokenCreateRequest> create =
      DecodeTokenCreateRequest(body ? std::string_view(*body) : std::string_view());
  absl::StatusOr<identity::Role> role =
      create.ok() ? identity::ParseRole(create->role) : create.status();
  if (!role.ok()) {
    respond(ErrorResponse(role.status()));
    return true;
  }
  if (create->uses > 1000000) {
    respond(ErrorResponse(absl::InvalidArgumentError("'uses' must be at most 1000000")));
    return true;
  }
  absl::StatusOr<identity::JoinToken> token = issuer_->CreateToken(
      *role, std::chrono::seconds(create->ttl_seconds), static_cast<int>(create->uses), now);
  if (!token.ok()) {
    respond(ErrorResponse(token.status()));
    return true;
  }
  const std::string text = token->ToString();
  w.BeginObject();
  w.Key("token").String(text);
  w.Key("id").String(token->id);
  w.Key("role").String(identity::RoleName(*role));
  w.Key("expires").Int(Unix(now) + create->ttl_seconds);
  w.Key("uses").Int(create->uses);
  w.EndObject();
  respond(JsonResponse(201, std::move(out)));
  return true;
}

}  // namespace hivemesh
