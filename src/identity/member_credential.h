// Member credentials: a node's proof, on a request it forwards (or on the mesh link it opens),
// that it is the member it names, addressed to the one node it names. It travels as one header
// field:
//
//   Hivemesh-Credential: v1 <origin> <purpose> <unix ms> <nonce: 16 hex> <signature: hex>
//
// The signature is the origin's node key (node_key.h) over a domain tag and every field but
// itself, plus the target's name, which is not sent: the receiver puts its own. So a credential
// cannot be moved to another node, to another purpose ("link" for a mesh link's upgrade,
// "request" for one plain HTTP request), or past its time: a receiver takes it only within
// max_skew of its own clock, only once (it remembers the nonces it took for as long as they
// are fresh), and only if the origin's key is the one gossip bound the origin's name to.
//
// What a credential does not do: hide or protect what follows it on a plaintext connection.
// Someone who can read and write the traffic between two nodes can take over a link after it
// was opened; mutual TLS between nodes is what closes that. A credential stops everyone else
// (anyone who merely reaches the port) from posing as a member.
//
// Thread safety: MakeCredential is a pure function. A CredentialVerifier may be used from any
// number of threads at once (its replay memory has a lock of its own); the key lookup it is
// given is called under no lock of the verifier's and must be thread-safe.
#pragma once

#include "absl/synchronization/mutex.h"

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "identity/node_key.h"

namespace hivemesh::identity {

inline constexpr std::string_view kCredentialHeader = "Hivemesh-Credential";
inline constexpr std::string_view kPurposeLink = "link";
inline constexpr std::string_view kPurposeRequest = "request";

// The header value that proves `origin` (who holds `key`) to `target` for `purpose`, made at
// `unix_ms` with a random `nonce`. Names and purposes must not contain spaces (node names never
// do: they are validated at start-up).
std::string MakeCredential(const NodeKey& key, std::string_view origin, std::string_view target,
                           std::string_view purpose, int64_t unix_ms, uint64_t nonce);
// A random nonce for MakeCredential (OpenSSL's generator). Aborts if the OS random source fails.
uint64_t RandomNonce();

class CredentialVerifier {
 public:
  struct Options {
    std::string self;  // this node's name: credentials must be addressed to it
    // Clocks of members may differ by this much (NTP keeps a LAN within milliseconds); it is
    // also how long a credential is worth replaying, and so how long nonces are remembered.
    std::chrono::milliseconds max_skew{60000};
    // Nonces remembered at most (16 bytes each with their time). Plain forwarded requests take
    // one each and links one per connection; past this many within max_skew, credentials are
    // refused (Unavailable) until older ones expire, rather than remembered without bound.
    size_t max_remembered = 1 << 17;
  };
  // The public key gossip bound `member`'s name to, if it is a live member.
  using KeyLookup = std::function<std::optional<std::string>(std::string_view member)>;

  CredentialVerifier(Options options, KeyLookup keys);

  // The member a credential header proves for `purpose`, checked at the receiver's wall-clock
  // time `now_unix_ms`. Errors (the message says which, for the client and the log):
  //  - Unauthenticated: missing or malformed, another purpose or target, outside max_skew, an
  //    unknown origin (not a live member, or one this node has not heard of yet), a signature
  //    that does not verify;
  //  - AlreadyExists: a credential already taken once (a replay);
  //  - Unavailable: too many credentials within max_skew to remember another.
  // Only a credential that passes every check is remembered.
  absl::StatusOr<std::string> Verify(std::string_view header, std::string_view purpose,
                                     int64_t now_unix_ms);

  size_t remembered() const;

 private:
  struct Seen {
    int64_t unix_ms;
    std::string key;  // origin + nonce
  };
  const Options options_;
  const KeyLookup keys_;
  mutable absl::Mutex mu_;
  std::deque<Seen> order_ ABSL_GUARDED_BY(mu_);  // by time taken (roughly by credential time)
  std::unordered_set<std::string> seen_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hivemesh::identity
