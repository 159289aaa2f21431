// A small blocking HTTP/1.1 client over raw sockets, for tests: it can send well-formed requests
// on a keep-alive connection and also arbitrary bytes (malformed, truncated, pipelined).
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace hivemesh::test {

struct HttpResult {
  int status = 0;                              // 0: no response (connection closed or timed out)
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  std::string header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? "" : it->second;
  }
};

class HttpConnection {
 public:
  explicit HttpConnection(int port, std::chrono::milliseconds timeout = std::chrono::seconds(20));
  ~HttpConnection();
  HttpConnection(const HttpConnection&) = delete;
  HttpConnection& operator=(const HttpConnection&) = delete;

  bool connected() const { return fd_ >= 0; }
  // Sends raw bytes. Returns false if the socket failed.
  bool SendRaw(const std::string& bytes);
  // Reads one response. status 0 if the peer closed or the timeout passed first.
  HttpResult ReadResponse();
  // True if the peer closes the connection within `timeout` (reads and discards anything sent).
  bool WaitClosed(std::chrono::milliseconds timeout);

  HttpResult Request(const std::string& method, const std::string& path,
                     const std::string& body = "",
                     const std::vector<std::pair<std::string, std::string>>& headers = {});

 private:
  bool Fill();  // reads more bytes into buffer_; false on close/timeout
  int fd_ = -1;
  std::chrono::milliseconds timeout_;
  std::string buffer_;
};

// One-shot request on a fresh connection.
HttpResult HttpRequestOnce(int port, const std::string& method, const std::string& path,
                           const std::string& body = "",
                           const std::vector<std::pair<std::string, std::string>>& headers = {});

}  // namespace hivemesh::test
