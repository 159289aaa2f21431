// The parts of HttpServer that its connection types share: the request head and parser, and the
// state the I/O handlers of one server hold. For http_server.cc and http_link.cc only (Asio and
// Beast inside; the public header stays free of them).
#pragma once

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "api/http_server.h"
#include "base/io_threads_asio.h"
#include "base/mesh_link.h"
#include "base/strings.h"

namespace hivemesh::http_internal {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

constexpr uint32_t kHeaderLimit = 64 * 1024;
// The 503 message for a request that arrives while the server drains.
inline constexpr std::string_view kShuttingDown =
    "the node is shutting down; send the request to another node";

// What HttpRequest shows of a request's head: method, target and header fields, kept in storage
// that the connection reuses from one request to the next (no allocation per request once it
// has grown to the usual size).
struct RequestHead {
  struct Field {
    uint32_t name, name_size, value, value_size;  // offsets into `text`
  };
  std::string text;  // the method, the target, then each field's name and value
  size_t method_size = 0, target_size = 0;
  std::vector<Field> fields;  // in arrival order

  void Clear() {
    text.clear();
    fields.clear();
    method_size = target_size = 0;
  }
  std::string_view method() const { return std::string_view(text).substr(0, method_size); }
  std::string_view target() const {
    return std::string_view(text).substr(method_size, target_size);
  }
  // The first field named `name` (case-insensitive), or null.
  const Field* Find(std::string_view name) const {
    for (const Field& f : fields) {
      if (beast::iequals(beast::string_view(text.data() + f.name, f.name_size),
                         beast::string_view(name.data(), name.size()))) {
        return &f;
      }
    }
    return nullptr;
  }
  std::string_view Value(const Field& f) const {
    return std::string_view(text.data() + f.value, f.value_size);
  }
};

// Parses a request into a RequestHead and a body string (as Beast's string_body would), with no
// field container in between.
class RequestParser final : public http::basic_parser<true> {
 public:
  RequestParser(RequestHead* head, std::string* body) : head_(head), body_(body) {
    head_->Clear();
    body_->clear();
  }

 private:
  void on_request_impl(http::verb, beast::string_view method, beast::string_view target, int,
                       beast::error_code&) override {
    head_->text.append(method.data(), method.size());
    head_->text.append(target.data(), target.size());
    head_->method_size = method.size();
    head_->target_size = target.size();
  }
  void on_response_impl(int, beast::string_view, int, beast::error_code&) override {}
  void on_field_impl(http::field, beast::string_view name, beast::string_view value,
                     beast::error_code&) override {
    std::string& text = head_->text;
    const auto at = static_cast<uint32_t>(text.size());
    text.append(name.data(), name.size());
    text.append(value.data(), value.size());
    head_->fields.push_back({at, static_cast<uint32_t>(name.size()),
                             at + static_cast<uint32_t>(name.size()),
                             static_cast<uint32_t>(value.size())});
  }
  void on_header_impl(beast::error_code&) override {}
  void on_body_init_impl(const boost::optional<std::uint64_t>& length,
                         beast::error_code& ec) override {
    if (!length) return;
    if (*length > body_->max_size()) {
      ec = http::error::buffer_overflow;
      return;
    }
    body_->reserve(static_cast<size_t>(*length));
  }
  size_t on_body_impl(beast::string_view piece, beast::error_code&) override {
    body_->append(piece.data(), piece.size());
    return piece.size();
  }
  void on_chunk_header_impl(std::uint64_t, beast::string_view, beast::error_code&) override {}
  size_t on_chunk_body_impl(std::uint64_t, beast::string_view piece, beast::error_code&) override {
    body_->append(piece.data(), piece.size());
    return piece.size();
  }
  void on_finish_impl(beast::error_code&) override {}

  RequestHead* const head_;
  std::string* const body_;
};

inline std::string ErrorJson(std::string_view message) {
  // Messages here are fixed ASCII text, so no escaping is needed beyond quotes.
  std::string out = "{\"error\":\"";
  for (char c : message) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  out += "\"}";
  return out;
}

// The 413 message for a request body over `limit`, of `length` bytes if it is known.
inline std::string BodyTooLarge(std::optional<uint64_t> length, size_t limit) {
  return length ? StrCat("request body of ", *length, " bytes is larger than the limit of ", limit,
                         " bytes")
                : StrCat("request body is larger than the limit of ", limit, " bytes");
}

class Connection;
class LinkSession;

// What the I/O handlers share. Connections and the accept loop hold it, so it outlives the
// server object while any handler is still queued.
struct Core {
  Core(const HttpServerOptions& o, HttpHandler h, IoThreads& io)
      : options(o),
        handler(std::move(h)),
        rejections(o.rejections ? o.rejections : std::make_shared<Rejections>()),
        acceptor(AsioContext(io, 0).get_executor()),
        loops(static_cast<size_t>(io.size())) {
    for (int i = 0; i < io.size(); ++i) loops[static_cast<size_t>(i)].ioc = &AsioContext(io, i);
  }

  const HttpServerOptions options;
  const HttpHandler handler;
  const std::shared_ptr<Rejections> rejections;  // never null
  tcp::acceptor acceptor;  // used on loop 0's thread once the server has started
  std::atomic<bool> draining{false};
  // Set by Stop() before it visits every loop; then no handler or on_sent callback is called.
  std::atomic<bool> stopped{false};
  std::atomic<int> busy{0};
  std::atomic<unsigned> next_loop{0};

  struct Loop {
    asio::io_context* ioc = nullptr;  // run by this loop's one thread
    std::mutex mu;
    std::unordered_set<Connection*> connections;  // guarded by mu; this loop's connections
    std::unordered_set<LinkSession*> links;       // guarded by mu; this loop's mesh links
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

// Takes over an upgraded connection's socket (and whatever it had buffered past the upgrade
// request) as a mesh link on loop `loop`. Called on that loop's thread.
void StartLink(tcp::socket socket, beast::flat_buffer buffered, std::shared_ptr<Core> core,
               int loop);

// The link, shared, or null if it is being destroyed (for the server's Stop).
std::shared_ptr<LinkSession> LinkPtr(LinkSession& link);
// Closes a link (on its loop's thread), e.g. when the server stops.
void CloseLink(LinkSession& link);
// Tells a link the server drains (on its loop's thread): it ends once it has no open request.
void DrainLink(LinkSession& link);

}  // namespace hivemesh::http_internal
