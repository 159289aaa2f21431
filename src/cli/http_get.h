// A minimal blocking HTTP/1.1 GET for the command line tools (one request per connection).
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace hivemesh {

struct HttpReply {
  int status = 0;
  std::string body;
};

// GET http://<host:port><path>. Fails if the node cannot be reached within `timeout_ms`.
absl::StatusOr<HttpReply> HttpGet(const std::string& host_port, const std::string& path,
                                  int timeout_ms = 5000);

}  // namespace hivemesh
