#include "api/http_server.h"

#include <spdlog/spdlog.h>

#include <array>
#include <boost/container/small_vector.hpp>
#include <optional>
#include <vector>

#include "api/http_server_internal.h"
#include "base/io_deadline.h"
#include "base/io_write.h"
#include "base/strings.h"

namespace hivemesh {
namespace http_internal {

class Connection final : public HttpRequest, public std::enable_shared_from_this<Connection> {
 public:
  Connection(tcp::socket socket, std::shared_ptr<Core> core, int loop);
  ~Connection() override;
  void Start() { ReadHeader(); }

  // HttpRequest
  std::string_view method() const override { return request_head_.method(); }
  std::string_view target() const override { return request_head_.target(); }
  std::string_view header(std::string_view name) const override {
    const RequestHead::Field* f = request_head_.Find(name);
    return f == nullptr ? std::string_view() : request_head_.Value(*f);
  }
  bool has_header(std::string_view name) const override {
    return request_head_.Find(name) != nullptr;
  }
  std::shared_ptr<const std::string> body() const override { return body_; }
  SteadyTime received() const override { return received_; }
  std::string_view remote_address() const override { return remote_; }

  // A request to switch to a mesh link that this server takes (not while it drains).
  bool WantsLink() const {
    const RequestHead::Field* upgrade = request_head_.Find("Upgrade");
    return core_->options.accept_links && upgrade != nullptr &&
           beast::iequals(request_head_.Value(*upgrade), kLinkProtocol) && method() == "GET" &&
           body_->empty() && !core_->draining.load(std::memory_order_relaxed);
  }

  void Close() {
    beast::error_code ec;
    socket_.shutdown(tcp::socket::shutdown_both, ec);
    socket_.close(ec);
    deadline_.Cancel();
  }

 private:
  void ReadHeader();
  void OnHeader(beast::error_code ec);
  void ReadBody();
  void OnBody(beast::error_code ec);
  void Dispatch();
  void SendError(int status, std::string_view message, bool close);
  void Send(HttpResponse response);
  void OnWritten(beast::error_code ec);
  // The current read or write fails (the socket closes) unless done within `timeout`.
  void ExpiresAfter(std::chrono::milliseconds timeout) {
    deadline_.ExpiresAfter(
        timeout, [this] { return shared_from_this(); },
        [this] {
          timed_out_ = true;
          Close();
        });
  }

  tcp::socket socket_;
  std::string remote_;  // the peer's IP address
  IoDeadline deadline_;
  bool timed_out_ = false;
  const std::shared_ptr<Core> core_;
  const int loop_;
  const asio::io_context::executor_type executor_;  // the loop's
  beast::flat_buffer buffer_;
  RequestHead request_head_;             // the current request's; reused
  std::string body_text_;                // the current request's body while it is read
  std::optional<RequestParser> parser_;  // fills request_head_ and body_text_
  std::shared_ptr<const std::string> body_;
  SteadyTime received_;
  bool keep_alive_ = true;
  bool close_after_ = false;
  bool busy_ = false;
  std::string head_;
  HttpResponse response_;
};

void Accept(const std::shared_ptr<Core>& core) {
  const unsigned n = static_cast<unsigned>(core->loops.size());
  const int loop = static_cast<int>(core->next_loop.fetch_add(1, std::memory_order_relaxed) % n);
  core->acceptor.async_accept(
      core->loops[static_cast<size_t>(loop)].ioc->get_executor(),
      [core, loop](beast::error_code ec, tcp::socket s) {
        if (ec) {
          if (ec == asio::error::operation_aborted || !core->acceptor.is_open()) return;
          spdlog::warn("accept failed: {}", ec.message());
        } else if (!core->stopped.load()) {
          beast::error_code ignored;
          s.set_option(tcp::no_delay(true), ignored);
          auto conn = std::make_shared<Connection>(std::move(s), core, loop);
          // The connection's handlers all run on its own loop, starting now.
          asio::post(*core->loops[static_cast<size_t>(loop)].ioc,
                     [conn = std::move(conn)] { conn->Start(); });
        }
        Accept(core);
      });
}

class ServerImpl final : public HttpServer {
 public:
  ServerImpl(const HttpServerOptions& options, HttpHandler handler, std::shared_ptr<IoThreads> io,
             bool owns_io)
      : io_(std::move(io)),
        owns_io_(owns_io),
        core_(std::make_shared<Core>(options, std::move(handler), *io_)) {}

  ~ServerImpl() override { Stop(); }

  absl::Status Bind() {
    const HttpServerOptions& options = core_->options;
    tcp::acceptor& acceptor = core_->acceptor;
    beast::error_code ec;
    const asio::ip::address addr = asio::ip::make_address(options.host, ec);
    if (ec) return absl::InvalidArgumentError("invalid listen host '" + options.host + "'");
    const tcp::endpoint ep(addr, options.port);
    acceptor.open(ep.protocol(), ec);
    if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor.bind(ep, ec);
    if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      return absl::UnavailableError(
          StrCat("cannot listen on ", options.host, ":", options.port, ": ", ec.message()));
    }
    port_ = acceptor.local_endpoint().port();
    return absl::OkStatus();
  }

  uint16_t port() const override { return port_; }

  void Start() override {
    asio::post(*core_->loops[0].ioc, [core = core_] { Accept(core); });
  }

  void StopAccepting() override {
    core_->draining.store(true);
    io_->RunOn(0, [this] {
      beast::error_code ec;
      core_->acceptor.close(ec);
    });
    // Links end once idle: now, or when their last open request is answered.
    for (int i = 0; i < io_->size(); ++i) {
      io_->RunOn(i, [this, i] {
        for (const std::shared_ptr<LinkSession>& l : LinksOf(i)) DrainLink(*l);
      });
    }
  }

  void Stop() override {
    if (stopped_) return;
    stopped_ = true;
    core_->draining.store(true);
    core_->stopped.store(true);
    StopAccepting();
    // Each loop, on its own thread: close its connections. Handlers running before have
    // finished; the ones that run later see `stopped`.
    for (int i = 0; i < io_->size(); ++i) {
      io_->RunOn(i, [this, i] {
        std::vector<std::shared_ptr<Connection>> open;
        Core::Loop& loop = core_->loops[static_cast<size_t>(i)];
        {
          std::lock_guard<std::mutex> lock(loop.mu);
          for (Connection* c : loop.connections) {
            if (auto p = c->weak_from_this().lock()) open.push_back(std::move(p));
          }
        }
        for (const std::shared_ptr<Connection>& c : open) c->Close();
        for (const std::shared_ptr<LinkSession>& l : LinksOf(i)) CloseLink(*l);
      });
    }
    if (owns_io_) io_->Stop();
  }

  int busy_connections() const override { return core_->busy.load(); }

 private:
  // Loop `i`'s links, held (call on that loop's thread).
  std::vector<std::shared_ptr<LinkSession>> LinksOf(int i) {
    std::vector<std::shared_ptr<LinkSession>> links;
    Core::Loop& loop = core_->loops[static_cast<size_t>(i)];
    std::lock_guard<std::mutex> lock(loop.mu);
    for (LinkSession* l : loop.links) {
      if (auto p = LinkPtr(*l)) links.push_back(std::move(p));
    }
    return links;
  }

  const std::shared_ptr<IoThreads> io_;  // declared first: destroyed last
  const bool owns_io_;
  const std::shared_ptr<Core> core_;
  uint16_t port_ = 0;
  bool stopped_ = false;
};

Connection::Connection(tcp::socket socket, std::shared_ptr<Core> core, int loop)
    : socket_(std::move(socket)),
      remote_(RemoteAddress(socket_)),
      deadline_(socket_.get_executor()),
      core_(std::move(core)),
      loop_(loop),
      executor_(core_->loops[static_cast<size_t>(loop)].ioc->get_executor()) {
  Core::Loop& l = core_->loops[static_cast<size_t>(loop_)];
  std::lock_guard<std::mutex> lock(l.mu);
  l.connections.insert(this);
}

Connection::~Connection() {
  Core::Loop& l = core_->loops[static_cast<size_t>(loop_)];
  std::lock_guard<std::mutex> lock(l.mu);
  l.connections.erase(this);
}

void Connection::ReadHeader() {
  parser_.reset();
  parser_.emplace(&request_head_, &body_text_);
  parser_->header_limit(kHeaderLimit);
  parser_->body_limit(core_->options.max_body_bytes);
  ExpiresAfter(core_->options.header_timeout);
  http::async_read_header(
      socket_, buffer_, *parser_,
      [self = shared_from_this()](beast::error_code ec, size_t) { self->OnHeader(ec); });
}

void Connection::OnHeader(beast::error_code ec) {
  if (ec) {
    if (timed_out_ || ec == http::error::end_of_stream || ec == asio::error::operation_aborted ||
        ec == asio::error::eof || ec == asio::error::connection_reset ||
        ec == http::error::partial_message) {
      Close();
      return;
    }
    if (ec == http::error::body_limit) {
      SendError(413, BodyTooLarge(std::nullopt, core_->options.max_body_bytes), true);
      return;
    }
    if (ec == http::error::header_limit) {
      SendError(431, "request headers are larger than 64 KiB", true);
      return;
    }
    SendError(400, StrCat("malformed HTTP request: ", ec.message()), true);
    return;
  }
  received_ = SystemClock::Get().Now();
  keep_alive_ = parser_->keep_alive();
  const boost::optional<uint64_t> length = parser_->content_length();
  if (length && *length > core_->options.max_body_bytes) {
    SendError(413, BodyTooLarge(*length, core_->options.max_body_bytes), true);
    return;
  }
  const RequestHead::Field* expect = request_head_.Find("Expect");
  if (expect != nullptr && beast::iequals(request_head_.Value(*expect), "100-continue")) {
    static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
    asio::async_write(socket_, asio::buffer(kContinue.data(), kContinue.size()),
                      [self = shared_from_this()](beast::error_code wec, size_t) {
                        if (wec) {
                          self->Close();
                          return;
                        }
                        self->ReadBody();
                      });
    return;
  }
  ReadBody();
}

void Connection::ReadBody() {
  // A small body usually arrived with the headers: parse what is buffered now, and read from
  // the socket only if more is to come.
  while (!parser_->is_done() && buffer_.size() > 0) {
    beast::error_code ec;
    const size_t used = parser_->put(buffer_.data(), ec);
    buffer_.consume(used);
    if (ec == http::error::need_more) break;
    if (ec) {
      OnBody(ec);
      return;
    }
    if (used == 0) break;
  }
  if (parser_->is_done()) {
    OnBody({});
    return;
  }
  ExpiresAfter(core_->options.body_timeout);
  http::async_read(socket_, buffer_, *parser_,
                   [self = shared_from_this()](beast::error_code ec, size_t) { self->OnBody(ec); });
}

void Connection::OnBody(beast::error_code ec) {
  if (ec == http::error::body_limit) {
    SendError(413, BodyTooLarge(std::nullopt, core_->options.max_body_bytes), true);
    return;
  }
  if (ec) {
    if (timed_out_ || ec == http::error::partial_message || ec == asio::error::eof ||
        ec == asio::error::connection_reset || ec == http::error::end_of_stream ||
        ec == asio::error::operation_aborted) {
      Close();
      return;
    }
    SendError(400, StrCat("malformed HTTP request body: ", ec.message()), true);
    return;
  }
  deadline_.Clear();
  body_ = std::make_shared<const std::string>(std::move(body_text_));
  Dispatch();
}

void Connection::Dispatch() {
  if (core_->stopped.load()) {
    Close();
    return;
  }
  if (WantsLink()) {
    // Switch this connection to a mesh link: from now on it carries many requests at once.
    static const std::string kSwitch = StrCat(
        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ", kLinkProtocol,
        "\r\n\r\n");
    deadline_.Cancel();
    const std::array<asio::const_buffer, 1> buffers{asio::buffer(kSwitch)};
    WriteNowOrLater(socket_, buffers, [self = shared_from_this()](beast::error_code ec) {
      if (ec) {
        self->Close();
        return;
      }
      StartLink(std::move(self->socket_), std::move(self->buffer_), self->core_, self->loop_);
    });
    return;
  }
  busy_ = true;
  core_->busy.fetch_add(1);
  if (core_->draining.load(std::memory_order_relaxed)) {
    SendError(503, kShuttingDown, true);
    return;
  }
  core_->handler(*this, [self = shared_from_this()](HttpResponse r) {
    // On the connection's own loop (a forwarded request's answer), write at once.
    if (self->executor_.running_in_this_thread()) {
      self->Send(std::move(r));
      return;
    }
    asio::post(self->executor_, [self, r = std::move(r)]() mutable { self->Send(std::move(r)); });
  });
}

void Connection::SendError(int status, std::string_view message, bool close) {
  if (!busy_) {
    busy_ = true;
    core_->busy.fetch_add(1);
  }
  close_after_ = close_after_ || close;
  HttpResponse r;
  r.status = status;
  r.body = ErrorJson(message);
  Send(std::move(r));
}

void Connection::Send(HttpResponse response) {
  response_ = std::move(response);
  if (core_->draining.load(std::memory_order_relaxed)) close_after_ = true;
  const bool close = close_after_ || !keep_alive_;
  head_.clear();
  AppendResponseHead(&head_, response_);
  if (close) head_ += "Connection: close\r\n";
  head_ += "\r\n";
  close_after_ = close;
  boost::container::small_vector<asio::const_buffer, 8> buffers;
  AppendMessageBuffers(buffers, head_, response_.body, response_.tail);
  ExpiresAfter(core_->options.body_timeout);
  WriteNowOrLater(socket_, buffers,
                  [self = shared_from_this()](beast::error_code ec) { self->OnWritten(ec); });
}

void Connection::OnWritten(beast::error_code ec) {
  if (response_.on_sent && !core_->stopped.load(std::memory_order_relaxed)) {
    response_.on_sent(SystemClock::Get().Now());
  }
  response_ = HttpResponse();
  body_.reset();
  if (busy_) {
    busy_ = false;
    core_->busy.fetch_sub(1);
  }
  if (ec || close_after_) {
    Close();
    return;
  }
  ReadHeader();
}

void AppendResponseHead(std::string* out, const HttpResponse& response) {
  size_t length = response.body.size();
  for (const Tensor& t : response.tail) length += t.data().size();
  StrAppend(out, "HTTP/1.1 ", response.status, " ", HttpReason(response.status),
            "\r\nContent-Type: ", response.content_type, "\r\nContent-Length: ", length, "\r\n");
  for (const auto& [k, v] : response.headers) StrAppend(out, k, ": ", v, "\r\n");
}

}  // namespace http_internal

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Create(const HttpServerOptions& options,
                                                               HttpHandler handler,
                                                               std::shared_ptr<IoThreads> io) {
  const bool owns_io = io == nullptr;
  if (owns_io) io = IoThreads::Create(options.threads);
  auto server = std::make_unique<http_internal::ServerImpl>(options, std::move(handler),
                                                            std::move(io), owns_io);
  absl::Status s = server->Bind();
  if (!s.ok()) return s;
  return std::unique_ptr<HttpServer>(std::move(server));
}

std::string_view HttpReason(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 413:
      return "Payload Too Large";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    default:
      return "Unknown";
  }
}

}  // namespace hivemesh
