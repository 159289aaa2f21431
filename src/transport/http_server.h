// HttpServer: an HTTP/1.1 server on Boost.Asio with Boost.Beast's parser, kept out of this
// header so that including it stays cheap.
//
// Each connection handles one request at a time, in order, so pipelined requests are answered in
// the order they were sent. A peer node may instead upgrade a connection to a mesh link, which
// carries many requests at once, each answered as it is ready (docs/routing.md). Keep-alive is the
// default. `Expect: 100-continue` is honoured.
//
// Hostile input is bounded (docs/security.md), each refusal counted in `rejections`:
// - a request's headers must arrive within `header_timeout` (idle keep-alive time counts), a body
//   within `body_timeout`, or the connection is closed; a link closes once it has had no open
//   request and no bytes for `idle_link_timeout`;
// - a head over 64 KiB gets 431, a body read whole over `max_body_bytes` 413 (a body streamed
//   to another server, HttpServerOptions::forward, is never held and has no limit), a chunk-size
//   line over 4 KiB
//   400 and trailers over 64 KiB 431; framing that could be read two ways (any Transfer-Encoding
//   but one `chunked`, with Content-Length, folded header lines) 400; each then closes;
// - every body read whole is reserved from `memory_budget` before it is buffered: 503 with
//   Retry-After
//   when it does not fit;
// - at most `max_connections` connections are open, and `max_connections_per_source` from one
//   address (links included): one over either is closed at once after a short 503;
// - when accept() fails (out of descriptors, say), the server stops accepting for a while
//   (10 ms, doubling to 1 s) instead of retrying at once;
// - `authorize_link`, if set, decides which upgrade requests become links (403 otherwise), and
//   names the member each link comes from (HttpRequest::link_member()).
//
// I/O runs on IoThreads (one event loop per thread): the server's own `options.threads` threads,
// or loops shared with other components such as the peer client. Each connection lives on one
// loop; a Responder called on that loop's thread (e.g. from a peer client's callback on shared
// loops) writes the response at once, without a hand-off to another thread.
//
// Shutdown has two steps: StopAccepting() closes the listening socket; a request that still
// arrives on an open connection is handled as before, and every answer from then on carries
// `Connection: close`, so a keep-alive client loses nothing it wrote and opens its next
// connection elsewhere (mesh links refuse new requests with 503 instead: their senders are peers,
// which retry elsewhere). Stop() then closes all connections and joins the I/O threads if they
// are the server's own (shared ones keep running).
// Once Stop() returns, the handler and `on_sent` callbacks are no longer called.
//
// Thread safety: a Responder may be called from any thread, exactly once. Start/StopAccepting/Stop
// are called from one controlling thread, which is not an I/O thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/clock.h"
#include "base/memory_budget.h"
#include "base/rejections.h"
#include "tensor/tensor.h"
#include "transport/io_threads.h"
#include "transport/relay.h"
#include "transport/tls.h"

namespace hivemesh {

class HttpRequest;

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 8000;  // 0 picks a free port
  int threads = 2;       // I/O threads, unless the server runs on shared ones
  uint64_t max_body_bytes = 64ull << 20;
  std::chrono::milliseconds header_timeout{10000};
  std::chrono::milliseconds body_timeout{60000};
  // Takes `Upgrade: hivemesh-link/1` (a mesh link from a peer, docs/routing.md); when false the
  // upgrade request is served as a plain request, as by a server that does not know links.
  bool accept_links = true;
  // Where refused and cut-off input is counted and logged (docs/security.md). Null: the server
  // keeps counters of its own.
  std::shared_ptr<Rejections> rejections;
  // The node's budget for requests in flight; request bodies are reserved from it. Null: bodies
  // are limited only by max_body_bytes each.
  std::shared_ptr<MemoryBudget> memory_budget;
  // Open connections, plain and mesh links together, in total and from one source address (an
  // IPv6 /64 counts as one). 0: derived from the process's descriptor limit (RLIMIT_NOFILE):
  // half of it, at most 1024, and per source half of that, at most 256
  // (base/connection_limits.h says why).
  int max_connections = 0;
  int max_connections_per_source = 0;
  // A mesh link with no open request and no bytes arriving for this long is closed. A peer's
  // next request opens a new link; a stranger's idle link holds nothing for long.
  std::chrono::milliseconds idle_link_timeout{60000};
  // When set, an upgrade request becomes a mesh link only if this returns OK: the name of the
  // member the link comes from, which every request on the link then tells
  // (HttpRequest::link_member()). Otherwise it is answered 403 with the status's message and the
  // connection closes. Called on an I/O thread; it must not block.
  std::function<absl::StatusOr<std::string>(const HttpRequest&)> authorize_link;
  // TLS (transport/tls.h): with settings, a connection whose first byte starts a TLS handshake
  // is served over TLS with the settings' server context, its client's certificate (if any)
  // checked once (HttpRequest::tls_peer(); a refused one gets 403 on every request). Plain
  // connections are served as before. A handshake must end within header_timeout.
  std::shared_ptr<TlsSettings> tls;
  // Connection-level pass-through (transport/relay.h). `pass_through`, if set, is asked where
  // the bytes of a connection go whose first bytes are not an HTTP/1.x request (or of every
  // connection, at once, with `pass_through_all`), given the client's address; an error closes
  // the connection (it has no protocol to be told in). First bytes must come within
  // header_timeout.
  std::function<absl::StatusOr<RelayPlan>(std::string_view remote)> pass_through;
  bool pass_through_all = false;
  // Streaming forwarding (ForwardPlan, transport/relay.h): asked at each request's head (its
  // body not read yet: body() is empty); a plan streams the request to another server, nullopt
  // lets it be read whole and handled as usual. Called on an I/O thread; it must not block.
  std::function<std::optional<ForwardPlan>(const HttpRequest& head)> forward;
  // `authorize_tunnel`, if set, decides which `Upgrade: hivemesh-tunnel/1` requests become
  // tunnels, and the address (ip:port, plain TCP) each one's bytes go to. Refusals are answered
  // with their code's status (PermissionDenied 403, NotFound 404, Unavailable 503; else 400) and
  // the connection closes; an address that does not accept the connection is a 502. Called on
  // an I/O thread; it must not block. Unset: such requests are served as plain requests.
  std::function<absl::StatusOr<std::string>(const HttpRequest&)> authorize_tunnel;
  // The TLS settings tunnels to other nodes are opened with (a hop's certificate is checked
  // against its peer_node); null: plain.
  std::shared_ptr<TlsSettings> tunnel_tls;
  // A relay through which no byte has passed either way for this long is closed.
  std::chrono::milliseconds relay_idle_timeout{std::chrono::hours(1)};
  // What the server reads the time from: when a request was received (HttpRequest::received),
  // when an answer was sent (HttpResponse::on_sent), and every timeout above. The timers behind
  // the timeouts run on real time for what is left by this clock and look at it again when they
  // fire. Must not be null and must outlive the server.
  const Clock* clock = &SystemClock::Get();
};

// Read-only view of one request; valid until the response has been sent.
class HttpRequest {
 public:
  virtual ~HttpRequest() = default;
  virtual std::string_view method() const = 0;
  virtual std::string_view target() const = 0;  // path and query
  // The header's value, or empty if absent. Names are case-insensitive.
  virtual std::string_view header(std::string_view name) const = 0;
  virtual bool has_header(std::string_view name) const = 0;
  // Every header field (name as sent, value) in arrival order.
  virtual std::vector<std::pair<std::string_view, std::string_view>> headers() const = 0;
  // The body, shared: tensors may keep views into it beyond the request's life.
  virtual std::shared_ptr<const std::string> body() const = 0;
  virtual SteadyTime received() const = 0;  // when the headers had been read
  // The IP address of the peer that sent the request (no port), e.g. "10.0.0.7" or "::1";
  // empty if the socket no longer knew it.
  virtual std::string_view remote_address() const = 0;
  // For a request on a mesh link: the member the link was authorized as (authorize_link's
  // answer when the link opened). Empty for plain requests, and on links of a server without
  // authorize_link.
  virtual std::string_view link_member() const { return {}; }
  // For a request on a TLS connection whose client presented a certificate that
  // HttpServerOptions::tls accepted: the name its check gave (a member). Empty otherwise (plain,
  // no certificate, and requests on mesh links, which tell link_member()).
  virtual std::string_view tls_peer() const { return {}; }
  // Set when the sender no longer needs the answer (a mesh link's CANCEL for this request's
  // stream); null when the request cannot be cancelled (plain HTTP). Valid as the request is.
  virtual const std::atomic<bool>* cancelled() const { return nullptr; }
};

// An answer written as it comes (Server-Sent Events, say). A handler answers with
// HttpResponse::stream set: the server writes the head with `Transfer-Encoding: chunked` and
// `Connection: close` (no Content-Length; `body`, if any, is the first piece), then every piece
// pushed, in order, each as a chunk, until End(); then the last chunk, and the connection closes.
// - Bounded: Push refuses (false, nothing queued) once `max_queued_bytes` wait unwritten, so a
//   client that reads slowly or not at all costs at most that; the producer decides what to drop
//   and counts it. Each write must be taken within the server's body_timeout, or the connection
//   closes.
// - The stream closes when the client leaves (it closes its connection or sends anything more:
//   a stream's client only listens), when its head cannot be written, when the server stops,
//   after End(), or when the last reference to it goes. The on_close callback is then called
//   once (on an I/O thread; at once in SetOnClose if already closed).
// - A streamed answer does not hold the server's drain (it is not a request under way): Stop
//   closes it.
// Thread safety: every member may be called from any thread.
class AnswerStream {
 public:
  explicit AnswerStream(size_t max_queued_bytes = 1 << 20);
  ~AnswerStream();
  AnswerStream(const AnswerStream&) = delete;
  AnswerStream& operator=(const AnswerStream&) = delete;

  // Queues `piece` (not empty) as the next chunk: false if the stream is closed or ended, or
  // if it does not fit within max_queued_bytes.
  bool Push(std::string_view piece);
  // No more pieces: the ones queued are written, then the last chunk.
  void End();
  bool closed() const;
  void SetOnClose(std::function<void()> on_close);
  // Bytes queued and not yet handed to the socket.
  size_t queued_bytes() const;

  // For the server's connection: `wake` is called (from any thread) when there is something to
  // write; Take moves what is queued (already framed as chunks) into `out` and says whether the
  // stream has ended; Close marks it closed and calls on_close.
  void Attach(std::function<void()> wake);
  bool Take(std::string* out);
  void Close();

 private:
  struct State;
  const std::unique_ptr<State> state_;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::vector<Tensor> tail;  // raw bytes sent after `body`, without copying (binary tensors)
  // Called once the response has been handed to the socket: on an I/O thread, or on the thread
  // that gave the answer to a mesh link's only open request (which writes it itself).
  std::function<void(SteadyTime sent)> on_sent;
  // Set: the body is streamed (AnswerStream). Not on a mesh link, which answers whole.
  std::shared_ptr<AnswerStream> stream;
};

using HttpResponder = std::function<void(HttpResponse)>;
using HttpHandler = std::function<void(const HttpRequest&, HttpResponder)>;

class HttpServer {
 public:
  // Binds and listens; fails if the address cannot be bound. With `io` null, the server runs
  // `options.threads` I/O threads of its own; otherwise it runs on the shared `io`.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Create(
      const HttpServerOptions& options, HttpHandler handler,
      std::shared_ptr<IoThreads> io = nullptr);
  virtual ~HttpServer() = default;

  virtual uint16_t port() const = 0;
  virtual void Start() = 0;
  virtual void StopAccepting() = 0;
  virtual void Stop() = 0;
  // Requests being handled: on connections that are not idle, and on mesh links.
  virtual int busy_connections() const = 0;
  // Connections open now, plain and mesh links together (those that hold a place under
  // max_connections).
  virtual int open_connections() const = 0;
  // Closes, on their loops and without waiting, every connection whose TLS client certificate
  // named `peer` (HttpRequest::tls_peer()) and every mesh link authorized as `peer` (a member
  // whose key was revoked). Requests of theirs being handled get no answer. Any thread.
  virtual void CloseConnectionsOf(const std::string& peer) = 0;
};

// "OK", "Not Found", ...
std::string_view HttpReason(int status);

}  // namespace hivemesh
