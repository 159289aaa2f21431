#include "identity/peer_verifier.h"

#include <openssl/sha.h>

#include <algorithm>

#include "identity/tls_context.h"

namespace hivemesh::identity {
namespace {

constexpr std::chrono::minutes kRemember{10};

std::string Sha256(std::string_view bytes) {
  std::string out(SHA256_DIGEST_LENGTH, '\0');
  SHA256(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(),
         reinterpret_cast<unsigned char*>(out.data()));
  return out;
}

}  // namespace

absl::StatusOr<NodeIdentity> PeerVerifier::Verify(const std::vector<std::string>& chain,
                                                  const std::vector<Certificate>& intermediates,
                                                  const std::vector<Certificate>& roots,
                                                  WallTime now) {
  if (chain.empty()) return absl::PermissionDeniedError("no certificate");
  const std::string digest = Sha256(chain.front());
  uint64_t generation = 0;
  {
    absl::MutexLock lock(&mu_);
    generation = generation_;
    auto it = known_.find(digest);
    if (it != known_.end()) {
      if (now < it->second.until && now >= it->second.who.not_before) return it->second.who;
      known_.erase(it);
    }
  }
  // The first certificate is the one whose key the handshake proved: it must be the leaf.
  absl::StatusOr<Certificate> leaf = Certificate::FromDer(chain.front());
  if (!leaf.ok()) return absl::PermissionDeniedError("the certificate does not parse");
  std::vector<Certificate> through =
      CertificatesFromDer(std::vector<std::string>(chain.begin() + 1, chain.end()));
  through.insert(through.end(), intermediates.begin(), intermediates.end());
  absl::StatusOr<NodeIdentity> who = VerifyNodeCertificate(*leaf, through, roots, now);
  absl::MutexLock lock(&mu_);
  ++verifications_;
  // Not remembered if the trust changed meanwhile (Clear): it was checked against old roots.
  if (!who.ok() || generation != generation_) return who;
  // Remembered while every certificate that could be in its chain is valid.
  WallTime until = std::min(who->not_after, now + kRemember);
  for (const Certificate& c : through) until = std::min(until, c.not_after());
  if (known_.size() >= capacity_) known_.clear();
  known_[digest] = Entry{*who, until};
  return who;
}

void PeerVerifier::Clear() {
  absl::MutexLock lock(&mu_);
  known_.clear();
  ++generation_;
}

size_t PeerVerifier::verifications() const {
  absl::MutexLock lock(&mu_);
  return verifications_;
}

}  // namespace hivemesh::identity
