#include "identity/issuer.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <cstdlib>

#include "base/hex.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "identity/client_token.h"

namespace hivemesh::identity {
namespace {

std::string Sha256Hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr) != 1) std::abort();
  return HexEncode(std::string_view(reinterpret_cast<const char*>(md), len));
}

int64_t SecondsBetween(WallTime a, WallTime b) {
  return std::chrono::duration_cast<seconds>(b - a).count();
}

absl::Status Refused(std::string_view why) {
  return absl::PermissionDeniedError(StrCat("join refused: ", why));
}

}  // namespace

Issuer::Issuer(Certificate issuer, NodeKey issuer_key, std::vector<Certificate> roots,
               std::string self_name, seconds node_validity)
    : issuer_(std::move(issuer)),
      issuer_key_(std::move(issuer_key)),
      roots_(std::move(roots)),
      ca_digest_(roots_.empty() ? "" : roots_.front().Digest()),
      self_name_(std::move(self_name)),
      node_validity_(node_validity) {}

JoinToken Issuer::CreateToken(Role role, seconds ttl, int uses, WallTime now, bool issuer) {
  JoinToken t = JoinToken::Generate(ca_digest_);
  while (tokens_.count(t.id) > 0) t = JoinToken::Generate(ca_digest_);
  TokenRecord r;
  r.id = t.id;
  r.role = role;
  r.secret_sha256 = Sha256Hex(t.secret);
  r.created = now;
  r.expires = now + ttl;
  r.uses = std::max(uses, 0);
  r.created_by = self_name_;
  r.issuer = issuer;
  tokens_.emplace(r.id, std::move(r));
  return t;
}

void Issuer::AddToken(const TokenRecord& record) {
  auto [it, inserted] = tokens_.emplace(record.id, record);
  if (inserted) return;
  it->second.used = std::max(it->second.used, record.used);
  it->second.revoked = it->second.revoked || record.revoked;
}

absl::Status Issuer::RevokeToken(std::string_view id) {
  auto it = tokens_.find(id);
  if (it == tokens_.end()) return absl::NotFoundError(StrCat("no token ", id));
  it->second.revoked = true;
  return absl::OkStatus();
}

std::vector<TokenRecord> Issuer::Tokens(WallTime now) const {
  std::vector<TokenRecord> out;
  for (const auto& [id, r] : tokens_) {
    if (now < r.expires) out.push_back(r);
  }
  return out;
}

void Issuer::ForgetExpired(WallTime now) {
  std::erase_if(tokens_, [&](const auto& e) { return now - e.second.expires > seconds(86400); });
}

absl::StatusOr<Issued> Issuer::Join(const JoinRequest& request, WallTime now, const KeyOf& key_of) {
  auto it = tokens_.find(request.token_id);
  // The same answer for an unknown id and a wrong secret: a guess learns nothing.
  if (it == tokens_.end()) return Refused("unknown token or wrong secret");
  TokenRecord& token = it->second;
  const std::string presented = Sha256Hex(request.token_secret);
  if (presented.size() != token.secret_sha256.size() ||
      CRYPTO_memcmp(presented.data(), token.secret_sha256.data(), presented.size()) != 0) {
    return Refused("unknown token or wrong secret");
  }
  if (token.revoked) return Refused(StrCat("token ", token.id, " was revoked"));
  if (now >= token.expires) {
    return Refused(
        StrCat("token ", token.id, " expired ", SecondsBetween(token.expires, now), " s ago"));
  }
  if (token.uses > 0 && token.used >= token.uses) {
    return Refused(StrCat("token ", token.id, " is used up (", token.uses, " uses)"));
  }
  HM_RETURN_IF_ERROR(CheckNodeIdentity(request.name, request.labels, request.public_key));
  if (IsRevoked(request.public_key)) return Refused("this node's key was revoked");
  if (key_of) {
    const std::optional<std::string> bound = key_of(request.name);
    if (bound.has_value() && *bound != request.public_key) {
      return absl::AlreadyExistsError(StrCat("join refused: the name ", request.name,
                                             " belongs to another node's key (",
                                             KeyFingerprint(*bound), ")"));
    }
  }
  if (token.issuer) {
    if (!root_key_ || roots_.empty() || root_key_->public_key() != roots_.front().public_key()) {
      return absl::FailedPreconditionError(
          StrCat("join refused: token ", token.id,
                 " grants issuer rights, which only the node holding the mesh's root key gives: "
                 "join through it"));
    }
    if (request.issuer_key.size() != kPublicKeyBytes) {
      return absl::InvalidArgumentError(
          StrCat("join refused: token ", token.id,
                 " grants issuer rights and the request carries no issuer key"));
    }
  }
  NodeIdentity who;
  who.name = request.name;
  who.role = token.role;
  who.labels = request.labels;
  who.public_key = request.public_key;
  HM_ASSIGN_OR_RETURN(Issued issued, Issue(who, now));
  if (token.issuer) {
    issued.issuer_cert =
        MakeIssuerCertificate(request.issuer_key, request.name, roots_.front(), *root_key_, now);
  }
  ++token.used;
  return issued;
}

absl::StatusOr<Issued> Issuer::Renew(const Certificate& current,
                                     const std::vector<Certificate>& chain,
                                     std::string_view proved_key, WallTime now) {
  HM_ASSIGN_OR_RETURN(NodeIdentity id,
                      VerifyNodeCertificate(current, chain, roots_, now, /*allow_expired=*/true));
  if (id.public_key != proved_key) {
    return absl::PermissionDeniedError(
        StrCat("renewal refused: ", id.name, "'s certificate is not for the key that was proved"));
  }
  if (IsRevoked(id.public_key)) {
    return absl::PermissionDeniedError(StrCat("renewal refused: ", id.name, " was revoked"));
  }
  // A certificate signed by an issuer since revoked proves nothing (it may have been made with a
  // stolen issuer key): that node joins again with a token.
  for (const Certificate& above : chain) {
    if (current.SignedBy(above) && IsRevoked(above.public_key())) {
      return absl::PermissionDeniedError(StrCat("renewal refused: ", id.name,
                                                "'s certificate was signed by a revoked issuer (",
                                                above.CommonName(), "); join again with a token"));
    }
  }
  if (id.client) {
    return absl::PermissionDeniedError(
        StrCat("renewal refused: ", id.name,
               " holds a client certificate, which is not renewed; issue a new one "
               "(hivemesh cert issue-client)"));
  }
  if (now - id.not_after > kMaxOffline) {
    return absl::PermissionDeniedError(
        StrCat("renewal refused: ", id.name, "'s certificate expired ",
               SecondsBetween(id.not_after, now) / 86400, " days ago; join again with a token"));
  }
  return Issue(id, now);
}

void Issuer::RevokeKey(std::string_view public_key) { revoked_keys_.emplace(public_key); }

std::string RevocationMessage(std::string_view public_key, std::string_view name) {
  std::string m = "hivemesh revocation v1";
  m += '\0';
  m.append(public_key);
  m += '\0';
  m.append(name);
  return m;
}

bool VerifyRevocation(const Certificate& issuer, std::string_view public_key, std::string_view name,
                      std::string_view signature) {
  return issuer.is_ca() &&
         VerifySignature(issuer.public_key(), RevocationMessage(public_key, name), signature);
}

std::string Issuer::SignRevocation(std::string_view public_key, std::string_view name) const {
  return issuer_key_.Sign(RevocationMessage(public_key, name));
}

std::string PolicyMessage(uint64_t version, std::string_view document) {
  std::string m = "hivemesh policy v1";
  m += '\0';
  m += std::to_string(version);
  m += '\0';
  m.append(document);
  return m;
}

bool VerifyPolicy(const Certificate& issuer, uint64_t version, std::string_view document,
                  std::string_view signature) {
  return issuer.is_ca() &&
         VerifySignature(issuer.public_key(), PolicyMessage(version, document), signature);
}

std::string GossipKeysMessage(uint64_t version, const std::vector<std::string>& keys) {
  std::string m = "hivemesh gossip keys v1";
  m += '\0';
  m += std::to_string(version);
  for (const std::string& k : keys) {
    m += '\0';
    m += k;
  }
  return m;
}

bool VerifyGossipKeys(const Certificate& issuer, uint64_t version,
                      const std::vector<std::string>& keys, std::string_view signature) {
  return issuer.is_ca() &&
         VerifySignature(issuer.public_key(), GossipKeysMessage(version, keys), signature);
}

std::string Issuer::SignPolicy(uint64_t version, std::string_view document) const {
  return issuer_key_.Sign(PolicyMessage(version, document));
}

absl::StatusOr<Issued> Issuer::IssueClient(std::string_view name, Role role,
                                           std::string_view public_key, seconds validity,
                                           WallTime now) {
  if (role == Role::kNode) {
    return absl::InvalidArgumentError(
        "role: a client certificate is of role client or operator; nodes join with a token");
  }
  if (validity <= seconds(0) || validity > kMaxClientValidity) {
    return absl::InvalidArgumentError(
        StrCat("ttl: must be positive and at most ", kMaxClientValidity.count() / 86400, " days"));
  }
  if (IsRevoked(public_key)) {
    return absl::PermissionDeniedError("the key was revoked; make a new one");
  }
  NodeIdentity who;
  who.name = std::string(name);
  who.role = role;
  who.public_key = std::string(public_key);
  who.client = true;
  HM_ASSIGN_OR_RETURN(Certificate cert,
                      IssueNodeCertificate(who, issuer_, issuer_key_, now, validity));
  return Issued{std::move(cert), {issuer_}, roots_};
}

absl::StatusOr<std::string> Issuer::IssueClientToken(std::string_view name,
                                                     const std::vector<std::string>& models,
                                                     seconds validity, WallTime now) const {
  const int64_t issued = std::chrono::duration_cast<seconds>(now.time_since_epoch()).count();
  ClientToken token{issuer_.MeshId(), std::string(name), models, issued, issued + validity.count()};
  return SignClientToken(token, issuer_key_);
}

void Issuer::UseCertificates(Certificate issuer, std::vector<Certificate> roots) {
  issuer_ = std::move(issuer);
  roots_ = std::move(roots);
  ca_digest_ = roots_.empty() ? "" : roots_.front().Digest();
}

bool Issuer::IsRevoked(std::string_view public_key) const {
  return revoked_keys_.find(public_key) != revoked_keys_.end();
}

absl::StatusOr<Issued> Issuer::Issue(const NodeIdentity& who, WallTime now) {
  HM_ASSIGN_OR_RETURN(Certificate cert,
                      IssueNodeCertificate(who, issuer_, issuer_key_, now, node_validity_));
  return Issued{std::move(cert), {issuer_}, roots_};
}

}  // namespace hivemesh::identity
