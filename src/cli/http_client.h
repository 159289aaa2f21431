// HttpClient: a blocking HTTP/1.1 client over one keep-alive connection, for the command line
// tools (`hivemesh infer`, `models`, `top`, ...). Boost.Asio and Beast stay in http_client.cc.
//
// The connection to `host_port` is opened on first use and kept open between requests while the
// server allows it (`Connection: close`, or a response that ends at EOF, closes it; the next
// request opens a new one). A request on a reused connection that fails before any byte of the
// response arrives (the server may have closed an idle connection) is retried once on a new
// connection; a timeout is never retried.
//
// Each Request() has `timeout_ms` for connecting, sending and reading the whole response (a host
// name is resolved first by the system resolver, under its own timeouts). Errors name the
// address:
//   INVALID_ARGUMENT   `host_port` is not host:port (IPv6 as [addr]:port)
//   UNAVAILABLE        the node cannot be reached: unknown host, connection refused or reset,
//                      closed before answering, or a malformed response
//   DEADLINE_EXCEEDED  the node did not answer within the timeout
// An HTTP error status is not an error here: it is returned in HttpResult::status.
//
// Thread safety: none; use one client per thread. The client owns its socket. A moved-from client
// may only be destroyed or assigned to.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace hivemesh {

struct HttpResult {
  int status = 0;
  std::map<std::string, std::string> headers;  // keys lower-cased
  std::string body;

  // The header's value, or empty if absent. REQUIRES: `lower_name` is lower-case.
  std::string header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? std::string() : it->second;
  }
};

class HttpClient {
 public:
  explicit HttpClient(std::string host_port, int timeout_ms = 5000);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;
  HttpClient(HttpClient&&) noexcept;
  HttpClient& operator=(HttpClient&&) noexcept;

  // Sends one request and reads the whole response. `target` is the path and query. Host,
  // Content-Length (when there is a body or the method is POST or PUT) and User-Agent are added;
  // `headers` are sent as given.
  absl::StatusOr<HttpResult> Request(
      std::string_view method, std::string_view target, std::string_view body = {},
      const std::vector<std::pair<std::string, std::string>>& headers = {});

  const std::string& host_port() const { return host_port_; }
  int timeout_ms() const { return timeout_ms_; }
  void set_timeout_ms(int timeout_ms) { timeout_ms_ = timeout_ms; }
  // Connections opened so far (a reused connection counts once).
  int connections_opened() const;

 private:
  struct Impl;
  std::string host_port_;
  int timeout_ms_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace hivemesh
