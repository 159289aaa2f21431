// PeerClient: HTTP/1.1 requests from this node to its peers' APIs, over persistent pooled
// connections (Boost.Asio and Beast's parser inside peer_client.cc only). The request body is
// written as a gather of buffers — a head and the tensors' own bytes — so tensor data is
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
//
// Time: every deadline, the time left a request tells its peer and how long a peer that
// declined a link is sent plain HTTP are read from the Clock given to Create. The I/O timers
// behind them run on real time: one armed for d of the clock's time fires after d of real time
// and looks at the clock again, so on a ManualClock a request times out at the first such look
// after the clock has passed its deadline (tests use short timeouts).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "base/clock.h"
#include "tensor/tensor.h"
#include "transport/io_threads.h"
#include "transport/tls.h"

namespace hivemesh {

// Lets the sender give up a request it sent (a hedge won elsewhere). On a mesh link, a request
// not yet written is dropped and answered CANCELLED; one written gets a CANCEL message (the peer
// drops it if it is still queued there and answers 499), and its answer still comes back. A
// request over plain HTTP is not affected: its answer is simply not needed. Thread-safe; Cancel
// is idempotent and may come before the request is on its way.
class PeerCancel {
 public:
  void Cancel();
  bool cancelled() const;

  // For the transport: `hook(target)` runs once the request is cancelled and on its way (now, if
  // it already was cancelled). A later Bind replaces the target (the request moved to a new link).
  using Hook = void (*)(const std::shared_ptr<void>& target);
  void Bind(std::weak_ptr<void> target, Hook hook);

 private:
  mutable absl::Mutex mu_;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  std::weak_ptr<void> target_ ABSL_GUARDED_BY(mu_);
  Hook hook_ ABSL_GUARDED_BY(mu_) = nullptr;
};

struct PeerRequest {
  std::string address;  // host:port of the peer's HTTP API
  // The peer's member name: what the request's member credential is addressed to (see
  // PeerClient::Create). Empty: no credential.
  std::string peer_node;
  std::string method = "POST";
  std::string target;  // path
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;          // sent first
  std::vector<Tensor> tail;  // raw bytes sent after `body`, not copied
  std::chrono::milliseconds timeout{30000};
  // Tell the peer the deadline: an `Inference-Timeout-Ms` field with what is left of `timeout`
  // each time the request is written, so that a retry on a new connection (or over plain HTTP
  // after a declined link) gives the peer no more time than the caller still has.
  bool send_time_left = false;
  std::shared_ptr<PeerCancel> cancel;  // null: the request cannot be given up
  // False: plain HTTP/1.1 only, for a server that is no hivemesh node (a workload); no mesh link
  // is asked for first.
  bool link = true;
};

// A response's header fields by lower-case name, each name once (a later field of the same name
// replaces the earlier). Names and values are kept in one string, in arrival order: a response
// has a handful of fields, so a linear search beats a tree, and filling the table costs no
// allocation per field.
class PeerHeaders {
 public:
  // The value of the field `name` (given in lower case), if present. The view is valid until the
  // next Add.
  std::optional<std::string_view> Get(std::string_view name) const;
  // A field as received: its name is stored in lower case.
  void Add(std::string_view name, std::string_view value);
  // Every field (lower-case name, value), in arrival order.
  template <typename F>
  void ForEach(F&& f) const {
    for (const Field& field : fields_) {
      f(Name(field), std::string_view(text_.data() + field.at + field.name_size, field.value_size));
    }
  }
  size_t size() const { return fields_.size(); }
  bool empty() const { return fields_.empty(); }
  // Room for `fields` fields of `bytes` name and value bytes in all.
  void reserve(size_t fields, size_t bytes) {
    fields_.reserve(fields);
    text_.reserve(bytes);
  }

 private:
  struct Field {
    uint32_t at;  // the name's offset in text_; the value follows it
    uint32_t name_size;
    uint32_t value_size;
  };
  std::string_view Name(const Field& f) const { return {text_.data() + f.at, f.name_size}; }
  std::string text_;
  std::vector<Field> fields_;
};

struct PeerResponse {
  int status = 0;
  PeerHeaders headers;  // lower-case names
  std::shared_ptr<const std::string> body;
};

// Transport failures: UNAVAILABLE "connection refused" (nothing listens: eject at once),
// UNAVAILABLE otherwise (reset, closed), DEADLINE_EXCEEDED (timeout). An HTTP error status is
// not a transport failure: it arrives as a PeerResponse.
using PeerCallback = std::function<void(absl::StatusOr<PeerResponse>)>;

// True if `status` says the connection was refused.
bool IsConnectionRefused(const absl::Status& status);

// A member credential (identity/member_credential.h) for the peer named `peer_node`, for
// `purpose` ("link" or "request"): the value of a Hivemesh-Credential field.
using CredentialFn =
    std::function<std::string(std::string_view peer_node, std::string_view purpose)>;

class PeerClient {
 public:
  // With `io` null, the client has its own I/O thread, stopped and joined by Stop(); otherwise
  // it runs on the shared `io`, which Stop() leaves running. With `credential`, every mesh link
  // the client opens carries a credential for its peer (one per link), and so does every request
  // that goes over plain HTTP (one per request: links carry nearly all of them); requests with
  // no peer_node carry none. `clock` must outlive the client; the node passes its system clock,
  // tests a ManualClock. With `tls` (transport/tls.h), every connection is TLS: the client
  // presents the node's certificate, checks the server's against the request's peer_node, and
  // resumes its last session with the address.
  static std::unique_ptr<PeerClient> Create(std::shared_ptr<IoThreads> io = nullptr,
                                            CredentialFn credential = nullptr,
                                            const Clock& clock = SystemClock::Get(),
                                            std::shared_ptr<TlsSettings> tls = nullptr);
  virtual ~PeerClient() = default;
  // After Stop(), the request is dropped and `done` never runs.
  virtual void Send(PeerRequest request, PeerCallback done) = 0;
  // Closes, on their loops and without waiting, the links and idle TLS connections to member
  // `peer_node` (a member whose key was revoked); calls on those links fail. Any thread.
  virtual void CloseConnectionsTo(const std::string& peer_node) = 0;
  // Connections open now (idle and busy; mesh links included).
  virtual int open_connections() const = 0;
  // Of those, the mesh links: upgraded connections that carry many requests at once.
  virtual int open_links() const = 0;
  // Closes the idle connections; requests in flight are abandoned (their callbacks never run).
  // Idempotent; the destructor calls it.
  virtual void Stop() = 0;
};

}  // namespace hivemesh
