#include "membership/keyring.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>

#include "base/strings.h"
#include "identity/node_key.h"

namespace hivemesh::membership {
namespace {

// EVP takes int lengths; longer inputs go through in chunks of this size.
constexpr size_t kChunk = size_t{1} << 30;

struct CtxDeleter {
  void operator()(EVP_CIPHER_CTX* ctx) const { EVP_CIPHER_CTX_free(ctx); }
};
using CtxPtr = std::unique_ptr<EVP_CIPHER_CTX, CtxDeleter>;

// Only for failures that leave no safe way on (no randomness, no memory for a cipher context):
// continuing could mean sealing with a repeated nonce.
[[noreturn]] void Fatal(const char* what) {
  std::fprintf(stderr, "hivemesh keyring: %s failed\n", what);
  std::abort();
}

const EVP_CIPHER* CipherFor(size_t key_bytes) {
  switch (key_bytes) {
    case 16:
      return EVP_aes_128_gcm();
    case 24:
      return EVP_aes_192_gcm();
    case 32:
      return EVP_aes_256_gcm();
    default:
      return nullptr;
  }
}

const unsigned char* Bytes(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

// Feeds `in` through EVP_{En,De}cryptUpdate (`out` null: additional data). Returns false on an
// EVP error.
template <typename UpdateFn>
bool UpdateChunks(UpdateFn update, EVP_CIPHER_CTX* ctx, unsigned char* out, std::string_view in) {
  while (!in.empty()) {
    const size_t n = std::min(in.size(), kChunk);
    int written = 0;
    if (update(ctx, out, &written, Bytes(in), static_cast<int>(n)) != 1) return false;
    if (out != nullptr) out += written;
    in.remove_prefix(n);
  }
  return true;
}

// Decrypts `ciphertext` with one key into `out` (resized by the caller). False if the tag does
// not verify.
bool OpenWith(const std::string& key, std::string_view label, std::string_view nonce,
              std::string_view ciphertext, std::string_view tag, std::string& out) {
  CtxPtr ctx(EVP_CIPHER_CTX_new());
  if (!ctx) Fatal("EVP_CIPHER_CTX_new");
  unsigned char tag_copy[Keyring::kTagBytes];
  std::copy(tag.begin(), tag.end(), tag_copy);
  auto* dst = reinterpret_cast<unsigned char*>(out.data());
  int final_len = 0;
  return EVP_DecryptInit_ex(ctx.get(), CipherFor(key.size()), nullptr, nullptr, nullptr) == 1 &&
         EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, Keyring::kNonceBytes, nullptr) ==
             1 &&
         EVP_DecryptInit_ex(ctx.get(), nullptr, nullptr, Bytes(key), Bytes(nonce)) == 1 &&
         UpdateChunks(EVP_DecryptUpdate, ctx.get(), nullptr, label) &&
         UpdateChunks(EVP_DecryptUpdate, ctx.get(), dst, ciphertext) &&
         EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, Keyring::kTagBytes, tag_copy) == 1 &&
         EVP_DecryptFinal_ex(ctx.get(), dst + ciphertext.size(), &final_len) == 1;
}

bool IsBase64Char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
         c == '/';
}

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

}  // namespace

absl::StatusOr<Keyring> Keyring::Create(std::vector<std::string> raw_keys, std::string label) {
  if (raw_keys.empty()) {
    return absl::InvalidArgumentError("a keyring needs at least one key");
  }
  if (label.size() > kMaxLabelBytes) {
    return absl::InvalidArgumentError(StrCat("the keyring label is ", label.size(),
                                             " bytes; at most ", kMaxLabelBytes, " are allowed"));
  }
  std::vector<std::string> keys;
  keys.reserve(raw_keys.size());
  for (size_t i = 0; i < raw_keys.size(); ++i) {
    std::string& key = raw_keys[i];
    if (CipherFor(key.size()) == nullptr) {
      return absl::InvalidArgumentError(
          StrCat("key ", i, " is ", key.size(),
                 " bytes; AES-GCM keys must be 16, 24 or 32 bytes (AES-128, AES-192, AES-256)"));
    }
    if (std::find(keys.begin(), keys.end(), key) == keys.end()) keys.push_back(std::move(key));
  }
  for (std::string& key : raw_keys) OPENSSL_cleanse(key.data(), key.size());
  return Keyring(std::move(keys), std::move(label));
}

Keyring::~Keyring() {
  for (std::string& key : keys_) OPENSSL_cleanse(key.data(), key.size());
}

std::string Keyring::Seal(std::string_view plaintext) const {
  const std::string& key = keys_.front();
  std::string out(plaintext.size() + kOverhead, '\0');
  auto* base = reinterpret_cast<unsigned char*>(out.data());
  unsigned char* nonce = base + 1;
  unsigned char* ciphertext = nonce + kNonceBytes;
  unsigned char* tag = ciphertext + plaintext.size();
  base[0] = kVersion;
  if (RAND_bytes(nonce, kNonceBytes) != 1) Fatal("RAND_bytes");

  CtxPtr ctx(EVP_CIPHER_CTX_new());
  if (!ctx) Fatal("EVP_CIPHER_CTX_new");
  int final_len = 0;
  const bool ok =
      EVP_EncryptInit_ex(ctx.get(), CipherFor(key.size()), nullptr, nullptr, nullptr) == 1 &&
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, kNonceBytes, nullptr) == 1 &&
      EVP_EncryptInit_ex(ctx.get(), nullptr, nullptr, Bytes(key), nonce) == 1 &&
      UpdateChunks(EVP_EncryptUpdate, ctx.get(), nullptr, label_) &&
      UpdateChunks(EVP_EncryptUpdate, ctx.get(), ciphertext, plaintext) &&
      EVP_EncryptFinal_ex(ctx.get(), tag, &final_len) == 1 &&
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kTagBytes, tag) == 1;
  // With a valid key size (checked in Create) EVP fails only when out of memory.
  if (!ok) Fatal("AES-GCM encryption");
  return out;
}

absl::StatusOr<std::string> Keyring::Open(std::string_view packet) const {
  if (packet.size() < kOverhead) {
    return absl::InvalidArgumentError(StrCat("encrypted packet of ", packet.size(),
                                             " bytes is shorter than the ", kOverhead,
                                             "-byte encryption overhead"));
  }
  const auto version = static_cast<uint8_t>(packet[0]);
  if (version != kVersion) {
    return absl::InvalidArgumentError(StrCat("unknown encryption version ", int{version},
                                             " (this node speaks ", int{kVersion}, ")"));
  }
  const std::string_view nonce = packet.substr(1, kNonceBytes);
  const std::string_view ciphertext = packet.substr(1 + kNonceBytes, packet.size() - kOverhead);
  const std::string_view tag = packet.substr(packet.size() - kTagBytes);
  std::string out(ciphertext.size(), '\0');
  for (const std::string& key : keys_) {
    if (OpenWith(key, label_, nonce, ciphertext, tag, out)) return out;
  }
  return absl::UnauthenticatedError(
      StrCat("no key of the keyring (", keys_.size(),
             " keys) authenticates the packet: wrong key or label, corrupted, or not encrypted"));
}

absl::StatusOr<std::string> Keyring::DecodeKey(std::string_view base64) {
  while (!base64.empty() && IsSpace(base64.front())) base64.remove_prefix(1);
  while (!base64.empty() && IsSpace(base64.back())) base64.remove_suffix(1);
  if (base64.empty()) return absl::InvalidArgumentError("the key is empty");
  size_t padding = 0;
  while (padding < 2 && padding < base64.size() && base64[base64.size() - 1 - padding] == '=') {
    ++padding;
  }
  for (size_t i = 0; i + padding < base64.size(); ++i) {
    const char c = base64[i];
    if (IsBase64Char(c)) continue;
    // The character itself is not echoed: the string is (almost) a secret.
    std::string message =
        StrCat("the key is not valid base64: unexpected character at position ", i);
    if (c == '-' || c == '_') {
      StrAppend(&message, " (URL-safe base64 is not accepted; use the standard alphabet, + and /)");
    }
    return absl::InvalidArgumentError(message);
  }
  if (base64.size() % 4 != 0) {
    return absl::InvalidArgumentError(
        StrCat("the key is not valid base64: ", base64.size(),
               " characters is not a multiple of 4 (is the = padding missing?)"));
  }
  if (base64.size() > 4 * 64) {
    return absl::InvalidArgumentError(
        "the key decodes to more than 32 bytes; AES-GCM keys must be 16, 24 or 32 bytes");
  }
  std::string out(base64.size() / 4 * 3, '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()), Bytes(base64),
                                static_cast<int>(base64.size()));
  if (n < 0 || static_cast<size_t>(n) != out.size()) {
    OPENSSL_cleanse(out.data(), out.size());
    return absl::InvalidArgumentError("the key is not valid base64");
  }
  out.resize(out.size() - padding);
  if (CipherFor(out.size()) == nullptr) {
    const size_t size = out.size();
    OPENSSL_cleanse(out.data(), out.size());
    return absl::InvalidArgumentError(
        StrCat("the key decodes to ", size,
               " bytes; AES-GCM keys must be 16, 24 or 32 bytes (AES-128, AES-192, AES-256)"));
  }
  return out;
}

std::string Keyring::GenerateKey() { return identity::NewGossipKey(); }

}  // namespace hivemesh::membership
