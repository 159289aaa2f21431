#include "cli/http_get.h"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "base/strings.h"

namespace hivemesh {

absl::StatusOr<HttpReply> HttpGet(const std::string& host_port, const std::string& path,
                                  int timeout_ms) {
  const size_t colon = host_port.rfind(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError("node address '" + host_port + "' is not host:port");
  }
  const std::string host = host_port.substr(0, colon);
  const std::string port = host_port.substr(colon + 1);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(host.c_str(), port.c_str(), &hints, &res) != 0 || res == nullptr) {
    return absl::UnavailableError("cannot resolve '" + host_port + "'");
  }
  const int fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, res->ai_protocol);
  const int rc = fd < 0 ? -1 : connect(fd, res->ai_addr, res->ai_addrlen);
  freeaddrinfo(res);
  if (rc != 0) {
    if (fd >= 0) close(fd);
    return absl::UnavailableError(StrCat("cannot connect to the node at ", host_port, ": ",
                                         std::strerror(errno), " (is `hivemesh agent` running?)"));
  }
  const std::string request =
      StrCat("GET ", path, " HTTP/1.1\r\nHost: ", host_port, "\r\nConnection: close\r\n\r\n");
  if (send(fd, request.data(), request.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(request.size())) {
    close(fd);
    return absl::UnavailableError("cannot send to the node at " + host_port);
  }
  std::string response;
  char buf[65536];
  while (true) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0) {
      close(fd);
      return absl::DeadlineExceededError("the node at " + host_port + " did not answer in time");
    }
    const ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    response.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  const size_t head_end = response.find("\r\n\r\n");
  if (response.size() < 12 || head_end == std::string::npos) {
    return absl::UnavailableError("the node at " + host_port + " sent no valid HTTP response");
  }
  HttpReply reply;
  reply.status = std::atoi(response.c_str() + 9);
  reply.body = response.substr(head_end + 4);
  return reply;
}

}  // namespace hivemesh
