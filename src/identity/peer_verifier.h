// PeerVerifier: checks the certificates a peer presents in a TLS handshake (docs/identity.md,
// "Mutual TLS between nodes") and remembers what it found. A chain is verified once; the next
// handshake with the same certificate (a link opened again, a new pooled connection, a resumed
// session) costs a SHA-256 of its DER instead of parsing it and checking two signatures.
//
// What is remembered is only a success, and only until the first certificate of the chain ends
// (or 10 minutes, whichever is first): a time past it verifies again, and fails. The caller
// still checks, every time, what can change without the certificate changing: revocations, and
// the key gossip binds the name to. Clear() forgets everything (the roots changed).
//
// Pure: the time is passed in. Thread safety: every method may be called from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "identity/certs.h"

namespace hivemesh::identity {

class PeerVerifier {
 public:
  // At most `capacity` certificates are remembered; past it, the memory starts over.
  explicit PeerVerifier(size_t capacity = 1024) : capacity_(capacity) {}

  // What the node certificate `chain[0]` says, if it chains to one of `roots` through the rest
  // of `chain` or `intermediates` (the verifying node's own issuer: a resumed session shows only
  // the peer's own certificate), every certificate valid at `now` (DER each, as sent).
  absl::StatusOr<NodeIdentity> Verify(const std::vector<std::string>& chain,
                                      const std::vector<Certificate>& intermediates,
                                      const std::vector<Certificate>& roots, WallTime now);
  void Clear();
  // Chains verified in full so far (not answered from memory).
  size_t verifications() const;

 private:
  struct Entry {
    NodeIdentity who;
    WallTime until;
  };
  const size_t capacity_;
  mutable absl::Mutex mu_;
  std::unordered_map<std::string, Entry> known_ ABSL_GUARDED_BY(mu_);  // by SHA-256 of the leaf
  size_t verifications_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;  // Clear() calls so far
};

}  // namespace hivemesh::identity
