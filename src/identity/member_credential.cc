#include "identity/member_credential.h"

#include <openssl/rand.h>
#include <algorithm>

#include <charconv>
#include <cstdio>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "base/hex.h"
#include "base/strings.h"

namespace hivemesh::identity {
namespace {

constexpr std::string_view kVersion = "v1";

std::string SignedBytes(std::string_view origin, std::string_view target, std::string_view purpose,
                        std::string_view unix_ms, std::string_view nonce) {
  std::string out = "hivemesh member credential v1";
  for (std::string_view part : {origin, target, purpose, unix_ms, nonce}) {
    out.push_back('\0');
    out.append(part);
  }
  return out;
}

absl::Status Refused(std::string_view why) {
  return absl::UnauthenticatedError(StrCat("member credential refused: ", why));
}

}  // namespace

std::string MakeCredential(const NodeKey& key, std::string_view origin, std::string_view target,
                           std::string_view purpose, int64_t unix_ms, uint64_t nonce) {
  char nonce_hex[17];
  std::snprintf(nonce_hex, sizeof nonce_hex, "%016llx", static_cast<unsigned long long>(nonce));
  const std::string ms = StrCat(unix_ms);
  const std::string sig = key.Sign(SignedBytes(origin, target, purpose, ms, nonce_hex));
  return StrCat(kVersion, " ", origin, " ", purpose, " ", ms, " ", nonce_hex, " ", HexEncode(sig));
}

uint64_t RandomNonce() {
  uint64_t n = 0;
  if (RAND_bytes(reinterpret_cast<unsigned char*>(&n), sizeof n) != 1) {
    std::fprintf(stderr, "hivemesh: RAND_bytes failed\n");
    std::abort();
  }
  return n;
}

CredentialVerifier::CredentialVerifier(Options options, KeyLookup keys)
    : options_(std::move(options)), keys_(std::move(keys)) {}

absl::StatusOr<std::string> CredentialVerifier::Verify(std::string_view header,
                                                       std::string_view purpose,
                                                       int64_t now_unix_ms) {
  if (header.empty()) return Refused(StrCat("no ", kCredentialHeader, " field"));
  const std::vector<std::string_view> parts = Split(header, ' ');
  if (parts.size() != 6 || parts[0] != kVersion) return Refused("malformed");
  const std::string_view origin = parts[1], claimed_purpose = parts[2], ms = parts[3],
                         nonce = parts[4], sig_hex = parts[5];
  if (claimed_purpose != purpose) {
    return Refused(StrCat("made for '", claimed_purpose, "', not '", purpose, "'"));
  }
  const std::optional<uint64_t> when = ParseUint(ms);
  if (!when || *when > static_cast<uint64_t>(INT64_MAX) || nonce.size() != 16 ||
      !HexDecode(nonce) || origin.empty()) {
    return Refused("malformed");
  }
  const int64_t t = static_cast<int64_t>(*when);
  const int64_t skew = options_.max_skew.count();
  now_unix_ms = std::max<int64_t>(now_unix_ms, 0);
  // Subtraction of two values within [0, INT64_MAX]: cannot overflow.
  if (t > now_unix_ms ? t - now_unix_ms > skew : now_unix_ms - t > skew) {
    return Refused(StrCat("made at ", t, " ms, more than ", skew,
                          " ms from this node's clock (are both clocks set? NTP)"));
  }
  const std::optional<std::string> sig = HexDecode(sig_hex);
  if (!sig) return Refused("malformed");
  const std::optional<std::string> key = keys_(origin);
  if (!key) {
    return Refused(StrCat("'", origin, "' is not a live member this node knows (yet)"));
  }
  if (!VerifySignature(*key, SignedBytes(origin, options_.self, purpose, ms, nonce), *sig)) {
    return Refused(StrCat("the signature is not '", origin, "''s for this node"));
  }
  std::string seen_key = StrCat(origin, " ", nonce);
  absl::MutexLock lock(&mu_);
  // Forget what can no longer be replayed: made more than max_skew ago.
  while (!order_.empty() && order_.front().unix_ms < now_unix_ms - skew) {
    seen_.erase(order_.front().key);
    order_.pop_front();
  }
  if (seen_.count(seen_key) > 0) {
    return absl::AlreadyExistsError(
        StrCat("member credential refused: already used (a replay of '", origin, "''s)"));
  }
  if (seen_.size() >= options_.max_remembered) {
    return absl::UnavailableError(
        "member credential refused: too many credentials to remember within the clock skew; "
        "retry shortly");
  }
  seen_.insert(seen_key);
  order_.push_back(Seen{t, std::move(seen_key)});
  return std::string(origin);
}

size_t CredentialVerifier::remembered() const {
  absl::MutexLock lock(&mu_);
  return seen_.size();
}

}  // namespace hivemesh::identity
