#include "identity/tls_context.h"

#include <openssl/ssl.h>

#include "base/strings.h"
#include "identity/openssl_util.h"

namespace hivemesh::identity {
namespace {

using SslCtxPtr = std::unique_ptr<SSL_CTX, OpenSslDeleter<SSL_CTX, SSL_CTX_free>>;

constexpr int kMaxPeerCertificates = 8;

}  // namespace

absl::StatusOr<std::shared_ptr<SSL_CTX>> MakeTlsContext(const MeshCredentials& mesh,
                                                        const NodeKey& node_key, bool server) {
  if (!mesh.node_cert) return absl::FailedPreconditionError("this node has no certificate");
  SslCtxPtr ctx(SSL_CTX_new(server ? TLS_server_method() : TLS_client_method()));
  X509Ptr leaf = ToX509(*mesh.node_cert);
  PkeyPtr pkey = ToEvpKey(node_key);
  if (ctx == nullptr || SSL_CTX_set_min_proto_version(ctx.get(), TLS1_3_VERSION) != 1 ||
      leaf == nullptr || pkey == nullptr || SSL_CTX_use_certificate(ctx.get(), leaf.get()) != 1 ||
      SSL_CTX_use_PrivateKey(ctx.get(), pkey.get()) != 1) {
    return absl::InternalError(StrCat("TLS context: ", OpenSslError()));
  }
  // The chain a peer needs: the issuer, and the roots (a joining node finds its token's there).
  std::vector<Certificate> extra = mesh.node_chain;
  extra.insert(extra.end(), mesh.roots.begin(), mesh.roots.end());
  for (const Certificate& c : extra) {
    X509Ptr x = ToX509(c);
    if (x == nullptr || SSL_CTX_add1_chain_cert(ctx.get(), x.get()) != 1) {
      return absl::InternalError(StrCat("TLS chain: ", OpenSslError()));
    }
  }
  if (server) {
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, [](int, X509_STORE_CTX*) { return 1; });
    SSL_CTX_set_num_tickets(ctx.get(), 1);
    // A server that asks for client certificates resumes only sessions of its own context.
    static constexpr unsigned char kContext[] = "hivemesh-node";
    SSL_CTX_set_session_id_context(ctx.get(), kContext, sizeof kContext - 1);
  } else {
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
    SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL);
  }
  return std::shared_ptr<SSL_CTX>(ctx.release(), SSL_CTX_free);
}

std::vector<Certificate> CertificatesFromDer(const std::vector<std::string>& der) {
  std::vector<Certificate> out;
  for (const std::string& d : der) {
    if (static_cast<int>(out.size()) >= kMaxPeerCertificates) break;
    absl::StatusOr<Certificate> c = Certificate::FromDer(d);
    if (c.ok()) out.push_back(*std::move(c));
  }
  return out;
}

}  // namespace hivemesh::identity
