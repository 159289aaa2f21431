#include "routing/peer_client.h"

#include <algorithm>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/container/small_vector.hpp>
#include <map>
#include <optional>
#include <vector>

#include "base/io_deadline.h"
#include "base/io_threads_asio.h"
#include "base/io_write.h"
#include "base/strings.h"

namespace hivemesh::routing {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using boost::system::error_code;

constexpr std::string_view kRefused = "connection refused";

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
    response_.headers.reserve(8);  // a peer's answer has a handful of fields
  }
  void on_field_impl(http::field, beast::string_view name, beast::string_view value,
                     error_code&) override {
    std::string lower(name.data(), name.size());
    for (char& c : lower) {
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');  // ASCII: no locale call
    }
    response_.headers.insert_or_assign(std::move(lower), std::string(value.data(), value.size()));
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

struct Connection {
  explicit Connection(const asio::any_io_executor& ex) : socket(ex), deadline(ex) {}
  tcp::socket socket;
  IoDeadline deadline;  // of the current request
  beast::flat_buffer buffer;
  bool counted = false;    // in Core::open
  bool timed_out = false;  // the deadline closed the socket
};

// What the I/O handlers share. Handlers hold it through their Call, so it outlives the client
// object while any handler is still queued.
struct Core {
  explicit Core(int loops) : idle(static_cast<size_t>(loops)) {}
  using Pool = std::map<std::string, std::vector<std::shared_ptr<Connection>>>;
  std::vector<Pool> idle;  // idle[i]: touched only on loop i's thread
  std::atomic<int> open{0};
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
  bool reused = false;
};

// The steps of one request; each runs on the call's loop thread.
void Start(const std::shared_ptr<Call>& call);
void Connect(const std::shared_ptr<Call>& call);
void Write(const std::shared_ptr<Call>& call);
void Done(const std::shared_ptr<Call>& call);
void Fail(const std::shared_ptr<Call>& call, error_code ec);

void CloseConnection(Core& core, Connection& c) {
  error_code ignored;
  if (c.socket.is_open()) {
    c.socket.shutdown(tcp::socket::shutdown_both, ignored);
    c.socket.close(ignored);
  }
  c.deadline.Cancel();
  if (c.counted) {
    c.counted = false;
    --core.open;
  }
}

void Close(const std::shared_ptr<Call>& call) {
  call->parser.reset();
  if (!call->conn) return;
  CloseConnection(*call->core, *call->conn);
  call->conn.reset();
}

// The request must be answered within its timeout: past it, the connection is closed.
void ExpiresAfter(const std::shared_ptr<Call>& call, std::chrono::milliseconds timeout) {
  Connection* c = call->conn.get();
  c->deadline.ExpiresAfter(
      timeout, [&call] { return call->conn; },
      [c] {
        c->timed_out = true;
        error_code ignored;
        c->socket.close(ignored);
      });
}

void Finish(const std::shared_ptr<Call>& call, absl::StatusOr<PeerResponse> result) {
  PeerCallback done = std::move(call->done);
  call->done = nullptr;
  if (call->core->stopped.load(std::memory_order_relaxed)) {
    Close(call);  // abandoned: the client has stopped
    return;
  }
  if (done) done(std::move(result));
}

void Start(const std::shared_ptr<Call>& call) {
  if (call->core->stopped.load(std::memory_order_relaxed)) return;
  auto& pool = call->core->idle[static_cast<size_t>(call->loop)];
  auto it = pool.find(call->request.address);
  if (it != pool.end() && !it->second.empty()) {
    call->conn = std::move(it->second.back());
    it->second.pop_back();
    call->reused = true;
    Write(call);
    return;
  }
  Connect(call);
}

void Connect(const std::shared_ptr<Call>& call) {
  const std::string& addr = call->request.address;
  const size_t colon = addr.rfind(':');
  error_code ec;
  const asio::ip::address ip = asio::ip::make_address(addr.substr(0, colon), ec);
  int port = colon == std::string::npos ? -1 : std::atoi(addr.c_str() + colon + 1);
  if (ec || port <= 0 || port > 65535) {
    // Not inside Send: the callback runs from the loop.
    asio::post(call->executor, [call] {
      Finish(call, absl::InvalidArgumentError("peer address '" + call->request.address +
                                              "' is not ip:port"));
    });
    return;
  }
  call->conn = std::make_shared<Connection>(call->executor);
  call->reused = false;
  ExpiresAfter(call, call->request.timeout);
  call->conn->socket.async_connect(tcp::endpoint(ip, static_cast<uint16_t>(port)),
                                   [call](error_code ec) {
                                     if (ec) return Fail(call, ec);
                                     call->conn->counted = true;
                                     ++call->core->open;
                                     error_code ignored;
                                     call->conn->socket.set_option(tcp::no_delay(true), ignored);
                                     Write(call);
                                   });
}

void Write(const std::shared_ptr<Call>& call) {
  const PeerRequest& r = call->request;
  size_t length = r.body.size();
  for (const Tensor& t : r.tail) length += t.data().size();
  size_t head_size = r.method.size() + r.target.size() + r.address.size() + 64;
  for (const auto& [k, v] : r.headers) head_size += k.size() + v.size() + 4;
  call->head.clear();
  call->head.reserve(head_size);
  StrAppend(&call->head, r.method, " ", r.target, " HTTP/1.1\r\nHost: ", r.address,
            "\r\nContent-Length: ", length, "\r\n");
  for (const auto& [k, v] : r.headers) StrAppend(&call->head, k, ": ", v, "\r\n");
  call->head += "\r\n";
  boost::container::small_vector<asio::const_buffer, 8> buffers;
  buffers.emplace_back(call->head.data(), call->head.size());
  if (!r.body.empty()) buffers.emplace_back(r.body.data(), r.body.size());
  for (const Tensor& t : r.tail) {
    if (!t.data().empty()) buffers.emplace_back(t.data().data(), t.data().size());
  }
  ExpiresAfter(call, r.timeout);
  WriteNowOrLater(call->conn->socket, buffers, [call](error_code ec) {
    if (ec) return Fail(call, ec);
    call->parser.emplace();
    call->parser->body_limit(256u << 20);
    http::async_read(call->conn->socket, call->conn->buffer, *call->parser,
                     [call](error_code ec, size_t) {
                       if (ec) return Fail(call, ec);
                       Done(call);
                     });
  });
}

void Done(const std::shared_ptr<Call>& call) {
  PeerResponse resp = std::move(call->parser->response());
  resp.body = std::make_shared<const std::string>(std::move(call->parser->body()));
  const bool keep = call->parser->keep_alive();
  call->parser.reset();
  call->conn->deadline.Clear();
  if (keep && !call->conn->timed_out && call->conn->socket.is_open() &&
      !call->core->stopped.load(std::memory_order_relaxed)) {
    call->core->idle[static_cast<size_t>(call->loop)][call->request.address].push_back(
        std::move(call->conn));
  } else {
    Close(call);
  }
  Finish(call, std::move(resp));
}

void Fail(const std::shared_ptr<Call>& call, error_code ec) {
  const bool timed_out = call->conn && call->conn->timed_out;
  Close(call);
  // A pooled connection the peer closed while idle: try once more on a fresh one.
  if (call->reused && !call->core->stopped.load(std::memory_order_relaxed) &&
      (ec == http::error::end_of_stream || ec == asio::error::connection_reset ||
       ec == asio::error::eof || ec == asio::error::broken_pipe)) {
    Connect(call);
    return;
  }
  if (ec == asio::error::connection_refused) {
    return Finish(call, absl::UnavailableError(StrCat(kRefused, " by ", call->request.address)));
  }
  if (timed_out) {
    return Finish(call, absl::DeadlineExceededError(
                            StrCat("no answer from ", call->request.address, " in time")));
  }
  Finish(call, absl::UnavailableError(
                   StrCat("connection to ", call->request.address, " failed: ", ec.message())));
}

class PeerClientImpl final : public PeerClient {
 public:
  PeerClientImpl(std::shared_ptr<IoThreads> io, bool owns_io)
      : io_(std::move(io)), owns_io_(owns_io), core_(std::make_shared<Core>(io_->size())) {}
  ~PeerClientImpl() override { Stop(); }

  void Stop() override {
    if (core_->stopped.exchange(true)) return;
    // Each loop, on its own thread: close the idle connections. After this, every handler of
    // this client that runs sees `stopped` and runs no callback.
    for (int i = 0; i < io_->size(); ++i) {
      io_->RunOn(i, [this, i] {
        for (auto& [_, conns] : core_->idle[static_cast<size_t>(i)]) {
          for (const std::shared_ptr<Connection>& c : conns) CloseConnection(*core_, *c);
        }
        core_->idle[static_cast<size_t>(i)].clear();
      });
    }
    if (owns_io_) io_->Stop();
  }

  int open_connections() const override { return core_->open.load(); }

  void Send(PeerRequest request, PeerCallback done) override {
    if (core_->stopped.load(std::memory_order_relaxed)) return;
    auto call = std::make_shared<Call>(core_, std::move(request), std::move(done));
    const int current = io_->CurrentLoop();
    call->loop = current >= 0 ? current : io_->NextLoop();
    call->executor = AsioContext(*io_, call->loop).get_executor();
    if (current >= 0) {
      Start(call);  // already on the loop: send now, on this thread
    } else {
      asio::post(call->executor, [call] { Start(call); });
    }
  }

 private:
  const std::shared_ptr<IoThreads> io_;
  const bool owns_io_;
  const std::shared_ptr<Core> core_;
};

}  // namespace

PeerHeaders::iterator PeerHeaders::find(std::string_view name) {
  return std::find_if(fields_.begin(), fields_.end(),
                      [name](const value_type& f) { return f.first == name; });
}

PeerHeaders::const_iterator PeerHeaders::find(std::string_view name) const {
  return std::find_if(fields_.begin(), fields_.end(),
                      [name](const value_type& f) { return f.first == name; });
}

std::string& PeerHeaders::operator[](std::string_view name) {
  auto it = find(name);
  if (it != fields_.end()) return it->second;
  return fields_.emplace_back(std::string(name), std::string()).second;
}

void PeerHeaders::insert_or_assign(std::string name, std::string value) {
  auto it = find(name);
  if (it != fields_.end()) {
    it->second = std::move(value);
    return;
  }
  fields_.emplace_back(std::move(name), std::move(value));
}

bool IsConnectionRefused(const absl::Status& status) {
  return status.code() == absl::StatusCode::kUnavailable && MessageOf(status).starts_with(kRefused);
}

std::unique_ptr<PeerClient> PeerClient::Create(std::shared_ptr<IoThreads> io) {
  if (io == nullptr) return std::make_unique<PeerClientImpl>(IoThreads::Create(1), true);
  return std::make_unique<PeerClientImpl>(std::move(io), false);
}

}  // namespace hivemesh::routing
