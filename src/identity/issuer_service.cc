#include "identity/issuer_service.h"

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <set>
#include <sstream>

#include "base/hex.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "identity/client_token.h"
#include "identity/key_file.h"

namespace hivemesh::identity {
namespace {

// The year 2100: later times are refused in a token record.
constexpr int64_t kMaxUnixSeconds = 4'102'444'800;

int64_t UnixSeconds(WallTime t) {
  return std::chrono::duration_cast<seconds>(t.time_since_epoch()).count();
}

template <typename T>
bool Number(std::string_view s, T* out) {
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && end == s.data() + s.size();
}

}  // namespace

std::string FormatTokens(const std::vector<TokenRecord>& tokens) {
  std::string out;
  for (const TokenRecord& t : tokens) {
    // An issuer token joins as a node with issuer rights: its role is written "issuer".
    out += StrCat("v1 ", t.id, " ", t.issuer ? "issuer" : RoleName(t.role), " ", t.secret_sha256,
                  " ", UnixSeconds(t.created), " ", UnixSeconds(t.expires), " ", t.uses, " ",
                  t.used, " ", t.revoked ? 1 : 0, " ", t.created_by, "\n");
  }
  return out;
}

absl::StatusOr<std::vector<TokenRecord>> ParseTokens(std::string_view text) {
  std::vector<TokenRecord> out;
  int line_no = 0;
  for (std::string_view line : Split(text, '\n')) {
    ++line_no;
    if (line.empty()) continue;
    const std::vector<std::string_view> f = Split(line, ' ');
    const auto bad = [&](std::string_view why) {
      return absl::InvalidArgumentError(StrCat("line ", line_no, ": ", why));
    };
    if (f.size() != 10 || f[0] != "v1") return bad("not a v1 token record of 10 fields");
    TokenRecord t;
    t.id = std::string(f[1]);
    t.issuer = f[2] == "issuer";
    if (!t.issuer) {
      HM_ASSIGN_OR_RETURN(t.role, ParseRole(f[2]));
    }
    t.secret_sha256 = std::string(f[3]);
    int64_t created = 0, expires = 0, revoked = 0;
    if (!Number(f[4], &created) || !Number(f[5], &expires) || !Number(f[6], &t.uses) ||
        !Number(f[7], &t.used) || !Number(f[8], &revoked) || t.secret_sha256.size() != 64 ||
        !HexDecode(t.secret_sha256) || t.id.size() != 8 || !HexDecode(t.id) || t.uses < 0 ||
        t.used < 0 || !CheckCertificateText(f[9], "created by").ok()) {
      return bad("a field is not what it should be");
    }
    // Times a clock holds (the system clock counts nanoseconds in 64 bits: up to 2262).
    if (created < 0 || expires < 0 || created > kMaxUnixSeconds || expires > kMaxUnixSeconds) {
      return bad("a time is out of range");
    }
    t.created = WallTime(seconds(created));
    t.expires = WallTime(seconds(expires));
    t.revoked = revoked != 0;
    t.created_by = std::string(f[9]);
    out.push_back(std::move(t));
  }
  return out;
}

IssuerService::IssuerService(std::string path, std::string revoked_path, Issuer issuer,
                             std::vector<Revocation> revocations)
    : path_(std::move(path)),
      revoked_path_(std::move(revoked_path)),
      issuer_(std::move(issuer)),
      revocations_(std::move(revocations)) {
  for (const Revocation& r : revocations_) revoked_keys_.insert(r.public_key);
}

absl::StatusOr<std::unique_ptr<IssuerService>> IssuerService::Open(const std::string& state_dir,
                                                                   const MeshCredentials& mesh,
                                                                   std::string self_name,
                                                                   seconds node_validity) {
  if (!mesh.issuer_cert || !mesh.issuer_key) {
    return absl::FailedPreconditionError("this node holds no issuer rights");
  }
  Issuer issuer(*mesh.issuer_cert, *mesh.issuer_key, mesh.roots, std::move(self_name),
                node_validity);
  issuer.UseRootKey(mesh.root_key);
  const std::string path = state_dir + "/mesh/tokens";
  if (access(path.c_str(), F_OK) == 0) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    absl::StatusOr<std::vector<TokenRecord>> tokens = ParseTokens(text.str());
    if (!tokens.ok()) {
      return absl::FailedPreconditionError(StrCat(path, ": ", MessageOf(tokens.status())));
    }
    for (const TokenRecord& t : *tokens) issuer.AddToken(t);
  }
  const std::string revoked_path = state_dir + "/mesh/revoked";
  std::vector<Revocation> revocations;
  if (access(revoked_path.c_str(), F_OK) == 0) {
    std::ifstream in(revoked_path, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    const std::string content = text.str();
    int line_no = 0;
    for (std::string_view line : Split(content, '\n')) {
      ++line_no;
      if (line.empty()) continue;
      const std::vector<std::string_view> f = Split(line, ' ');
      std::optional<std::string> key = f.size() == 4 ? HexDecode(f[1]) : std::nullopt;
      int64_t when = 0;
      if (f.size() != 4 || f[0] != "v1" || !key || key->size() != kPublicKeyBytes ||
          !Number(f[3], &when)) {
        return absl::FailedPreconditionError(
            StrCat(revoked_path, ": line ", line_no, ": not a v1 revocation"));
      }
      issuer.RevokeKey(*key);
      revocations.push_back(Revocation{*key, std::string(f[2]), WallTime(seconds(when))});
    }
  }
  return std::unique_ptr<IssuerService>(
      new IssuerService(path, revoked_path, std::move(issuer), std::move(revocations)));
}

absl::StatusOr<JoinToken> IssuerService::CreateToken(Role role, seconds ttl, int uses, WallTime now,
                                                     bool issuer) {
  if (ttl <= seconds(0)) return absl::InvalidArgumentError("ttl: must be positive");
  if (uses < 0) return absl::InvalidArgumentError("uses: must be 0 (unlimited) or more");
  if (role == Role::kClient) {
    return absl::InvalidArgumentError(
        "role: a join token is for a node or an operator node; a client gets a bearer token "
        "(IssueClientToken) or a certificate (hivemesh cert issue-client)");
  }
  absl::MutexLock lock(&mu_);
  if (issuer && !issuer_.holds_root_key()) {
    return absl::FailedPreconditionError(
        "an issuer token is made where the mesh's root key is (the node that created the mesh, "
        "or where it was imported: hivemesh ca import-key): only the root certifies an issuer");
  }
  issuer_.ForgetExpired(now);
  if (issuer_.Tokens(now).size() >= kMaxTokens) {
    return absl::ResourceExhaustedError(
        StrCat("this issuer holds ", kMaxTokens, " tokens already; revoke some or wait"));
  }
  JoinToken token = issuer_.CreateToken(role, ttl, uses, now, issuer);
  if (absl::Status saved = SaveLocked(now); !saved.ok()) {
    (void)issuer_.RevokeToken(token.id);  // never usable if it could not be kept
    return saved;
  }
  return token;
}

std::vector<TokenRecord> IssuerService::Tokens(WallTime now) const {
  absl::MutexLock lock(&mu_);
  return issuer_.Tokens(now);
}

absl::Status IssuerService::LearnTokens(const std::vector<TokenRecord>& records, WallTime now) {
  absl::MutexLock lock(&mu_);
  issuer_.ForgetExpired(now);
  std::set<std::string> known;
  for (const TokenRecord& t : issuer_.Tokens(now)) known.insert(t.id);
  for (const TokenRecord& r : records) {
    if (now >= r.expires) continue;
    // Known ones merge (uses spent, a revocation); unknown ones only while there is room.
    if (known.count(r.id) == 0) {
      if (known.size() >= kMaxTokens) continue;
      known.insert(r.id);
    }
    issuer_.AddToken(r);
  }
  return SaveLocked(now);
}

void IssuerService::UseRootKey(std::optional<NodeKey> root_key) {
  absl::MutexLock lock(&mu_);
  issuer_.UseRootKey(std::move(root_key));
}

absl::Status IssuerService::Adopt(std::string_view name, std::string_view public_key,
                                  WallTime now) {
  if (public_key.size() != kPublicKeyBytes) {
    return absl::InvalidArgumentError(StrCat("the key of ", name, " is not an Ed25519 key"));
  }
  return RevokeChecked(name, public_key, now);
}

absl::Status IssuerService::RevokeToken(std::string_view id) {
  absl::MutexLock lock(&mu_);
  HM_RETURN_IF_ERROR(issuer_.RevokeToken(id));
  return SaveLocked(std::chrono::system_clock::now());
}

absl::StatusOr<Issued> IssuerService::Join(const JoinRequest& request, WallTime now,
                                           const Issuer::KeyOf& key_of) {
  absl::MutexLock lock(&mu_);
  HM_ASSIGN_OR_RETURN(Issued issued, issuer_.Join(request, now, key_of));
  HM_RETURN_IF_ERROR(SaveLocked(now));
  return issued;
}

absl::Status IssuerService::RevokeNode(std::string_view name, std::string_view public_key,
                                       WallTime now) {
  if (public_key.size() != kPublicKeyBytes) {
    return absl::InvalidArgumentError(StrCat("the key of ", name, " is not an Ed25519 key"));
  }
  HM_RETURN_IF_ERROR(CheckCertificateText(name, "name"));
  return RevokeChecked(name, public_key, now);
}

absl::StatusOr<std::pair<std::string, std::string>> IssuerService::RevokeClientTokens(
    std::string_view client, WallTime now) {
  HM_RETURN_IF_ERROR(CheckCertificateText(client, "name"));
  std::string name = ClientTokensRevocationName(client, UnixSeconds(now));
  std::string key = ClientTokensKey(name);
  HM_RETURN_IF_ERROR(RevokeChecked(name, key, now));
  return std::make_pair(std::move(name), std::move(key));
}

int64_t IssuerService::ClientTokensRevokedBefore(std::string_view client) const {
  absl::MutexLock lock(&mu_);
  int64_t before = 0;
  for (const Revocation& r : revocations_) {
    if (std::optional<ClientTokensRevocation> t = ParseClientTokensRevocation(r.name);
        t && t->client == client) {
      before = std::max(before, t->before);
    }
  }
  return before;
}

absl::Status IssuerService::RevokeChecked(std::string_view name, std::string_view public_key,
                                          WallTime now) {
  absl::MutexLock lock(&mu_);
  if (issuer_.IsRevoked(public_key)) return absl::OkStatus();
  std::vector<Revocation> next = revocations_;
  next.push_back(Revocation{std::string(public_key), std::string(name), now});
  std::string text;
  for (const Revocation& r : next) {
    text += StrCat("v1 ", HexEncode(r.public_key), " ", r.name, " ", UnixSeconds(r.when), "\n");
  }
  HM_RETURN_IF_ERROR(ReplaceFile(revoked_path_, text, 0600));
  revocations_ = std::move(next);
  issuer_.RevokeKey(public_key);
  absl::MutexLock keys_lock(&revoked_mu_);
  revoked_keys_.emplace(public_key);
  return absl::OkStatus();
}

std::vector<IssuerService::SignedRevocation> IssuerService::SignedRevocations() const {
  absl::MutexLock lock(&mu_);
  std::vector<SignedRevocation> out;
  for (const Revocation& r : revocations_) {
    out.push_back(
        SignedRevocation{r.public_key, r.name, issuer_.SignRevocation(r.public_key, r.name)});
  }
  return out;
}

size_t IssuerService::revocation_count() const {
  absl::MutexLock lock(&revoked_mu_);
  return revoked_keys_.size();
}

bool IssuerService::IsRevoked(std::string_view public_key) const {
  absl::MutexLock lock(&revoked_mu_);
  return revoked_keys_.find(public_key) != revoked_keys_.end();
}

std::vector<IssuerService::Revocation> IssuerService::Revocations() const {
  absl::MutexLock lock(&mu_);
  return revocations_;
}

absl::StatusOr<Issued> IssuerService::Renew(const Certificate& current,
                                            const std::vector<Certificate>& chain,
                                            std::string_view proved_key, WallTime now) {
  absl::MutexLock lock(&mu_);
  return issuer_.Renew(current, chain, proved_key, now);
}

absl::StatusOr<Issued> IssuerService::IssueClient(std::string_view name, Role role,
                                                  std::string_view public_key, seconds validity,
                                                  WallTime now) {
  absl::MutexLock lock(&mu_);
  return issuer_.IssueClient(name, role, public_key, validity, now);
}

absl::StatusOr<std::string> IssuerService::IssueClientToken(std::string_view name,
                                                            const std::vector<std::string>& models,
                                                            seconds validity, WallTime now) const {
  absl::MutexLock lock(&mu_);
  return issuer_.IssueClientToken(name, models, validity, now);
}

bool IssuerService::TrustsRoot(std::string_view digest) const {
  absl::MutexLock lock(&mu_);
  for (const Certificate& root : issuer_.roots()) {
    if (root.Digest() == digest) return true;
  }
  return false;
}

void IssuerService::UseCertificates(Certificate issuer, std::vector<Certificate> roots) {
  absl::MutexLock lock(&mu_);
  issuer_.UseCertificates(std::move(issuer), std::move(roots));
}

std::string IssuerService::SignPolicy(uint64_t version, std::string_view document) const {
  absl::MutexLock lock(&mu_);
  return issuer_.SignPolicy(version, document);
}

absl::Status IssuerService::SaveLocked(WallTime now) {
  return ReplaceFile(path_, FormatTokens(issuer_.Tokens(now)), 0600);
}

}  // namespace hivemesh::identity
