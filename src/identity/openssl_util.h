// What the project's OpenSSL code shares: owning pointers with the right free function, the text
// of the last OpenSSL error, and a node key or certificate as OpenSSL objects. Included only by
// the .cc files that call OpenSSL (it brings OpenSSL's headers).
#pragma once

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <memory>
#include <string>
#include <string_view>

namespace hivemesh::identity {

class Certificate;
class NodeKey;

template <typename T, void (*F)(T*)>
struct OpenSslDeleter {
  void operator()(T* p) const { F(p); }
};
using BioPtr = std::unique_ptr<BIO, OpenSslDeleter<BIO, BIO_free_all>>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, OpenSslDeleter<EVP_PKEY, EVP_PKEY_free>>;
using X509Ptr = std::unique_ptr<X509, OpenSslDeleter<X509, X509_free>>;

// The text of the oldest queued OpenSSL error, or `if_none`; the queue is left empty.
inline std::string OpenSslError(std::string_view if_none = "unknown OpenSSL error") {
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return std::string(if_none);
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

// `key`'s private key as an OpenSSL key (to sign with); aborts if OpenSSL cannot read it back.
PkeyPtr ToEvpKey(const NodeKey& key);
// `cert` as an OpenSSL certificate; null only if OpenSSL runs out of memory.
X509Ptr ToX509(const Certificate& cert);

}  // namespace hivemesh::identity
