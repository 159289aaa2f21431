#include "identity/node_key.h"
#include "absl/synchronization/mutex.h"
#include "base/hex.h"

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace hivemesh::identity {
namespace {

[[noreturn]] void Fatal(const char* what) {
  std::fprintf(stderr, "hivemesh node key: %s failed\n", what);
  std::abort();
}

struct PkeyDeleter {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyDeleter>;
struct MdCtxDeleter {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, MdCtxDeleter>;
struct BioDeleter {
  void operator()(BIO* b) const { BIO_free(b); }
};
using BioPtr = std::unique_ptr<BIO, BioDeleter>;

const unsigned char* Bytes(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

std::string RawPublicKey(EVP_PKEY* key) {
  std::string out(kPublicKeyBytes, '\0');
  size_t len = out.size();
  if (EVP_PKEY_get_raw_public_key(key, reinterpret_cast<unsigned char*>(out.data()), &len) != 1 ||
      len != kPublicKeyBytes) {
    Fatal("EVP_PKEY_get_raw_public_key");
  }
  return out;
}

// Valid signatures seen lately, by SHA-256 of (public key, signature, message): direct-mapped,
// 4096 entries (128 KiB), one lock. Only successes are stored, so a forger gains nothing.
class VerifiedCache {
 public:
  using Digest = std::array<unsigned char, SHA256_DIGEST_LENGTH>;
  static Digest Of(std::string_view key, std::string_view message, std::string_view sig) {
    Digest d;
    MdCtxPtr ctx(EVP_MD_CTX_new());
    const uint64_t sizes[3] = {key.size(), sig.size(), message.size()};
    unsigned int len = 0;
    if (ctx == nullptr || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1 ||
        EVP_DigestUpdate(ctx.get(), sizes, sizeof sizes) != 1 ||
        EVP_DigestUpdate(ctx.get(), key.data(), key.size()) != 1 ||
        EVP_DigestUpdate(ctx.get(), sig.data(), sig.size()) != 1 ||
        EVP_DigestUpdate(ctx.get(), message.data(), message.size()) != 1 ||
        EVP_DigestFinal_ex(ctx.get(), d.data(), &len) != 1) {
      Fatal("SHA-256");
    }
    return d;
  }
  bool Contains(const Digest& d) {
    absl::MutexLock lock(&mu_);
    return slots_[Slot(d)] == d;
  }
  void Add(const Digest& d) {
    absl::MutexLock lock(&mu_);
    slots_[Slot(d)] = d;
  }

 private:
  static size_t Slot(const Digest& d) { return (size_t{d[0]} << 8 | d[1]) % kSlots; }
  static constexpr size_t kSlots = 4096;
  absl::Mutex mu_;
  std::array<Digest, kSlots> slots_ ABSL_GUARDED_BY(mu_){};
};

VerifiedCache& Verified() {
  static VerifiedCache* cache = new VerifiedCache();  // never destroyed: used until exit
  return *cache;
}

}  // namespace

struct NodeKey::Impl {
  PkeyPtr key;
};

NodeKey::NodeKey(std::shared_ptr<const Impl> impl)
    : impl_(std::move(impl)), public_key_(RawPublicKey(impl_->key.get())) {}

NodeKey NodeKey::Generate() {
  EVP_PKEY* raw = nullptr;
  std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(
      EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, nullptr), &EVP_PKEY_CTX_free);
  if (ctx == nullptr || EVP_PKEY_keygen_init(ctx.get()) != 1 ||
      EVP_PKEY_keygen(ctx.get(), &raw) != 1) {
    Fatal("Ed25519 key generation");
  }
  auto impl = std::make_shared<Impl>();
  impl->key.reset(raw);
  return NodeKey(std::move(impl));
}

NodeKey NodeKey::FromSeed(std::string_view seed) {
  if (seed.size() != 32) Fatal("NodeKey::FromSeed with a seed that is not 32 bytes");
  auto impl = std::make_shared<Impl>();
  impl->key.reset(
      EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, Bytes(seed), seed.size()));
  if (impl->key == nullptr) Fatal("EVP_PKEY_new_raw_private_key");
  return NodeKey(std::move(impl));
}

absl::StatusOr<NodeKey> NodeKey::FromPem(std::string_view pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (bio == nullptr) Fatal("BIO_new_mem_buf");
  PkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (key == nullptr) {
    return absl::InvalidArgumentError("not a PEM private key");
  }
  if (EVP_PKEY_get_id(key.get()) != EVP_PKEY_ED25519) {
    return absl::InvalidArgumentError("not an Ed25519 key");
  }
  auto impl = std::make_shared<Impl>();
  impl->key = std::move(key);
  return NodeKey(std::move(impl));
}

std::string NodeKey::ToPem() const {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr || PEM_write_bio_PrivateKey(bio.get(), impl_->key.get(), nullptr, nullptr, 0,
                                                 nullptr, nullptr) != 1) {
    Fatal("PEM_write_bio_PrivateKey");
  }
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

std::string NodeKey::Sign(std::string_view message) const {
  MdCtxPtr ctx(EVP_MD_CTX_new());
  std::string sig(kSignatureBytes, '\0');
  size_t len = sig.size();
  if (ctx == nullptr ||
      EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, impl_->key.get()) != 1 ||
      EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len, Bytes(message),
                     message.size()) != 1 ||
      len != kSignatureBytes) {
    Fatal("Ed25519 signing");
  }
  return sig;
}

bool VerifySignature(std::string_view public_key, std::string_view message,
                     std::string_view signature) {
  if (public_key.size() != kPublicKeyBytes || signature.size() != kSignatureBytes) return false;
  const VerifiedCache::Digest digest = VerifiedCache::Of(public_key, message, signature);
  if (Verified().Contains(digest)) return true;
  PkeyPtr key(
      EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, Bytes(public_key), public_key.size()));
  if (key == nullptr) return false;
  MdCtxPtr ctx(EVP_MD_CTX_new());
  if (ctx == nullptr) Fatal("EVP_MD_CTX_new");
  const bool ok = EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, key.get()) == 1 &&
                  EVP_DigestVerify(ctx.get(), Bytes(signature), signature.size(), Bytes(message),
                                   message.size()) == 1;
  if (ok) Verified().Add(digest);
  return ok;
}

std::string KeyFingerprint(std::string_view public_key) {
  if (public_key.empty()) return "-";
  unsigned char d[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(public_key.data(), public_key.size(), d, &len, EVP_sha256(), nullptr) != 1) {
    Fatal("SHA-256");
  }
  return HexEncode(std::string_view(reinterpret_cast<const char*>(d), 8));
}

std::string NewGossipKey() {
  unsigned char key[32];
  if (RAND_bytes(key, sizeof key) != 1) Fatal("RAND_bytes");
  char encoded[4 * ((sizeof key + 2) / 3) + 1];
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(encoded), key, sizeof key);
  OPENSSL_cleanse(key, sizeof key);
  std::string out(encoded, static_cast<size_t>(n));
  OPENSSL_cleanse(encoded, sizeof encoded);
  return out;
}

}  // namespace hivemesh::identity
