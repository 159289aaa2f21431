// TLS contexts for the mesh's connections between nodes (docs/identity.md, "Mutual TLS between
// nodes"): TLS 1.3 only, presenting the node's certificate, its issuer's and the roots, signed
// with the node's own key. OpenSSL's own chain check is off on purpose: it would check the
// peer's chain against the roots with OpenSSL's clock and rules, and refuse before the node can
// say why. A handshake still proves the peer holds its certificate's key; the caller then checks
// the chain with VerifyNodeCertificate (certs.h), at its own time, with the mesh's rules, and
// against the membership (CertificatesFromDer reads what the peer presented).
//
// Thread safety: a context may be used by any number of connections on any threads (OpenSSL's
// rule for an SSL_CTX no longer being configured).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "identity/certs.h"
#include "identity/mesh_files.h"
#include "identity/node_key.h"

struct ssl_ctx_st;  // OpenSSL's SSL_CTX

namespace hivemesh::identity {

// A TLS 1.3 context presenting `mesh`'s node certificate with `node_key`. A server context asks
// for the client's certificate and takes any or none (a client of the public API has none); a
// client context takes the server's certificate as it is. Session tickets are on (one per
// handshake), so a client that keeps a session resumes without a full handshake. An error if the
// node has no certificate.
absl::StatusOr<std::shared_ptr<ssl_ctx_st>> MakeTlsContext(const MeshCredentials& mesh,
                                                           const NodeKey& node_key, bool server);

// Certificates from their DER encodings (leaf first, as transport/tls.h's PeerChainOf gives
// what a peer presented); what does not parse is left out, at most 8 are read. On a resumed
// session only the peer's own certificate is known: the caller supplies the intermediates it
// knows (its own issuer's).
std::vector<Certificate> CertificatesFromDer(const std::vector<std::string>& der);

}  // namespace hivemesh::identity
