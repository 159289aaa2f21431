// Keyring: symmetric encryption of gossip packets with AES-GCM (OpenSSL EVP), in the packet format
// of HashiCorp memberlist's encryption version 1:
//
//   [version: u8 = kVersion] [nonce: 12 random bytes] [ciphertext] [tag: 16 bytes]
//
// The key size picks the cipher: 16, 24 or 32 bytes -> AES-128/192/256-GCM. The ciphertext is as
// long as the plaintext, so a sealed packet is exactly kOverhead bytes longer.
//
// Rotation without downtime: the first key (the primary) encrypts, every key decrypts. Rotate by
// (1) adding the new key second on every node, (2) making it first everywhere, (3) removing the
// old key once no node seals with it.
//
// The label is authenticated but not sent (GCM additional data): two clusters that happen to
// share a key, but not a label, cannot read or inject each other's packets.
//
// Nonces are random (RAND_bytes). With 96-bit random nonces one key may seal about 2^32 packets
// before a nonce collision becomes a real risk (NIST SP 800-38D); a node gossiping 100 packets a
// second takes over a year to get there, and keys are meant to be rotated long before.
//
// Thread safety: a Keyring is an immutable value; const methods may be called from any number of
// threads at once. Copies are independent. Key bytes are wiped (OPENSSL_cleanse) on destruction.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace hivemesh::membership {

class Keyring {
 public:
  static constexpr uint8_t kVersion = 1;
  static constexpr size_t kNonceBytes = 12;
  static constexpr size_t kTagBytes = 16;
  static constexpr size_t kOverhead = 1 + kNonceBytes + kTagBytes;
  // As memberlist's label limit: enough for any cluster name, small enough to log.
  static constexpr size_t kMaxLabelBytes = 255;

  // `raw_keys` are raw key bytes (not base64; see DecodeKey), the primary first. Errors: no keys,
  // a key that is not 16, 24 or 32 bytes (the message names its index and size, never its
  // bytes), a label longer than kMaxLabelBytes. Duplicate keys are dropped (first one kept),
  // so a configuration listing the same key twice during a rotation is harmless.
  static absl::StatusOr<Keyring> Create(std::vector<std::string> raw_keys, std::string label);

  // Decodes a key written in standard base64 (RFC 4648 section 4, with padding; surrounding
  // whitespace is ignored). Errors say what is wrong: not base64, or the wrong decoded size.
  static absl::StatusOr<std::string> DecodeKey(std::string_view base64);
  // A fresh AES-256 key: 32 random bytes in standard base64 (44 characters). For
  // `hivemesh keygen`. Aborts if the OS random source fails.
  static std::string GenerateKey();

  Keyring(const Keyring&) = default;
  Keyring& operator=(const Keyring&) = default;
  Keyring(Keyring&&) = default;
  Keyring& operator=(Keyring&&) = default;
  ~Keyring();

  // Encrypts and authenticates `plaintext` (any length, including empty) with the primary key
  // and a fresh random nonce. Returns plaintext.size() + kOverhead bytes. Aborts if the OS
  // random source fails: sealing with a predictable or repeated nonce would break GCM.
  std::string Seal(std::string_view plaintext) const;

  // Authenticates and decrypts a packet made by Seal with any key of this ring and the same
  // label. Errors (the packet is untrusted input; nothing is assumed about it):
  //  - InvalidArgument: shorter than kOverhead, or a version byte other than kVersion;
  //  - Unauthenticated: no key authenticates it (wrong key or label, corrupted, forged, or not
  //    encrypted at all).
  absl::StatusOr<std::string> Open(std::string_view packet) const;

  size_t key_count() const { return keys_.size(); }
  const std::string& label() const { return label_; }

 private:
  Keyring(std::vector<std::string> keys, std::string label)
      : keys_(std::move(keys)), label_(std::move(label)) {}

  std::vector<std::string> keys_;  // raw bytes; keys_[0] seals; never empty
  std::string label_;
};

}  // namespace hivemesh::membership
