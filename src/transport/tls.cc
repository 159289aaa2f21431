#include "transport/tls.h"

#include <openssl/ssl.h>

namespace hivemesh {
namespace {

constexpr size_t kMaxPeerCertificates = 8;

std::string Der(X509* x) {
  unsigned char* der = nullptr;
  const int len = i2d_X509(x, &der);
  if (len <= 0) return {};
  std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  return out;
}

}  // namespace

PeerChain PeerChainOf(SSL* ssl) {
  PeerChain out;
  X509* leaf = ssl == nullptr ? nullptr : SSL_get0_peer_certificate(ssl);
  if (leaf == nullptr) return out;
  out.push_back(Der(leaf));
  STACK_OF(X509)* chain = SSL_get_peer_cert_chain(ssl);
  for (int i = 0; chain != nullptr && i < sk_X509_num(chain); ++i) {
    if (out.size() >= kMaxPeerCertificates) break;
    X509* x = sk_X509_value(chain, i);
    if (X509_cmp(x, leaf) != 0) out.push_back(Der(x));
  }
  return out;
}

}  // namespace hivemesh
