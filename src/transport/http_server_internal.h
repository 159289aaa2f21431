// The parts of HttpServer that its connection types share: the state the I/O handlers of one
// server hold, and the error answers' form. For http_server.cc and http_link.cc only (Asio and
// Beast inside; the public header stays free of them).
#pragma once

#include "base/json_string.h"

// First: Boost 1.74's Asio uses std::exchange without including <utility>.
#include <utility>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "base/clock.h"
#include "base/connection_limits.h"
#include "base/strings.h"
#include "transport/http_request_reader.h"
#include "transport/http_server.h"
#include "transport/io_stream.h"
#include "transport/io_threads_asio.h"
#include "transport/mesh_link.h"

namespace hivemesh::http_internal {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

// The 503 message for a request that arrives while the server drains.
inline constexpr std::string_view kShuttingDown =
    "the node is shutting down; send the request to another node";

// {"error":"<message>"}. A message may quote a client's bytes (a header's name or value): they
// are escaped as every JSON string is (base/json_string.h), so the answer is valid JSON.
inline std::string ErrorJson(std::string_view message) {
  std::string out = "{\"error\":";
  AppendJsonString(out, message);
  out += '}';
  return out;
}

class Connection;
class LinkSession;
class Relay;

// A connection to a forwarding hop kept for the next exchange, and since when.
struct KeptHop {
  std::unique_ptr<IoStream> stream;
  std::chrono::steady_clock::time_point since;
};

// What the I/O handlers share. Connections and the accept loop hold it, so it outlives the
// server object while any handler is still queued.
inline constexpr size_t kMaxTunnelSessions = 256;

struct Core {
  Core(const HttpServerOptions& o, HttpHandler h, IoThreads& io)
      : options(o),
        clock(*o.clock),
        handler(std::move(h)),
        rejections(o.rejections ? o.rejections : std::make_shared<Rejections>()),
        request_limits{o.max_body_bytes},
        limits(o.max_connections > 0 ? o.max_connections : DefaultConnectionLimits().max_total,
               o.max_connections_per_source > 0 ? o.max_connections_per_source
                                                : DefaultConnectionLimits().max_per_source),
        acceptor(AsioContext(io, 0).get_executor()),
        accept_pause(std::make_unique<asio::steady_timer>(AsioContext(io, 0).get_executor())),
        loops(static_cast<size_t>(io.size())) {
    for (int i = 0; i < io.size(); ++i) loops[static_cast<size_t>(i)].ioc = &AsioContext(io, i);
  }

  const HttpServerOptions options;
  const Clock& clock;  // options.clock's
  const HttpHandler handler;
  const std::shared_ptr<Rejections> rejections;  // never null
  const RequestLimits request_limits;
  ConnectionLimits limits;
  tcp::acceptor acceptor;  // used on loop 0's thread once the server has started
  // After accept() fails, how long the acceptor waits before it tries again (loop 0's thread):
  // 0 after a success, then 10 ms doubling up to 1 s while it keeps failing. The timer is
  // destroyed when the server stops accepting, on loop 0's thread: this Core may outlive loop
  // 0's event loop (a handler on another loop holds it), and a timer must not outlive its loop.
  std::unique_ptr<asio::steady_timer> accept_pause;
  std::chrono::milliseconds accept_backoff{0};
  std::atomic<bool> draining{false};
  // Set by Stop() before it visits every loop; then no handler or on_sent callback is called.
  std::atomic<bool> stopped{false};
  std::atomic<int> busy{0};
  std::atomic<unsigned> next_loop{0};

  struct Loop {
    asio::io_context* ioc = nullptr;  // run by this loop's one thread
    // Taken by the loop's thread and by Stop() and StopAccepting() (through RunOn, on the loop's
    // thread too); a connection registers itself when it is made and leaves when destroyed.
    absl::Mutex mu;
    std::unordered_set<Connection*> connections ABSL_GUARDED_BY(mu);  // this loop's connections
    std::unordered_set<LinkSession*> links ABSL_GUARDED_BY(mu);       // this loop's mesh links
    std::unordered_set<Relay*> relays ABSL_GUARDED_BY(mu);  // this loop's relayed connections
    // Connections to forwarding hops kept for the next exchange (ForwardPlan), by hop; touched
    // only on the loop's thread.
    std::unordered_map<std::string, std::vector<KeptHop>> idle_hops;
    size_t idle_hop_count = 0;
    std::chrono::steady_clock::time_point next_idle_sweep;
    // The last TLS session of a tunnel to each node address, resumed by the loop's next tunnel
    // there (IoStream::ResumableSession); touched only on the loop's thread. At most
    // kMaxTunnelSessions addresses: past that the table starts over.
    std::unordered_map<std::string, std::shared_ptr<SSL_SESSION>> tunnel_sessions;
  };
  std::vector<Loop> loops;  // fixed size
};

// The IP address of a connected socket's peer, as text; empty if it is not known.
inline std::string RemoteAddress(const tcp::socket& socket) {
  beast::error_code ec;
  const tcp::endpoint peer = socket.remote_endpoint(ec);
  return ec ? std::string() : peer.address().to_string();
}

// Appends a response's status line, Content-Type, Content-Length (of its body and tail) and its
// own fields to `out`; the caller adds any field of its own and the blank line that ends the head.
void AppendResponseHead(std::string* out, const HttpResponse& response);
// Appends `data` to `out` as one chunk of a chunked body.
void AppendChunk(std::string* out, std::string_view data);

// Takes over an upgraded connection's stream (and whatever it had buffered past the upgrade
// request, and its place under the connection limits) as a mesh link on loop `loop`, from
// `member` (empty: not authorized as anyone). Called on that loop's thread.
void StartLink(IoStream stream, beast::flat_buffer buffered, std::shared_ptr<Core> core, int loop,
               ConnectionLimits::Slot slot, std::string member);

// The link, shared, or null if it is being destroyed (for the server's Stop).
std::shared_ptr<LinkSession> LinkPtr(LinkSession& link);
// Closes a link (on its loop's thread), e.g. when the server stops.
void CloseLink(LinkSession& link);
// The member a link was authorized as (empty: none).
const std::string& LinkMember(const LinkSession& link);
// Tells a link the server drains (on its loop's thread): it ends once it has no open request.
void DrainLink(LinkSession& link);

// Connection-level pass-through (transport/relay.h), on loop `loop`'s thread. Both take over
// the client's stream and its place under the connection limits.
// At a Service's port: `from_client` (the first bytes read) goes to the first of `plan`'s hops
// that connects, then bytes flow both ways.
void StartPassThrough(IoStream client, std::string from_client, std::shared_ptr<Core> core,
                      int loop, ConnectionLimits::Slot slot, RelayPlan plan);
// At the serving end of a tunnel: `workload` is connected; `to_client` (the 101) and
// `from_client` (bytes the client sent past its upgrade request) go first.
void StartTunnel(IoStream client, std::string from_client, IoStream workload, std::string to_client,
                 std::shared_ptr<Core> core, int loop, ConnectionLimits::Slot slot);
// What a forwarded exchange does when its deadline passes.
class ForwardTimeouts {
 public:
  virtual ~ForwardTimeouts() = default;
  virtual void TimedOut() = 0;
};

// The side of an exchange that a request's connection plays in forwarding (ForwardPlan): the
// HTTP server's connection, whose request head has been read.
class ForwardClient {
 public:
  virtual ~ForwardClient() = default;
  // The exchange under way, told when the deadline below passes.
  virtual void AttachForward(std::weak_ptr<ForwardTimeouts> forward) = 0;
  // The exchange's deadline: `timeout` from now (the connection's own timer, cheap to move).
  virtual void SetForwardDeadline(std::chrono::nanoseconds timeout) = 0;
  virtual IoStream& stream() = 0;
  virtual beast::flat_buffer& buffer() = 0;
  virtual RequestReader& reader() = 0;
  virtual std::string_view method() const = 0;
  virtual bool keep_alive() const = 0;
  virtual bool expects_continue() const = 0;
  virtual bool draining() const = 0;  // the server stops: the connection closes after this
  // The exchange is over (on the loop's thread). `reuse`: the connection reads its next request,
  // else it closes. `fallback`: nothing was sent anywhere and the body is unread: the request is
  // to be read whole and handled as usual.
  virtual void ForwardEnded(bool reuse, bool fallback) = 0;
};
// Streams the request of `client` (its head read) along `plan`, on loop `loop`'s thread.
void StartForward(std::shared_ptr<ForwardClient> client, ForwardPlan plan,
                  std::shared_ptr<Core> core, int loop);
// Closes loop `loop`'s kept connections to hops (on its thread).
void CloseIdleHops(Core& core, int loop);

// The relay, shared, or null if it is being destroyed (for the server's Stop).
std::shared_ptr<Relay> RelayPtr(Relay& relay);
// Closes a relay (on its loop's thread).
void CloseRelay(Relay& relay);

}  // namespace hivemesh::http_internal
