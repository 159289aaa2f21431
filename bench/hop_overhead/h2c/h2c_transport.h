// An h2c transport between nodes, as a prototype to measure against the mesh link
// (docs/routing.md, "The mesh link"): HTTP/2 over cleartext TCP with prior knowledge (RFC 9113,
// section 3.3), nghttp2's C API for the framing, HPACK and flow control, and the project's own
// socket I/O on Boost.Asio (transport/io_threads.h), as the link has.
//
// It speaks the same types as the link's two ends, so that one benchmark drives both with the
// same requests and the same handler:
// - H2cClient takes a PeerRequest and answers a PeerCallback, as PeerClient
//   does. Each I/O loop keeps one connection to each peer address and sends every request of that
//   loop to that peer on it, each as a stream. Requests submitted in one pass of the loop leave in
//   one write; a request alone on the connection goes at once. Request bodies and tensors are not
//   copied: DATA frames point at them (NGHTTP2_DATA_FLAG_NO_COPY).
// - H2cServer calls an HttpHandler with an HttpRequest per stream and writes the HttpResponse, as
//   HttpServer does for a link. The answers made ready while one read is processed leave in one
//   write; a responder called from another thread hands the answer to the connection's loop.
//
// Settings, as a tuned transport between trusted nodes would have them: 16 MiB stream windows
// and a 1 GiB connection window (a request's body never waits for a WINDOW_UPDATE), 1 MiB
// frames (a 64 KiB body is one DATA frame), up to 1024 streams at once, no RFC 7540 priorities.
//
// A connection opens with a stream of its own: `GET /v2/health/live` carrying the member
// credential (identity/member_credential.h) the link's upgrade carries. The server's
// `authorize_link` decides on it, as HttpServer's does on an upgrade; every later stream on the
// connection then comes from that member (HttpRequest::link_member()), and until then a stream is
// refused with 403. The client does not wait for the answer: frames are read in order, so the
// requests written behind the opening stream are judged after it.
//
// Not there (a prototype): retries on a new connection, the plain HTTP/1.1 fallback, draining,
// GOAWAY handling beyond failing the connection's streams, the server's bounds (header and body
// timeouts, memory budget, connection limits, idle connections) and TLS.
//
// Thread safety: H2cClient::Send may be called from any thread; on one of the client's I/O
// threads the request goes out on that loop and `done` runs later on it (never inside Send), as
// with PeerClient. An H2cServer responder may be called from any thread, exactly once. Stop is
// called from a thread that is not one of the I/O threads; once it returns no callback runs.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "transport/http_server.h"
#include "transport/io_threads.h"
#include "transport/peer_client.h"

namespace hivemesh::h2c {

class H2cClient {
 public:
  // Runs on the shared `io` (which Stop() leaves running). With `credential`, each connection's
  // opening stream carries a link credential for the request's peer_node.
  static std::unique_ptr<H2cClient> Create(std::shared_ptr<IoThreads> io,
                                           CredentialFn credential = nullptr);
  virtual ~H2cClient() = default;
  // After Stop(), the request is dropped and `done` never runs.
  virtual void Send(PeerRequest request, PeerCallback done) = 0;
  // Closes every connection; requests in flight are abandoned (no callback). Idempotent.
  virtual void Stop() = 0;
};

struct H2cServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 0;  // 0 picks a free port
  // As HttpServerOptions::authorize_link, for each connection's opening stream. Null: every
  // connection is taken, and its requests name no member.
  std::function<absl::StatusOr<std::string>(const HttpRequest&)> authorize_link;
  // What HttpRequest::received() reads. REQUIRED: not null.
  Clock* clock = nullptr;
};

class H2cServer {
 public:
  // Binds and listens on loop 0 of `io`; each connection runs on a loop chosen round robin.
  static absl::StatusOr<std::unique_ptr<H2cServer>> Create(const H2cServerOptions& options,
                                                           HttpHandler handler,
                                                           std::shared_ptr<IoThreads> io);
  virtual ~H2cServer() = default;
  virtual uint16_t port() const = 0;
  virtual void Start() = 0;
  // Closes the listening socket and every connection. Idempotent.
  virtual void Stop() = 0;
};

}  // namespace hivemesh::h2c
