// NodeKey: a node's own Ed25519 key pair. A node signs what it says about itself with it: its
// claims in gossip (name, address, metadata, incarnation; docs/membership.md, "Who may say
// what") and its credential on requests it forwards to peers. Other nodes learn the public half
// from gossip and bind the node's name to it, so nobody else can speak for that name. The mesh's
// certificates will bind the same key to the name through a CA; the private half never leaves
// the node (it lives in the state folder, see key_file.h).
//
// Ed25519 (RFC 8032) through OpenSSL 3: 32-byte public keys, 64-byte signatures, deterministic
// signing (no randomness needed after the key exists), about 30 us to sign and 70 us to verify
// on a small x86 core.
//
// Thread safety: a NodeKey is an immutable value (copies share the OpenSSL key); Sign and the
// free functions may be called from any number of threads at once.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace hivemesh::identity {

inline constexpr size_t kPublicKeyBytes = 32;
inline constexpr size_t kSignatureBytes = 64;

class NodeKey {
 public:
  // A fresh key pair. Aborts if the OS random source fails (no safe way on).
  static NodeKey Generate();
  // The key pair whose private key is these 32 bytes (RFC 8032's seed). For tests and the
  // simulator, which want the same keys run after run; a real node uses Generate().
  // REQUIRES: seed.size() == 32.
  static NodeKey FromSeed(std::string_view seed);
  // A private key in PEM (PKCS#8, as ToPem writes it). Errors: not PEM, not an Ed25519 key.
  static absl::StatusOr<NodeKey> FromPem(std::string_view pem);

  // The private key in PEM (PKCS#8, unencrypted: protect the file, not the text).
  std::string ToPem() const;
  // The raw public key, kPublicKeyBytes bytes.
  const std::string& public_key() const { return public_key_; }
  // The signature of `message`, kSignatureBytes bytes.
  std::string Sign(std::string_view message) const;

 private:
  struct Impl;
  explicit NodeKey(std::shared_ptr<const Impl> impl);
  std::shared_ptr<const Impl> impl_;
  std::string public_key_;
};

// True if `signature` is a valid Ed25519 signature of `message` by `public_key`. Any input is
// accepted (wrong sizes are simply false). Valid results are remembered in a small process-wide
// cache, so a claim verified once (e.g. by one node of a simulated cluster, or in one push-pull)
// costs a hash, not a verification, the next time.
bool VerifySignature(std::string_view public_key, std::string_view message,
                     std::string_view signature);

// A short, stable text for a public key in logs and tables: the first 8 bytes of its SHA-256 in
// hex ("3f9a0c1d22e4b5a7"); "-" for an empty key.
std::string KeyFingerprint(std::string_view public_key);

// A fresh AES-256 key for gossip encryption (membership/keyring.h): 32 random bytes in standard
// base64 (44 characters). Aborts if the OS random source fails.
std::string NewGossipKey();

}  // namespace hivemesh::identity
