#include "api/issuer_handler.h"

#include <simdjson.h>

#include <chrono>

#include "api/admin_access.h"
#include "api/authorization_policy.h"
#include "api/member_check.h"
#include "api/rest_infer.h"
#include "base/hex.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "codec/json_writer.h"
#include "codec/repository_codec.h"
#include "identity/issuer_service.h"
#include "identity/mesh_files.h"

namespace hivemesh {
namespace {

constexpr std::string_view kTokens = "/v1/mesh/tokens";
constexpr std::string_view kRevocations = "/v1/mesh/revocations";
// The signed revocations, for members (over mutual TLS) and admins.
constexpr std::string_view kRevokedKeys = "/v1/mesh/revoked-keys";
constexpr std::string_view kClientCertificates = "/v1/mesh/client-certificates";
constexpr std::string_view kRotateRoot = "/v1/mesh/ca/rotate";
constexpr std::string_view kExportRootKey = "/v1/mesh/ca/export-key";
constexpr std::string_view kRootKey = "/v1/mesh/ca/key";
constexpr std::string_view kGossipKeys = "/v1/mesh/gossip-keys";
constexpr std::string_view kRotateGossipKeys = "/v1/mesh/gossip-keys/rotate";
constexpr std::string_view kIssuers = "/v1/mesh/issuers";
constexpr std::string_view kIssuerTokens = "/v1/mesh/issuer/tokens";
// Most bytes of a token list one issuer hands another (kMaxTokens lines of ~130 bytes).
constexpr size_t kMaxTokenListBytes = 256 << 10;

int64_t Unix(identity::WallTime t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

}  // namespace

IssuerHandler::IssuerHandler(
    std::shared_ptr<identity::IssuerService> issuer, AdminAccess admin,
    std::shared_ptr<Rejections> rejections, identity::Issuer::KeyOf key_of,
    std::function<void(const std::string& name, const std::string& key)> on_revoked)
    : issuer_(std::move(issuer)),
      admin_(admin),
      rejections_(std::move(rejections)),
      key_of_(std::move(key_of)),
      on_revoked_(std::move(on_revoked)) {}

bool IssuerHandler::Handle(const HttpRequest& request, HttpResponder& respond) const {
  std::string_view path = request.target().substr(0, request.target().find('?'));
  if (path == kRevocations) {
    Revocations(request, respond);
    return true;
  }
  if (path == kRevokedKeys) {
    RevokedKeys(request, respond);
    return true;
  }
  if (path == kClientCertificates) {
    ClientCertificate(request, respond);
    return true;
  }
  if (path == kRotateRoot) {
    RotateRoot(request, respond);
    return true;
  }
  if (path == kGossipKeys) {
    GossipKeys(request, respond);
    return true;
  }
  if (path == kExportRootKey) {
    ExportRootKey(request, respond);
    return true;
  }
  if (path == kRootKey) {
    ImportRootKey(request, respond);
    return true;
  }
  if (path == kRotateGossipKeys) {
    RotateGossipKeys(request, respond);
    return true;
  }
  if (path == kIssuers) {
    Issuers(request, respond);
    return true;
  }
  if (path == kIssuerTokens) {
    LearnTokens(request, respond);
    return true;
  }
  if (!path.starts_with(kTokens)) return false;
  std::string_view id = path.substr(kTokens.size());
  if (!id.empty() && id != "/" && !id.starts_with("/")) return false;  // e.g. /v1/mesh/tokensX
  if (id.starts_with("/")) id.remove_prefix(1);
  const std::string_view method = request.method();
  if (id.empty() ? (method != "GET" && method != "POST") : method != "DELETE") {
    respond(MethodNotAllowed(method, path, id.empty() ? "GET, POST" : "DELETE"));
    return true;
  }
  if (absl::Status allowed = Allowed(request, path); !allowed.ok()) {
    respond(ErrorResponse(allowed));
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
      w.Key("role").String(t.issuer ? "issuer" : identity::RoleName(t.role));
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
  // An issuer token: a node that joins with it issues certificates too.
  const bool issuer_token = create.ok() && create->role == "issuer";
  absl::StatusOr<identity::Role> role =
      issuer_token ? identity::Role::kNode
                   : (create.ok() ? identity::ParseRole(create->role) : create.status());
  if (!role.ok()) {
    respond(ErrorResponse(role.status()));
    return true;
  }
  if (*role == identity::Role::kClient) {
    absl::StatusOr<std::string> bearer = issuer_->IssueClientToken(
        create->name, create->models, std::chrono::seconds(create->ttl_seconds), now);
    if (!bearer.ok()) {
      respond(ErrorResponse(bearer.status()));
      return true;
    }
    w.BeginObject();
    w.Key("token").String(*bearer);
    w.Key("role").String("client");
    w.Key("name").String(create->name);
    w.Key("models").BeginArray();
    for (const std::string& m : create->models) w.String(m);
    w.EndArray();
    w.Key("expires").Int(Unix(now) + create->ttl_seconds);
    w.EndObject();
    respond(JsonResponse(201, std::move(out)));
    return true;
  }
  absl::StatusOr<identity::JoinToken> token =
      issuer_->CreateToken(*role, std::chrono::seconds(create->ttl_seconds),
                           static_cast<int>(create->uses), now, issuer_token);
  if (!token.ok()) {
    respond(ErrorResponse(token.status()));
    return true;
  }
  if (on_token_) on_token_();  // the other issuers learn it before it is used there
  const std::string text = token->ToString();
  w.BeginObject();
  w.Key("token").String(text);
  w.Key("id").String(token->id);
  w.Key("role").String(issuer_token ? "issuer" : identity::RoleName(*role));
  w.Key("expires").Int(Unix(now) + create->ttl_seconds);
  w.Key("uses").Int(create->uses);
  w.EndObject();
  respond(JsonResponse(201, std::move(out)));
  return true;
}

absl::Status IssuerHandler::AdminAllowed(const HttpRequest& request, std::string_view path) const {
  const AdminCaller caller{request.remote_address(), request.header("Authorization"),
                           request.tls_peer()};
  if (absl::Status allowed = admin_.Check(caller); !allowed.ok()) {
    if (rejections_ != nullptr) {
      rejections_->Note(Rejection::kAdminDenied, caller.address,
                        StrCat(request.method(), " ", path,
                               " (admin_access: ", AdminAccessModeName(admin_.mode()), ")"));
    }
    return allowed;
  }
  return absl::OkStatus();
}

absl::Status IssuerHandler::Allowed(const HttpRequest& request, std::string_view path) const {
  HM_RETURN_IF_ERROR(AdminAllowed(request, path));
  if (issuer_ == nullptr) {
    return absl::FailedPreconditionError(
        "this node holds no issuer rights: ask the node that created the mesh");
  }
  return absl::OkStatus();
}

void IssuerHandler::Revocations(const HttpRequest& request, HttpResponder& respond) const {
  const std::string_view method = request.method();
  if (method != "GET" && method != "POST") {
    return respond(MethodNotAllowed(method, kRevocations, "GET, POST"));
  }
  if (absl::Status allowed = Allowed(request, kRevocations); !allowed.ok()) {
    return respond(ErrorResponse(allowed));
  }
  std::string out;
  JsonWriter w(out);
  if (method == "GET") {
    w.BeginObject().Key("revocations").BeginArray();
    for (const identity::IssuerService::Revocation& r : issuer_->Revocations()) {
      w.BeginObject();
      w.Key("name").String(r.name);
      w.Key("key").String(identity::KeyFingerprint(r.public_key));
      w.Key("when").Int(Unix(r.when));
      w.EndObject();
    }
    w.EndArray().EndObject();
    return respond(JsonResponse(200, std::move(out)));
  }
  const std::shared_ptr<const std::string> body = request.body();
  absl::StatusOr<RevocationRequest> asked =
      DecodeRevocationRequest(body ? std::string_view(*body) : std::string_view());
  if (!asked.ok()) return respond(ErrorResponse(asked.status()));
  if (asked->tokens) {
    const identity::WallTime now = std::chrono::system_clock::now();
    absl::StatusOr<std::pair<std::string, std::string>> revoked =
        issuer_->RevokeClientTokens(asked->name, now);
    if (!revoked.ok()) return respond(ErrorResponse(revoked.status()));
    if (on_revoked_) on_revoked_(revoked->first, revoked->second);
    w.BeginObject();
    w.Key("name").String(revoked->first);
    w.Key("client").String(asked->name);
    w.Key("tokens_issued_before").Int(Unix(now) + 1);
    w.EndObject();
    return respond(JsonResponse(201, std::move(out)));
  }
  const std::string* const name = &asked->name;
  // A client's key is given; a member's is the one gossip binds its name to.
  const std::optional<std::string> key = !asked->key.empty()
                                             ? std::optional<std::string>(asked->key)
                                             : (key_of_ ? key_of_(*name) : std::nullopt);
  if (!key) {
    return respond(ErrorResponse(absl::NotFoundError(
        StrCat("no member named ", *name, " is known with a key; nothing was revoked"))));
  }
  if (absl::Status revoked = issuer_->RevokeNode(*name, *key, std::chrono::system_clock::now());
      !revoked.ok()) {
    return respond(ErrorResponse(revoked));
  }
  if (on_revoked_) on_revoked_(*name, *key);
  w.BeginObject();
  w.Key("name").String(*name);
  w.Key("key").String(identity::KeyFingerprint(*key));
  w.EndObject();
  respond(JsonResponse(201, std::move(out)));
}

void IssuerHandler::RevokedKeys(const HttpRequest& request, HttpResponder& respond) const {
  if (request.method() != "GET")
    return respond(MethodNotAllowed(request.method(), kRevokedKeys, "GET"));
  // Members ask over mutual TLS (the certificate named them); admins as for the other calls.
  if (MemberOf(request).empty()) {
    if (absl::Status allowed = Allowed(request, kRevokedKeys); !allowed.ok()) {
      return respond(ErrorResponse(allowed));
    }
  } else if (issuer_ == nullptr) {
    return respond(ErrorResponse(
        absl::FailedPreconditionError("this node holds no issuer rights: it has revoked nothing")));
  }
  std::string out;
  JsonWriter w(out);
  w.BeginObject().Key("revoked").BeginArray();
  for (const identity::IssuerService::SignedRevocation& r : issuer_->SignedRevocations()) {
    w.BeginObject();
    w.Key("key").String(HexEncode(r.public_key));
    w.Key("name").String(r.name);
    w.Key("signature").String(HexEncode(r.signature));
    w.EndObject();
  }
  w.EndArray().EndObject();
  respond(JsonResponse(200, std::move(out)));
}

void IssuerHandler::ClientCertificate(const HttpRequest& request, HttpResponder& respond) const {
  if (request.method() != "POST") {
    return respond(MethodNotAllowed(request.method(), kClientCertificates, "POST"));
  }
  if (absl::Status allowed = Allowed(request, kClientCertificates); !allowed.ok()) {
    return respond(ErrorResponse(allowed));
  }
  const std::shared_ptr<const std::string> body = request.body();
  absl::StatusOr<ClientCertificateRequest> asked =
      DecodeClientCertificateRequest(body ? std::string_view(*body) : std::string_view());
  absl::StatusOr<identity::Role> role =
      asked.ok() ? identity::ParseRole(asked->role) : asked.status();
  if (!role.ok()) return respond(ErrorResponse(role.status()));
  absl::StatusOr<identity::Issued> issued = issuer_->IssueClient(
      asked->name, *role, asked->public_key, std::chrono::seconds(asked->ttl_seconds),
      std::chrono::system_clock::now());
  if (!issued.ok()) return respond(ErrorResponse(issued.status()));
  std::string chain = issued->cert.ToPem();
  for (const identity::Certificate& c : issued->chain) chain += c.ToPem();
  std::string roots;
  for (const identity::Certificate& c : issued->roots) roots += c.ToPem();
  std::string out;
  JsonWriter w(out);
  w.BeginObject();
  w.Key("name").String(asked->name);
  w.Key("role").String(identity::RoleName(*role));
  w.Key("spiffe_id")
      .String(StrCat("spiffe://", issued->roots[0].MeshId(), "/client/", asked->name));
  w.Key("expires").Int(Unix(issued->cert.not_after()));
  w.Key("certificate").String(chain);
  w.Key("roots").String(roots);
  w.EndObject();
  respond(JsonResponse(201, std::move(out)));
}

void IssuerHandler::RotateRoot(const HttpRequest& request, HttpResponder& respond) const {
  if (request.method() != "POST") {
    return respond(MethodNotAllowed(request.method(), kRotateRoot, "POST"));
  }
  if (absl::Status allowed = Allowed(request, kRotateRoot); !allowed.ok()) {
    return respond(ErrorResponse(allowed));
  }
  absl::StatusOr<std::string> digest =
      rotate_ ? rotate_() : absl::FailedPreconditionError("this node cannot rotate the root");
  if (!digest.ok()) return respond(ErrorResponse(digest.status()));
  std::string out;
  JsonWriter w(out);
  w.BeginObject().Key("root").String(*digest).EndObject();
  respond(JsonResponse(200, std::move(out)));
}

std::string EncodeGossipKeys(const SignedGossipKeys& keys) {
  std::string out;
  JsonWriter w(out);
  w.BeginObject();
  w.Key("version").Uint(keys.version);
  w.Key("keys").BeginArray();
  for (const std::string& k : keys.keys) w.String(k);
  w.EndArray();
  w.Key("signature").String(HexEncode(keys.signature));
  w.EndObject();
  return out;
}

absl::StatusOr<SignedGossipKeys> DecodeGossipKeys(std::string_view body) {
  constexpr size_t kMaxKeys = 8, kMaxKeyChars = 64;
  if (body.size() > 4096) return absl::InvalidArgumentError("gossip keys: the answer is too large");
  simdjson::dom::parser parser;
  simdjson::dom::object o;
  simdjson::dom::array keys;
  std::string_view signature;
  SignedGossipKeys out;
  if (parser.parse(body.data(), body.size()).get(o) != simdjson::SUCCESS ||
      o["version"].get(out.version) != simdjson::SUCCESS ||
      o["keys"].get(keys) != simdjson::SUCCESS ||
      o["signature"].get(signature) != simdjson::SUCCESS) {
    return absl::InvalidArgumentError(
        "gossip keys: not an object with version, keys and signature");
  }
  for (simdjson::dom::element e : keys) {
    std::string_view k;
    if (e.get(k) != simdjson::SUCCESS || k.empty() || k.size() > kMaxKeyChars ||
        out.keys.size() == kMaxKeys) {
      return absl::InvalidArgumentError(StrCat("gossip keys: at most ", kMaxKeys,
                                               " strings of 1 to ", kMaxKeyChars, " characters"));
    }
    out.keys.emplace_back(k);
  }
  std::optional<std::string> raw = HexDecode(signature);
  if (out.keys.empty() || !raw) {
    return absl::InvalidArgumentError("gossip keys: no keys, or a signature that is not hex");
  }
  out.signature = std::move(*raw);
  return out;
}

void IssuerHandler::GossipKeys(const HttpRequest& request, HttpResponder& respond) const {
  if (request.method() != "GET") {
    return respond(MethodNotAllowed(request.method(), kGossipKeys, "GET"));
  }
  const bool member = !MemberOf(request).empty();
  if (!member) {
    if (absl::Status allowed = AdminAllowed(request, kGossipKeys); !allowed.ok()) {
      return respond(ErrorResponse(allowed));
    }
  }
  const std::shared_ptr<const identity::MeshCredentials> mesh = current_ ? current_() : nullptr;
  if (mesh == nullptr || mesh->gossip_keys.empty()) {
    return respond(ErrorResponse(
        absl::FailedPreconditionError("this node holds no gossip keys of a secure mesh")));
  }
  if (member) {
    SignedGossipKeys keys{mesh->gossip_keys_version, mesh->gossip_keys,
                          mesh->gossip_keys_signature};
    return respond(JsonResponse(200, EncodeGossipKeys(keys)));
  }
  std::string out;
  JsonWriter w(out);
  w.BeginObject();
  w.Key("version").Uint(mesh->gossip_keys_version);
  w.Key("keys").Uint(mesh->gossip_keys.size());
  w.Key("step").Int(mesh->gossip_rotation_step);
  w.EndObject();
  respond(JsonResponse(200, std::move(out)));
}

void IssuerHandler::RotateGossipKeys(const HttpRequest& request, HttpResponder& respond) const {
  if (request.method() != "POST") {
    return respond(MethodNotAllowed(request.method(), kRotateGossipKeys, "POST"));
  }
  if (absl::Status allowed = Allowed(request, kRotateGossipKeys); !allowed.ok()) {
    return respond(ErrorResponse(allowed));
  }
  absl::StatusOr<uint64_t> version =
      rotate_keys_ ? rotate_keys_()
                   : absl::FailedPreconditionError("this node cannot rotate the gossip keys");
  if (!version.ok()) return respond(ErrorResponse(version.status()));
  std::string out;
  JsonWriter w(out);
  w.BeginObject().Key("version").Uint(*version).EndObject();
  respond(JsonResponse(200, std::move(out)));
}

void IssuerHandler::ExportRootKey(const HttpRequest& request, HttpResponder& respond) const {
  if (request.method() != "POST") {
    return respond(MethodNotAllowed(request.method(), kExportRootKey, "POST"));
  }
  if (absl::Status allowed = AdminAllowed(request, kExportRootKey); !allowed.ok()) {
    return respond(ErrorResponse(allowed));
  }
  if (!IsLoopbackAddress(request.remote_address()) &&
      CallerOfTlsPeer(request.tls_peer()).kind != Caller::Kind::kOperator) {
    if (rejections_ != nullptr) {
      rejections_->Note(Rejection::kAdminDenied, request.remote_address(),
                        StrCat("POST ", kExportRootKey, " from another host"));
    }
    return respond(ErrorResponse(absl::PermissionDeniedError(
        "the root key leaves a node only to a caller on the node itself, or one presenting an "
        "operator certificate over TLS")));
  }
  const std::shared_ptr<const std::string> body = request.body();
  simdjson::dom::parser parser;
  bool remove = true;
  if (body != nullptr && !body->empty()) {
    simdjson::dom::object o;
    if (parser.parse(*body).get(o) != simdjson::SUCCESS) {
      return respond(ErrorResponse(absl::InvalidArgumentError("the body is not a JSON object")));
    }
    if (simdjson::dom::element e;
        o["remove"].get(e) == simdjson::SUCCESS && e.get(remove) != simdjson::SUCCESS) {
      return respond(ErrorResponse(absl::InvalidArgumentError("remove: true or false")));
    }
  }
  absl::StatusOr<std::string> pem =
      export_key_ ? export_key_(remove)
                  : absl::FailedPreconditionError("this node cannot export a root key");
  if (!pem.ok()) return respond(ErrorResponse(pem.status()));
  std::string out;
  JsonWriter w(out);
  w.BeginObject().Key("key").String(*pem).Key("removed").Bool(remove).EndObject();
  respond(JsonResponse(200, std::move(out)));
}

void IssuerHandler::ImportRootKey(const HttpRequest& request, HttpResponder& respond) const {
  if (request.method() != "PUT") {
    return respond(MethodNotAllowed(request.method(), kRootKey, "PUT"));
  }
  if (absl::Status allowed = AdminAllowed(request, kRootKey); !allowed.ok()) {
    return respond(ErrorResponse(allowed));
  }
  const std::shared_ptr<const std::string> body = request.body();
  absl::Status imported = import_key_
                              ? import_key_(body ? std::string_view(*body) : std::string_view())
                              : absl::FailedPreconditionError("this node cannot take a root key");
  respond(imported.ok() ? JsonResponse(200, "{}") : ErrorResponse(imported));
}

}  // namespace hivemesh

namespace hivemesh {

void IssuerHandler::Issuers(const HttpRequest& request, HttpResponder& respond) const {
  if (request.method() != "GET")
    return respond(MethodNotAllowed(request.method(), kIssuers, "GET"));
  if (MemberOf(request).empty()) {
    if (absl::Status allowed = AdminAllowed(request, kIssuers); !allowed.ok()) {
      return respond(ErrorResponse(allowed));
    }
  }
  const std::shared_ptr<const identity::MeshCredentials> mesh = current_ ? current_() : nullptr;
  std::string pem;
  if (mesh != nullptr) {
    for (const identity::Certificate& c : identity::MeshIssuers(*mesh)) pem += c.ToPem();
  }
  HttpResponse r;
  r.status = 200;
  r.content_type = "application/x-pem-file";
  r.body = std::move(pem);
  respond(std::move(r));
}

void IssuerHandler::LearnTokens(const HttpRequest& request, HttpResponder& respond) const {
  if (request.method() != "POST") {
    return respond(MethodNotAllowed(request.method(), kIssuerTokens, "POST"));
  }
  // Only another issuer of the mesh, over mutual TLS, hands over its tokens.
  const std::string_view member = MemberOf(request);
  if (member.empty() || !is_issuer_ || !is_issuer_(member)) {
    if (rejections_ != nullptr) {
      rejections_->Note(Rejection::kAdminDenied, request.remote_address(),
                        StrCat("POST ", kIssuerTokens, " from a caller that is no issuer"));
    }
    return respond(ErrorResponse(absl::PermissionDeniedError(StrCat(
        kIssuerTokens, " takes join tokens from the mesh's issuers only, over mutual TLS"))));
  }
  if (issuer_ == nullptr) {
    return respond(
        ErrorResponse(absl::FailedPreconditionError("this node holds no issuer rights")));
  }
  const std::shared_ptr<const std::string> body = request.body();
  if (body != nullptr && body->size() > kMaxTokenListBytes) {
    return respond(ErrorResponse(absl::InvalidArgumentError(
        StrCat("a token list of ", body->size(), " bytes: at most ", kMaxTokenListBytes))));
  }
  absl::StatusOr<std::vector<identity::TokenRecord>> records =
      identity::ParseTokens(body ? std::string_view(*body) : std::string_view());
  if (!records.ok()) {
    return respond(ErrorResponse(
        absl::InvalidArgumentError(StrCat("the token list: ", MessageOf(records.status())))));
  }
  if (absl::Status learnt = issuer_->LearnTokens(*records, std::chrono::system_clock::now());
      !learnt.ok()) {
    return respond(ErrorResponse(learnt));
  }
  respond(JsonResponse(200, "{}"));
}

}  // namespace hivemesh
