// The parts of PeerClient that its two transports share: plain pooled HTTP/1.1 connections
// (peer_client.cc) and mesh links (peer_link.cc). For those .cc files only (Asio and Beast
// inside; the public header stays free of them).
#pragma once

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/clock.h"
#include "transport/io_deadline.h"
#include "transport/io_stream.h"
#include "transport/peer_client.h"
#include "transport/tls.h"

namespace hivemesh::peer_internal {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using boost::system::error_code;

// The largest answer body a peer may send.
inline constexpr uint64_t kMaxAnswerBytes = 256u << 20;

inline constexpr std::string_view kRefused = "connection refused";

// Parses a response straight into a PeerResponse: each header field goes into the table under
// its lower-case name as it is parsed, and the body into a string (as Beast's string_body would),
// with no field container in between.
class ResponseParser final : public http::basic_parser<false> {
 public:
  PeerResponse& response() { return response_; }
  std::string& body() { return body_; }

 private:
  void on_request_impl(http::verb, beast::string_view, beast::string_view, int,
                       error_code&) override {}  // responses only
  void on_response_impl(int code, beast::string_view, int, error_code&) override {
    response_.status = code;
    response_.headers.reserve(8, 256);  // a peer's answer has a handful of fields
  }
  void on_field_impl(http::field, beast::string_view name, beast::string_view value,
                     error_code&) override {
    response_.headers.Add(std::string_view(name.data(), name.size()),
                          std::string_view(value.data(), value.size()));
  }
  void on_header_impl(error_code&) override {}
  void on_body_init_impl(const boost::optional<std::uint64_t>& length, error_code& ec) override {
    if (!length) return;
    if (*length > body_.max_size()) {
      ec = http::error::buffer_overflow;
      return;
    }
    body_.reserve(static_cast<size_t>(*length));
  }
  size_t on_body_impl(beast::string_view piece, error_code&) override {
    body_.append(piece.data(), piece.size());
    return piece.size();
  }
  void on_chunk_header_impl(std::uint64_t, beast::string_view, error_code&) override {}
  size_t on_chunk_body_impl(std::uint64_t, beast::string_view piece, error_code&) override {
    body_.append(piece.data(), piece.size());
    return piece.size();
  }
  void on_finish_impl(error_code&) override {}

  PeerResponse response_;
  std::string body_;
};

class Link;

struct Connection {
  Connection(const asio::any_io_executor& ex, const Clock& clock)
      : stream(ex), deadline(ex, clock) {}
  IoStream stream;
  IoDeadline deadline;  // of the current request
  beast::flat_buffer buffer;
  bool counted = false;    // in Core::open
  bool timed_out = false;  // the deadline closed the socket
};

// What the I/O handlers share. Handlers hold it through their Call, so it outlives the client
// object while any handler is still queued.
struct Core {
  Core(int loops, CredentialFn c, const Clock& k, std::shared_ptr<TlsSettings> t)
      : clock(k),
        credential(std::move(c)),
        tls(std::move(t)),
        idle(static_cast<size_t>(loops)),
        links(static_cast<size_t>(loops)),
        http_only(static_cast<size_t>(loops)),
        sessions(static_cast<size_t>(loops)) {}
  const Clock& clock;                      // every deadline's
  const CredentialFn credential;           // null: requests and links carry no member credential
  const std::shared_ptr<TlsSettings> tls;  // null: plain connections
  using Pool = std::map<std::string, std::vector<std::shared_ptr<Connection>>>;
  std::vector<Pool> idle;  // idle[i]: touched only on loop i's thread
  // links[i]: loop i's mesh link to each peer address; touched only on loop i's thread.
  std::vector<std::unordered_map<std::string, std::shared_ptr<Link>>> links;
  // http_only[i]: peers that declined a link, and until when loop i uses plain HTTP with them.
  std::vector<std::unordered_map<std::string, SteadyTime>> http_only;
  // sessions[i]: loop i's last TLS session with each peer address, resumed by its next
  // connection there; touched only on loop i's thread.
  std::vector<std::unordered_map<std::string, std::shared_ptr<SSL_SESSION>>> sessions;
  std::atomic<int> open{0};        // connections, links included
  std::atomic<int> open_links{0};  // links (upgraded and not yet closed)
  // Set by Stop() before it visits every loop; a handler that sees it runs no callback.
  std::atomic<bool> stopped{false};
};

struct Call {
  Call(std::shared_ptr<Core> c, PeerRequest r, PeerCallback d)
      : core(std::move(c)), request(std::move(r)), done(std::move(d)) {}
  std::shared_ptr<Core> core;
  PeerRequest request;
  PeerCallback done;
  int loop = 0;
  asio::any_io_executor executor;  // loop's
  std::string head;
  std::shared_ptr<Connection> conn;
  std::optional<ResponseParser> parser;
  bool reused = false;  // on a pooled connection, or on a link that was open before the call
  // On a link:
  std::weak_ptr<Link> link;  // the link carrying it (loop only)
  uint32_t stream = 0;       // its Hivemesh-Stream number
  bool retried = false;      // sent again after its link broke
  // When the call times out, set once when it is sent: a retry, or a switch to plain HTTP,
  // gets only what is left.
  SteadyTime deadline;  // of core->clock
};

// With TLS settings: puts TLS over `stream`'s connected socket (resuming loop `loop`'s session
// with `address` if it has one), handshakes, and checks that the server's certificate is
// `peer_node`'s; then `done(ec, refused)`, `refused` saying why the check refused the server.
// Without settings, `done` runs at once with no error.
void SecureThen(Core& core, int loop, IoStream& stream, const std::string& address,
                const std::string& peer_node,
                std::function<void(error_code ec, std::string refused)> done);
// Keeps `stream`'s TLS session for the loop's next connection to `address` (once an answer has
// come: TLS 1.3 sends its ticket after the handshake).
void KeepSession(Core& core, int loop, const std::string& address, IoStream& stream);

// What a loop's idle connections and links are kept under: the peer's address, and over TLS
// also the member it was checked to be (a connection checked for one member is never used for
// another that has since taken its address).
inline std::string PoolKey(const Core& core, const PeerRequest& r) {
  return core.tls == nullptr ? r.address : r.address + '\n' + r.peer_node;
}

// Runs the call's callback with `result`, unless the client has stopped.
void Finish(const std::shared_ptr<Call>& call, absl::StatusOr<PeerResponse> result);
// Sends the call over a plain pooled HTTP/1.1 connection.
void StartHttp(const std::shared_ptr<Call>& call);
// Sends the call over the loop's mesh link to its peer, opening the link if there is none (a
// peer that declines links gets the call over plain HTTP).
void StartOnLink(const std::shared_ptr<Call>& call);
// Closes every link of loop `loop` (on its thread); their calls get no callback.
void CloseLinks(Core& core, int loop);
// Closes loop `loop`'s links to member `peer_node` (on its thread); their calls fail.
void CloseLinksTo(Core& core, int loop, const std::string& peer_node);
// `address` as an endpoint, if it is ip:port.
bool ParseEndpoint(const std::string& address, tcp::endpoint* out);
// A connection that failed with `ec` under a call written on it while it was already open (pooled
// or a link) may just have been closed by the peer (idle, or it restarted): the call is worth one
// more try on a new connection.
bool PeerMayHaveClosed(error_code ec);
// The error a call gets when its transport fails with `ec`.
absl::Status TransportError(const std::string& address, error_code ec, bool timed_out);
// Builds the call's request head (request line and fields, with Hivemesh-Stream on a link) in
// call.head and appends the buffers to write: the head, then the body and the tensors' bytes.
void AppendRequest(Call& call, std::vector<asio::const_buffer>& buffers);

}  // namespace hivemesh::peer_internal
