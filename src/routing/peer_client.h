// PeerClient: HTTP/1.1 requests from this node to its peers' APIs, over persistent pooled
// connections (Boost.Asio and Beast's parser inside peer_client.cc only). The request body is
// written as a gather of buffers — a JSON header and the tensors' own bytes — so tensor data is
// never copied on the way out.
//
// Thread safety: Send may be called from any thread; callbacks run on the client's thread.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "tensor/tensor.h"

namespace hivemesh::routing {

struct PeerRequest {
  std::string address;  // host:port of the peer's HTTP API
  std::string method = "POST";
  std::string target;  // path
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;          // sent first
  std::vector<Tensor> tail;  // raw bytes sent after `body`, not copied
  std::chrono::milliseconds timeout{30000};
};

struct PeerResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::shared_ptr<const std::string> body;
};

// Transport failures: UNAVAILABLE "connection refused" (nothing listens: eject at once),
// UNAVAILABLE otherwise (reset, closed), DEADLINE_EXCEEDED (timeout). An HTTP error status is
// not a transport failure: it arrives as a PeerResponse.
using PeerCallback = std::function<void(absl::StatusOr<PeerResponse>)>;

// True if `status` says the connection was refused.
bool IsConnectionRefused(const absl::Status& status);

class PeerClient {
 public:
  static std::unique_ptr<PeerClient> Create();
  virtual ~PeerClient() = default;
  virtual void Send(PeerRequest request, PeerCallback done) = 0;
  // Connections open now (idle and busy), for tests of pooling.
  virtual int open_connections() const = 0;
  virtual void Stop() = 0;
};

}  // namespace hivemesh::routing
