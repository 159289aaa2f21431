// Joining a mesh with a token, over TLS on the gossip port (docs/identity.md, "Creating a mesh
// and joining it").
//
// The seed's side, JoinService: the gossip listener hands it every connection that opens with a
// TLS handshake record. It answers as a TLS 1.3 server with its node certificate, its issuer's
// and the root (so the joining node can find the root whose digest its token names), reads one
// request, asks the issuer (identity::IssuerService) and writes one answer:
//
//   request  [u32 big-endian length][JSON {"token", "name", "labels": {...}, "public_key": hex,
//                                          "issuer_key": hex}]
//            or, from a node presenting its certificate in the handshake, {"renew": true}
//   answer   [u32 length][JSON {"certificate": PEM leaf + issuer, "roots": PEM, "issuers": PEM,
//                               "issuer": PEM (an issuer token only), "gossip_keys", ...}
//                              or {"error": "...", "code": "permission_denied" | ...}]
//
// "issuer_key" is a key the joining node made for the case its token is an issuer token; the
// answer's "issuer" certifies it (identity::Issuer::Join), and the node keeps it as its issuer
// key. "issuers": every issuer certificate of the mesh the seed knows.
//
// Bounds: at most kMaxJoinsAtOnce connections are served at once (more are closed at once), each
// within kJoinDeadline from its hand-over (handshake, request and answer), a request of at most
// kMaxJoinRequestBytes.
//
// The joining node's side, JoinMesh: TLS to the seed without trusting anything yet; the seed's
// chain must hold a root whose SHA-256 is the token's CA digest and the seed's certificate must
// chain to it, or nothing secret is sent. Then the token goes over that channel, and the
// certificate that comes back must chain to the same root and bind this node's key and name.
//
// Thread safety: JoinService::Serve may be called from any thread; each connection runs on a
// thread of its own, all joined by the destructor. JoinMesh blocks its caller.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "identity/issuer.h"
#include "identity/mesh_files.h"

namespace hivemesh {
namespace identity {
class IssuerService;
}

inline constexpr int kMaxJoinsAtOnce = 4;
inline constexpr std::chrono::milliseconds kJoinDeadline{5000};
inline constexpr size_t kMaxJoinRequestBytes = 16 << 10;

class JoinService {
 public:
  // `mesh` must hold this node's certificate; `issuer` may be null (the node then answers every
  // join with an error saying it holds no issuer rights). `key_of` says which key a name is
  // bound to in the mesh now.
  static absl::StatusOr<std::unique_ptr<JoinService>> Create(
      const identity::MeshCredentials& mesh, const identity::NodeKey& node_key,
      std::shared_ptr<identity::IssuerService> issuer, identity::Issuer::KeyOf key_of);
  ~JoinService();

  // Presents `mesh`'s (renewed) certificate from the next connection on.
  absl::Status UpdateCredentials(const identity::MeshCredentials& mesh,
                                 const identity::NodeKey& node_key);

  // Takes `fd` (a connection whose first byte is a TLS record) and serves it, or closes it at
  // once when kMaxJoinsAtOnce are being served.
  void Serve(int fd);

  struct Stats {
    uint64_t served = 0;   // answers written (a certificate or an error)
    uint64_t issued = 0;   // certificates
    uint64_t refused = 0;  // connections closed at once (too many) or cut (deadline, bad input)
  };
  Stats stats() const;

 private:
  struct Impl;
  // One connection's thread; `done` turns true as its last step, so it may then be joined.
  struct Worker {
    int fd = -1;  // guarded by mu_; -1 once closed
    std::thread thread;
    std::atomic<bool> done{false};
  };
  explicit JoinService(std::unique_ptr<Impl> impl);
  void Run(Worker* worker);

  std::unique_ptr<Impl> impl_;
  mutable absl::Mutex mu_;
  std::list<std::unique_ptr<Worker>> workers_ ABSL_GUARDED_BY(mu_);
  Stats stats_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
};

// Joins the mesh of `token` through `seed` (host:port of its gossip listener): the new
// credentials (roots, this node's certificate and chain), not yet saved. Errors: UNAVAILABLE
// (the seed could not be reached or did not answer in time), PERMISSION_DENIED (the seed's CA is
// not the token's, or the issuer refused the token), INVALID_ARGUMENT (bad token or name).
absl::StatusOr<identity::MeshCredentials> JoinMesh(const std::string& seed,
                                                   const std::string& token,
                                                   const identity::NodeKey& node_key,
                                                   const std::string& name,
                                                   const std::map<std::string, std::string>& labels,
                                                   std::chrono::milliseconds timeout);

// Renews this node's certificate at `seed` (an issuer's gossip address): TLS with the current
// certificate (also an expired one: proving its key is what the issuer asks), to a seed whose
// own certificate chains to this node's roots. The new credentials (roots and certificate).
// `revoked` (if given) says whether a key is revoked: a seed whose certificate, or whose
// certificate's issuer, holds such a key is not asked (PERMISSION_DENIED).
absl::StatusOr<identity::MeshCredentials> RenewMesh(
    const std::string& seed, const identity::MeshCredentials& mesh,
    const identity::NodeKey& node_key, std::chrono::milliseconds timeout,
    const std::function<bool(std::string_view key)>& revoked = nullptr);

}  // namespace hivemesh
