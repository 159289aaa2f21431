// PeerClient: HTTP/1.1 requests from this node to its peers' APIs, over persistent pooled
// connections (Boost.Asio and Beast's parser inside peer_client.cc only). The request body is
// written as a gather of buffers — a JSON header and the tensors' own bytes — so tensor data is
// never copied on the way out.
//
// I/O runs on IoThreads: the client's own single thread (Create()), or loops shared with the
// HTTP server (Create(io)). Each loop keeps its own pool of idle connections, touched only by that
// loop's thread, so the pool needs no lock.
//
// Thread safety: Send may be called from any thread. Called on one of the client's I/O threads,
// the request goes out on that thread's loop and `done` runs later on that same thread (a
// request forwarded by the HTTP server never changes threads); called from another thread, the
// request goes to a loop chosen round robin. `done` never runs inside Send. Stop is called from a
// thread that is not one of the I/O threads; once it returns, no callback runs any more.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "base/io_threads.h"
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
  // Lower-case names; found by string_view without building a key.
  std::map<std::string, std::string, std::less<>> headers;
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
  // With `io` null, the client has its own I/O thread, stopped and joined by Stop(); otherwise
  // it runs on the shared `io`, which Stop() leaves running.
  static std::unique_ptr<PeerClient> Create(std::shared_ptr<IoThreads> io = nullptr);
  virtual ~PeerClient() = default;
  // After Stop(), the request is dropped and `done` never runs.
  virtual void Send(PeerRequest request, PeerCallback done) = 0;
  // Connections open now (idle and busy), for tests of pooling.
  virtual int open_connections() const = 0;
  // Closes the idle connections; requests in flight are abandoned (their callbacks never run).
  // Idempotent; the destructor calls it.
  virtual void Stop() = 0;
};

}  // namespace hivemesh::routing
