#include "api/http_server.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <future>
#include <mutex>
#include <optional>
#include <thread>

#include "base/strings.h"

namespace hivemesh {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

constexpr uint32_t kHeaderLimit = 64 * 1024;

std::string ErrorJson(std::string_view message) {
  // Messages here are fixed ASCII text, so no escaping is needed beyond quotes.
  std::string out = "{\"error\":\"";
  for (char c : message) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  out += "\"}";
  return out;
}

class ServerImpl;

class Connection final : public HttpRequest, public std::enable_shared_from_this<Connection> {
 public:
  Connection(tcp::socket socket, ServerImpl* server);
  void Start() { ReadHeader(); }

  // HttpRequest
  std::string_view method() const override { return parser_->get().method_string(); }
  std::string_view target() const override { return parser_->get().target(); }
  std::string_view header(std::string_view name) const override {
    const auto& fields = parser_->get();
    auto it = fields.find(beast::string_view(name.data(), name.size()));
    if (it == fields.end()) return {};
    return it->value();
  }
  bool has_header(std::string_view name) const override {
    const auto& fields = parser_->get();
    return fields.find(beast::string_view(name.data(), name.size())) != fields.end();
  }
  std::shared_ptr<const std::string> body() const override { return body_; }
  SteadyTime received() const override { return received_; }

  void Close() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.close();
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

  beast::tcp_stream stream_;
  ServerImpl* const server_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::shared_ptr<const std::string> body_;
  SteadyTime received_;
  bool keep_alive_ = true;
  bool close_after_ = false;
  bool busy_ = false;
  std::string head_;
  HttpResponse response_;
};

class ServerImpl final : public HttpServer {
 public:
  ServerImpl(const HttpServerOptions& options, HttpHandler handler)
      : options_(options),
        handler_(std::move(handler)),
        ioc_(options.threads),
        work_(asio::make_work_guard(ioc_)),
        acceptor_(asio::make_strand(ioc_)) {}

  ~ServerImpl() override { Stop(); }

  absl::Status Bind() {
    beast::error_code ec;
    const asio::ip::address addr = asio::ip::make_address(options_.host, ec);
    if (ec) return absl::InvalidArgumentError("invalid listen host '" + options_.host + "'");
    const tcp::endpoint ep(addr, options_.port);
    acceptor_.open(ep.protocol(), ec);
    if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(ep, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      return absl::UnavailableError(
          StrCat("cannot listen on ", options_.host, ":", options_.port, ": ", ec.message()));
    }
    port_ = acceptor_.local_endpoint().port();
    return absl::OkStatus();
  }

  uint16_t port() const override { return port_; }

  void Start() override {
    Accept();
    for (int i = 0; i < options_.threads; ++i) {
      threads_.emplace_back([this] { ioc_.run(); });
    }
  }

  void StopAccepting() override {
    draining_.store(true);
    if (threads_.empty()) {
      beast::error_code ec;
      acceptor_.close(ec);
      return;
    }
    std::promise<void> done;
    asio::post(acceptor_.get_executor(), [&] {
      beast::error_code ec;
      acceptor_.close(ec);
      done.set_value();
    });
    done.get_future().wait();
  }

  void Stop() override {
    if (stopped_) return;
    stopped_ = true;
    draining_.store(true);
    work_.reset();
    ioc_.stop();
    for (std::thread& t : threads_) t.join();
    threads_.clear();
  }

  int busy_connections() const override { return busy_.load(); }

  const HttpServerOptions& options() const { return options_; }
  const HttpHandler& handler() const { return handler_; }
  bool draining() const { return draining_.load(std::memory_order_relaxed); }
  std::atomic<int> busy_{0};

 private:
  void Accept() {
    acceptor_.async_accept(asio::make_strand(ioc_), [this](beast::error_code ec, tcp::socket s) {
      if (ec) {
        if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
        spdlog::warn("accept failed: {}", ec.message());
      } else {
        beast::error_code ignored;
        s.set_option(tcp::no_delay(true), ignored);
        std::make_shared<Connection>(std::move(s), this)->Start();
      }
      Accept();
    });
  }

  const HttpServerOptions options_;
  const HttpHandler handler_;
  asio::io_context ioc_;
  // Keeps the I/O threads running while no operation is pending (e.g. every connection waiting
  // for a model), until Stop().
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  tcp::acceptor acceptor_;
  uint16_t port_ = 0;
  std::atomic<bool> draining_{false};
  bool stopped_ = false;
  std::vector<std::thread> threads_;
};

Connection::Connection(tcp::socket socket, ServerImpl* server)
    : stream_(std::move(socket)), server_(server) {}

void Connection::ReadHeader() {
  parser_.emplace();
  parser_->header_limit(kHeaderLimit);
  parser_->body_limit(server_->options().max_body_bytes);
  stream_.expires_after(server_->options().header_timeout);
  http::async_read_header(
      stream_, buffer_, *parser_,
      [self = shared_from_this()](beast::error_code ec, size_t) { self->OnHeader(ec); });
}

void Connection::OnHeader(beast::error_code ec) {
  if (ec) {
    if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
        ec == asio::error::operation_aborted || ec == asio::error::eof ||
        ec == asio::error::connection_reset || ec == http::error::partial_message) {
      Close();
      return;
    }
    if (ec == http::error::body_limit) {
      SendError(413,
                StrCat("request body is larger than the limit of ",
                       server_->options().max_body_bytes, " bytes"),
                true);
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
  const auto& req = parser_->get();
  keep_alive_ = req.keep_alive();
  const boost::optional<uint64_t> length = parser_->content_length();
  if (length && *length > server_->options().max_body_bytes) {
    SendError(413,
              StrCat("request body of ", *length, " bytes is larger than the limit of ",
                     server_->options().max_body_bytes, " bytes"),
              true);
    return;
  }
  const auto expect = req.find(http::field::expect);
  if (expect != req.end() && beast::iequals(expect->value(), "100-continue")) {
    static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
    asio::async_write(stream_, asio::buffer(kContinue.data(), kContinue.size()),
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
  if (parser_->is_done()) {
    OnBody({});
    return;
  }
  stream_.expires_after(server_->options().body_timeout);
  http::async_read(stream_, buffer_, *parser_,
                   [self = shared_from_this()](beast::error_code ec, size_t) { self->OnBody(ec); });
}

void Connection::OnBody(beast::error_code ec) {
  if (ec == http::error::body_limit) {
    SendError(413,
              StrCat("request body is larger than the limit of ", server_->options().max_body_bytes,
                     " bytes"),
              true);
    return;
  }
  if (ec) {
    if (ec == beast::error::timeout || ec == http::error::partial_message ||
        ec == asio::error::eof || ec == asio::error::connection_reset ||
        ec == http::error::end_of_stream || ec == asio::error::operation_aborted) {
      Close();
      return;
    }
    SendError(400, StrCat("malformed HTTP request body: ", ec.message()), true);
    return;
  }
  stream_.expires_never();
  body_ = std::make_shared<const std::string>(std::move(parser_->get().body()));
  Dispatch();
}

void Connection::Dispatch() {
  busy_ = true;
  server_->busy_.fetch_add(1);
  if (server_->draining()) {
    SendError(503, "the node is shutting down; send the request to another node", true);
    return;
  }
  server_->handler()(*this, [self = shared_from_this()](HttpResponse r) {
    asio::post(self->stream_.get_executor(),
               [self, r = std::move(r)]() mutable { self->Send(std::move(r)); });
  });
}

void Connection::SendError(int status, std::string_view message, bool close) {
  if (!busy_) {
    busy_ = true;
    server_->busy_.fetch_add(1);
  }
  close_after_ = close_after_ || close;
  HttpResponse r;
  r.status = status;
  r.body = ErrorJson(message);
  Send(std::move(r));
}

void Connection::Send(HttpResponse response) {
  response_ = std::move(response);
  if (server_->draining()) close_after_ = true;
  const bool close = close_after_ || !keep_alive_;
  size_t length = response_.body.size();
  for (const Tensor& t : response_.tail) length += t.data().size();
  head_.clear();
  StrAppend(&head_, "HTTP/1.1 ", response_.status, " ", HttpReason(response_.status),
            "\r\nContent-Type: ", response_.content_type, "\r\nContent-Length: ", length, "\r\n");
  for (const auto& [k, v] : response_.headers) StrAppend(&head_, k, ": ", v, "\r\n");
  if (close) head_ += "Connection: close\r\n";
  head_ += "\r\n";
  close_after_ = close;
  std::vector<asio::const_buffer> buffers;
  buffers.reserve(2 + response_.tail.size());
  buffers.emplace_back(head_.data(), head_.size());
  if (!response_.body.empty()) buffers.emplace_back(response_.body.data(), response_.body.size());
  for (const Tensor& t : response_.tail) {
    if (!t.data().empty()) buffers.emplace_back(t.data().data(), t.data().size());
  }
  stream_.expires_after(server_->options().body_timeout);
  asio::async_write(stream_, buffers, [self = shared_from_this()](beast::error_code ec, size_t) {
    self->OnWritten(ec);
  });
}

void Connection::OnWritten(beast::error_code ec) {
  if (response_.on_sent) response_.on_sent(SystemClock::Get().Now());
  response_ = HttpResponse();
  body_.reset();
  if (busy_) {
    busy_ = false;
    server_->busy_.fetch_sub(1);
  }
  if (ec || close_after_) {
    Close();
    return;
  }
  ReadHeader();
}

}  // namespace

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Create(const HttpServerOptions& options,
                                                               HttpHandler handler) {
  auto server = std::make_unique<ServerImpl>(options, std::move(handler));
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
