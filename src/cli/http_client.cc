#include "cli/http_client.h"

#include <algorithm>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <chrono>
#include <optional>

#include "base/strings.h"

namespace hivemesh {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using boost::system::error_code;

constexpr uint64_t kMaxResponseBody = uint64_t{4} << 30;  // far above any tensor a node returns
constexpr uint32_t kMaxResponseHeader = 64 << 10;

struct Address {
  std::string host, port;
};

absl::StatusOr<Address> ParseAddress(const std::string& host_port) {
  Address a;
  size_t colon;
  if (!host_port.empty() && host_port[0] == '[') {
    const size_t close = host_port.find(']');
    if (close == std::string::npos || close + 1 >= host_port.size() ||
        host_port[close + 1] != ':') {
      colon = std::string::npos;
    } else {
      a.host = host_port.substr(1, close - 1);
      colon = close + 1;
    }
  } else {
    colon = host_port.rfind(':');
    if (colon != std::string::npos) a.host = host_port.substr(0, colon);
  }
  if (colon != std::string::npos) a.port = host_port.substr(colon + 1);
  const bool port_ok =
      !a.port.empty() && a.port.size() <= 5 &&
      std::all_of(a.port.begin(), a.port.end(), [](char c) { return c >= '0' && c <= '9'; }) &&
      std::stoi(a.port) > 0 && std::stoi(a.port) < 65536;
  if (a.host.empty() || !port_ok) {
    return absl::InvalidArgumentError(
        StrCat("node address '", host_port, "' is not host:port (e.g. 127.0.0.1:8000)"));
  }
  return a;
}

bool HasLineBreak(std::string_view s) { return s.find_first_of("\r\n") != std::string_view::npos; }

// Errors that say the peer closed or reset the connection (as a server does with an idle one).
bool IsConnectionLoss(const error_code& ec) {
  return ec == http::error::end_of_stream || ec == asio::error::eof ||
         ec == asio::error::connection_reset || ec == asio::error::broken_pipe ||
         ec == asio::error::connection_aborted || ec == http::error::partial_message;
}

}  // namespace

struct HttpClient::Impl {
  asio::io_context ioc;
  beast::tcp_stream stream{ioc};
  beast::flat_buffer buffer;
  bool open = false;
  bool reused = false;  // the open connection has carried a complete exchange
  int opened = 0;

  // Runs one asynchronous operation to completion on this thread; returns its error.
  template <typename Start>
  error_code Run(Start&& start) {
    error_code result;
    start([&result](error_code ec, auto&&...) { result = ec; });
    ioc.restart();
    ioc.run();
    return result;
  }

  void Close() {
    if (open) {
      error_code ignored;
      stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
      stream.close();
    }
    open = false;
    reused = false;
    buffer.clear();
  }
};

HttpClient::HttpClient(std::string host_port, int timeout_ms)
    : host_port_(std::move(host_port)), timeout_ms_(timeout_ms), impl_(std::make_unique<Impl>()) {}
HttpClient::~HttpClient() {
  if (impl_ != nullptr) impl_->Close();
}
HttpClient::HttpClient(HttpClient&&) noexcept = default;
HttpClient& HttpClient::operator=(HttpClient&&) noexcept = default;

int HttpClient::connections_opened() const { return impl_->opened; }

absl::StatusOr<HttpResult> HttpClient::Request(
    std::string_view method, std::string_view target, std::string_view body,
    const std::vector<std::pair<std::string, std::string>>& headers) {
  absl::StatusOr<Address> address = ParseAddress(host_port_);
  if (!address.ok()) return address.status();
  if (method.empty() || HasLineBreak(method) || HasLineBreak(target) || target.empty() ||
      target[0] != '/') {
    return absl::InvalidArgumentError(StrCat("invalid request line: ", method, " ", target));
  }
  std::string head = StrCat(method, " ", target, " HTTP/1.1\r\nHost: ", host_port_,
                            "\r\nUser-Agent: hivemesh-cli\r\n");
  for (const auto& [name, value] : headers) {
    if (name.empty() || HasLineBreak(name) || HasLineBreak(value)) {
      return absl::InvalidArgumentError(StrCat("invalid request header '", name, "'"));
    }
    StrAppend(&head, name, ": ", value, "\r\n");
  }
  if (!body.empty() || method == "POST" || method == "PUT") {
    StrAppend(&head, "Content-Length: ", body.size(), "\r\n");
  }
  head += "\r\n";

  Impl& s = *impl_;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms_);
  const std::string timed_out =
      StrCat("the node at ", host_port_, " did not answer within ", timeout_ms_, " ms");
  for (int attempt = 0;; ++attempt) {
    if (!s.open) {
      tcp::resolver resolver(s.ioc);
      error_code ec;
      const tcp::resolver::results_type endpoints =
          resolver.resolve(address->host, address->port, ec);
      if (ec) {
        return absl::UnavailableError(
            StrCat("cannot resolve the node address ", host_port_, ": ", ec.message()));
      }
      s.stream.expires_at(deadline);
      ec = s.Run([&](auto handler) { s.stream.async_connect(endpoints, std::move(handler)); });
      if (ec) {
        s.stream.close();
        if (ec == beast::error::timeout) return absl::DeadlineExceededError(timed_out);
        return absl::UnavailableError(StrCat("cannot connect to the node at ", host_port_, ": ",
                                             ec.message(), " (is `hivemesh agent` running?)"));
      }
      s.open = true;
      s.reused = false;
      s.buffer.clear();
      ++s.opened;
    }
    const bool reused = s.reused;
    s.stream.expires_at(deadline);
    const std::array<asio::const_buffer, 2> out = {asio::buffer(head), asio::buffer(body)};
    error_code ec =
        s.Run([&](auto handler) { asio::async_write(s.stream, out, std::move(handler)); });
    http::response_parser<http::string_body> parser;
    parser.body_limit(kMaxResponseBody);
    parser.header_limit(kMaxResponseHeader);
    if (method == "HEAD") parser.skip(true);
    if (!ec) {
      ec = s.Run(
          [&](auto handler) { http::async_read(s.stream, s.buffer, parser, std::move(handler)); });
    }
    if (ec) {
      const bool nothing_received = !parser.got_some() && s.buffer.size() == 0;
      s.Close();
      if (ec == beast::error::timeout) return absl::DeadlineExceededError(timed_out);
      if (reused && attempt == 0 && nothing_received && IsConnectionLoss(ec)) continue;
      const bool parse_error =
          ec.category() == make_error_code(http::error::bad_version).category() &&
          !IsConnectionLoss(ec);
      if (parse_error) {
        return absl::UnavailableError(
            StrCat("the node at ", host_port_, " sent a malformed HTTP response: ", ec.message()));
      }
      return absl::UnavailableError(
          StrCat("the node at ", host_port_,
                 nothing_received ? " closed the connection before answering: "
                                  : " closed the connection in the middle of its answer: ",
                 ec.message()));
    }
    http::response<http::string_body> response = parser.release();
    HttpResult result;
    result.status = static_cast<int>(response.result_int());
    for (const auto& field : response) {
      std::string name(field.name_string());
      std::transform(name.begin(), name.end(), name.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      auto [it, inserted] = result.headers.emplace(name, std::string(field.value()));
      if (!inserted) StrAppend(&it->second, ", ", field.value());
    }
    result.body = std::move(response.body());
    if (response.keep_alive() && !response.need_eof()) {
      s.reused = true;
    } else {
      s.Close();
    }
    return result;
  }
}

}  // namespace hivemesh
