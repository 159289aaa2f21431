#include "identity/client_token.h"

#include <openssl/sha.h>
#include <simdjson.h>

#include "absl/strings/escaping.h"
#include "base/status_macros.h"
#include "base/strings.h"

namespace hivemesh::identity {
namespace {

constexpr std::string_view kSignedPrefix{"hivemesh client token v1\0", 25};
constexpr size_t kMaxModels = 64;

std::string Base64Url(std::string_view bytes) {
  return absl::WebSafeBase64Escape(std::string(bytes));
}

bool FromBase64Url(std::string_view text, std::string* out) {
  return absl::WebSafeBase64Unescape(std::string(text), out);
}

// A model pattern: 1 to 128 of [A-Za-z0-9._-], optionally ending with '*'.
bool ValidPattern(std::string_view p) {
  if (p.empty() || p.size() > 128) return false;
  if (p.back() == '*') p.remove_suffix(1);
  for (const char c : p) {
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
          c == '_' || c == '-')) {
      return false;
    }
  }
  return true;
}

absl::Status CheckToken(const ClientToken& t) {
  HM_RETURN_IF_ERROR(CheckCertificateText(t.subject, "name"));
  if (t.models.empty() || t.models.size() > kMaxModels) {
    return absl::InvalidArgumentError(
        StrCat("models: a client token names 1 to ", kMaxModels, " models ('*': every model)"));
  }
  for (const std::string& m : t.models) {
    if (!ValidPattern(m)) {
      return absl::InvalidArgumentError(StrCat("models: '", m, "' is not a model name"));
    }
  }
  if (t.expires <= t.issued || t.expires - t.issued > kMaxClientTokenLife.count()) {
    return absl::InvalidArgumentError(
        StrCat("ttl: must be positive and at most ", kMaxClientTokenLife.count() / 86400, " days"));
  }
  return absl::OkStatus();
}

absl::Status Refused(std::string_view why) {
  return absl::PermissionDeniedError(StrCat("the bearer token is refused: ", why));
}

}  // namespace

bool ClientToken::Covers(std::string_view model) const {
  for (const std::string& m : models) {
    if (!m.empty() && m.back() == '*'
            ? model.starts_with(std::string_view(m).substr(0, m.size() - 1))
            : model == m) {
      return true;
    }
  }
  return false;
}

absl::StatusOr<std::string> SignClientToken(const ClientToken& token, const NodeKey& issuer_key) {
  HM_RETURN_IF_ERROR(CheckToken(token));
  for (const char c : token.mesh_id) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return absl::InvalidArgumentError("mesh: not a mesh id");
    }
  }
  // Every string was checked to hold only [A-Za-z0-9._*-]: none needs escaping.
  std::string payload =
      StrCat("{\"mesh\":\"", token.mesh_id, "\",\"sub\":\"", token.subject, "\",\"models\":[");
  for (size_t i = 0; i < token.models.size(); ++i) {
    payload += StrCat(i > 0 ? "," : "", "\"", token.models[i], "\"");
  }
  payload += StrCat("],\"iat\":", token.issued, ",\"exp\":", token.expires, "}");
  const std::string signature = issuer_key.Sign(StrCat(kSignedPrefix, payload));
  std::string text = StrCat(kClientTokenPrefix, Base64Url(payload), ".", Base64Url(signature));
  if (text.size() > kMaxClientTokenBytes) {
    return absl::InvalidArgumentError(StrCat("models: the token would take ", text.size(),
                                             " bytes, more than ", kMaxClientTokenBytes));
  }
  return text;
}

absl::StatusOr<ClientToken> VerifyClientToken(std::string_view text,
                                              const std::vector<Certificate>& issuers,
                                              std::string_view mesh_id, int64_t now_unix) {
  if (!text.starts_with(kClientTokenPrefix)) return Refused("not a client token (HMC1.)");
  if (text.size() > kMaxClientTokenBytes) return Refused("too long");
  text.remove_prefix(kClientTokenPrefix.size());
  const size_t dot = text.find('.');
  std::string payload, signature;
  if (dot == std::string_view::npos || !FromBase64Url(text.substr(0, dot), &payload) ||
      !FromBase64Url(text.substr(dot + 1), &signature)) {
    return Refused("malformed");
  }
  // The signature first: nothing of an unsigned payload is read.
  const std::string message = StrCat(kSignedPrefix, payload);
  bool signed_by_issuer = false;
  for (const Certificate& issuer : issuers) {
    signed_by_issuer = signed_by_issuer ||
                       (issuer.is_ca() && VerifySignature(issuer.public_key(), message, signature));
  }
  if (!signed_by_issuer) return Refused("not signed by an issuer of this mesh");
  simdjson::dom::parser parser;
  simdjson::dom::object o;
  simdjson::dom::array models;
  std::string_view mesh, subject;
  ClientToken t;
  if (parser.parse(payload).get(o) != simdjson::SUCCESS ||
      o["mesh"].get(mesh) != simdjson::SUCCESS || o["sub"].get(subject) != simdjson::SUCCESS ||
      o["models"].get(models) != simdjson::SUCCESS || o["iat"].get(t.issued) != simdjson::SUCCESS ||
      o["exp"].get(t.expires) != simdjson::SUCCESS) {
    return Refused("malformed payload");
  }
  t.mesh_id = std::string(mesh);
  t.subject = std::string(subject);
  for (simdjson::dom::element m : models) {
    std::string_view name;
    if (m.get(name) != simdjson::SUCCESS) return Refused("malformed payload");
    t.models.emplace_back(name);
  }
  if (!CheckToken(t).ok()) return Refused("malformed payload");
  if (t.mesh_id != mesh_id) return Refused("it is another mesh's");
  if (now_unix >= t.expires) return Refused(StrCat("it expired ", now_unix - t.expires, " s ago"));
  return t;
}

namespace {
constexpr std::string_view kTokensPrefix = "tokens:";
}  // namespace

std::string ClientTokensRevocationName(std::string_view client, int64_t before) {
  return StrCat(kTokensPrefix, client, "@", before);
}

std::string ClientTokensKey(std::string_view revocation_name) {
  const std::string labelled =
      StrCat("hivemesh client tokens", std::string_view("\0", 1), revocation_name);
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(labelled.data()), labelled.size(), digest);
  return std::string(reinterpret_cast<const char*>(digest), sizeof digest);
}

std::optional<ClientTokensRevocation> ParseClientTokensRevocation(std::string_view name) {
  if (!name.starts_with(kTokensPrefix)) return std::nullopt;
  name.remove_prefix(kTokensPrefix.size());
  const size_t at = name.rfind('@');
  if (at == std::string_view::npos || at == 0) return std::nullopt;
  std::optional<uint64_t> before = ParseUint(name.substr(at + 1));
  if (!before || !CheckCertificateText(name.substr(0, at), "name").ok()) return std::nullopt;
  return ClientTokensRevocation{std::string(name.substr(0, at)), static_cast<int64_t>(*before)};
}

}  // namespace hivemesh::identity
