// TLS for the transport (docs/identity.md, "Mutual TLS between nodes"): what the layers above
// hand the HTTP server and the peer client so that connections between nodes are TLS 1.3 with
// both sides' certificates checked. The transport knows no certificate rule: it runs OpenSSL's
// handshakes with the contexts given here and asks `check` about what the peer presented.
//
// - The server tells a TLS connection from a plain one by its first byte (a handshake record
//   starts with 0x16; no HTTP method does), so one port serves both: plain HTTP for clients, TLS
//   for peers and for clients that want it. A TLS client that presents a certificate is checked
//   once per connection; what the check names (a member) is the connection's `tls_peer()`; a
//   certificate the check refuses gets every request answered 403 with the check's words.
// - The peer client, given settings, opens every connection TLS (pooled and links), presents
//   the node's certificate and checks the server's against the member it meant to reach; it
//   keeps one session per peer address and resumes it on the next connection.
//
// Thread safety: TlsSettings may be read and replaced from any thread at once.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

struct ssl_ctx_st;  // OpenSSL's SSL_CTX
struct ssl_st;      // OpenSSL's SSL

namespace hivemesh {

// What a peer presented: its certificate first, then the intermediates it sent (DER each).
using PeerChain = std::vector<std::string>;

// What the peer of a completed handshake presented: its certificate first, then the others it
// sent (a client's view of the chain starts with the server's certificate, a server's leaves
// the client's out; either way the first is taken once), at most 8. Empty if it presented none.
PeerChain PeerChainOf(ssl_st* ssl);

// Checks a peer's chain: the name of who it is (a member) or why it is refused. `expected` is
// the member the client meant to reach (empty on the server's side, where anyone may connect).
using TlsPeerCheck =
    std::function<absl::StatusOr<std::string>(const PeerChain& chain, std::string_view expected)>;

class TlsSettings {
 public:
  TlsSettings(std::shared_ptr<ssl_ctx_st> server, std::shared_ptr<ssl_ctx_st> client,
              TlsPeerCheck check)
      : server_(std::move(server)), client_(std::move(client)), check_(std::move(check)) {}

  // New contexts (a renewed certificate): connections opened from now on use them.
  void Replace(std::shared_ptr<ssl_ctx_st> server, std::shared_ptr<ssl_ctx_st> client) {
    absl::MutexLock lock(&mu_);
    server_ = std::move(server);
    client_ = std::move(client);
  }
  std::shared_ptr<ssl_ctx_st> server() const {
    absl::MutexLock lock(&mu_);
    return server_;
  }
  std::shared_ptr<ssl_ctx_st> client() const {
    absl::MutexLock lock(&mu_);
    return client_;
  }
  absl::StatusOr<std::string> Check(const PeerChain& chain, std::string_view expected) const {
    return check_(chain, expected);
  }

 private:
  mutable absl::Mutex mu_;
  std::shared_ptr<ssl_ctx_st> server_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<ssl_ctx_st> client_ ABSL_GUARDED_BY(mu_);
  const TlsPeerCheck check_;  // called on I/O threads; must not block
};

}  // namespace hivemesh
