// MeshDelivery: the insights published at this node, sent to the other nodes whose subscribers
// want them (docs/insights.md, "The bus: node to node, no broker on the path").
//
// - Every member announces its subscribers' filters in its gossip metadata; the node gives the
//   current set to SetPeers (name, API address, filters) whenever the membership changes.
// - Send() puts an insight in the queue of each peer with a filter that matches its topic. Each
//   peer has one queue and at most one request in flight: `POST /v1/mesh/insights` over the
//   node's peer client (a mesh link; mutual TLS in a secure mesh), whose body is a batch of
//   documents (EncodeBatch), so a peer receives a node's insights in the order they were
//   published.
// - Bounded: a queue holds at most max_queue insights and max_queue_bytes of them; a full one
//   drops its oldest not yet sent (counted). A document is held once however many peers want
//   it. A batch is at most max_batch insights and max_batch_bytes.
// - A batch the peer did not take (no answer, 5xx, 429, 403 while it has not learnt this
//   member yet) stays at the head of the queue and goes again once retry_after has passed
//   (Retry(), called periodically, or the next Send); one it refused for good (another 4xx) is
//   dropped and counted. A 413 (the peer reads smaller bodies) halves that peer's batches and
//   sends the same insights again at once; a single insight refused so is dropped.
// - At least once: a batch whose answer was lost goes again, so a peer may see an insight twice
//   (its id tells); never out of order. A peer that leaves the membership (or stops announcing
//   filters) takes its queue with it, counted as dropped.
//
// Thread safety: every member may be called from any thread. The peer client's callbacks may
// outlive this object: they hold only a weak reference to its state.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/clock.h"
#include "bus/insight.h"

namespace hivemesh {
class PeerClient;
}

namespace hivemesh::bus {

// Where the batches go.
inline constexpr std::string_view kDeliverPath = "/v1/mesh/insights";

struct DeliveryPeer {
  std::string name;                  // its member name (the peer client checks it)
  std::string address;               // host:port of its HTTP API
  std::vector<std::string> filters;  // what its subscribers want (bus/topic.h filters)
};

struct MeshDeliveryOptions {
  size_t max_queue = 4096;                     // insights waiting per peer
  size_t max_queue_bytes = 16 * 1024 * 1024;   // and their bytes
  size_t max_batch = 256;                      // insights per request
  size_t max_batch_bytes = 1024 * 1024;        // bytes per request (documents and newlines)
  std::chrono::milliseconds timeout{5000};     // per request
  std::chrono::milliseconds retry_after{500};  // after a failure, before the batch goes again
};

class MeshDelivery {
 public:
  struct Stats {
    uint64_t sent = 0;      // insights a peer took
    uint64_t dropped = 0;   // insights given up: a full queue, a refusal, a peer gone
    uint64_t failures = 0;  // requests that failed (and were tried again)
    size_t queued = 0;      // insights waiting now, all peers
  };

  // `client` and `clock` must outlive this object (and the client's callbacks, this object's
  // state, which they hold weakly).
  MeshDelivery(PeerClient* client, const Clock& clock, MeshDeliveryOptions options = {});
  ~MeshDelivery();
  MeshDelivery(const MeshDelivery&) = delete;
  MeshDelivery& operator=(const MeshDelivery&) = delete;

  // The members that want insights now (this node is not among them). Filters that are not
  // valid filters are ignored.
  void SetPeers(std::vector<DeliveryPeer> peers);
  // Queues an insight published at this node (`document` = Encode(insight)) for every peer that
  // wants it; sends at once to the peers with nothing in flight.
  void Send(const Insight& insight, const std::string& document);
  // Sends again the batches that failed more than retry_after ago.
  void Retry();
  // The names of the peers announcing filters that match `topic`.
  std::vector<std::string> PeersFor(const std::string& topic) const;
  Stats stats() const;
  // Nothing is sent after it; what waits is dropped. Idempotent.
  void Stop();

  struct State;

 private:
  std::shared_ptr<State> state_;
};

}  // namespace hivemesh::bus
