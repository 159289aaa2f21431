// Forwarder: sends an inference to a peer that hosts the model, choosing the peer with the
// routing decision (predicted completion time, power of two choices on peak-EWMA x pending),
// retrying another peer after a transport failure or a 503 within a retry budget, and keeping
// each peer's latency estimate and outlier state.
//
// The request travels in the binary form (api/codec EncodeForwardRequest): tensor bytes go on
// as they arrived. It carries the hop count, the origin node, a trace id and what is left of
// its deadline. The peer's response says which node served it.
//
// Thread safety: Forward may be called from any thread; `done` runs on the peer client's thread.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "routing/outlier.h"
#include "routing/peak_ewma.h"
#include "routing/peer_client.h"
#include "routing/retry_budget.h"
#include "serving/inference.h"

namespace hivemesh::routing {

// A peer hosting a model, as the mesh reports it.
struct PeerEndpoint {
  std::string node;
  std::string api_address;  // host:port
  std::string zone;
  double queue_depth = 0;
  double service_ns = 0;
};

// What the forwarder needs to know of the mesh (the agent implements it over gossip).
class MeshDirectory {
 public:
  virtual ~MeshDirectory() = default;
  // Alive peers (not this node) that host `model` and report it ready.
  virtual std::vector<PeerEndpoint> PeersFor(const std::string& model) const = 0;
  // True if `node` is an alive member of the mesh (forwarded requests from others are refused).
  virtual bool IsMember(const std::string& node) const = 0;
};

// Header names on forwarded requests and responses.
inline constexpr const char* kHopsHeader = "Hivemesh-Hops";
inline constexpr const char* kOriginHeader = "Hivemesh-Origin";
inline constexpr const char* kTraceHeader = "Hivemesh-Trace";
inline constexpr const char* kServedByHeader = "Hivemesh-Served-By";

using ForwardCallback = std::function<void(absl::StatusOr<InferResponse>)>;

class Forwarder {
 public:
  Forwarder(const MeshDirectory* directory, PeerClient* client, std::string self, uint64_t seed);

  // Sends `request` (for request.model_name) to a peer. `deadline` bounds every attempt.
  void Forward(InferRequest request, std::string trace, ForwardCallback done);

 private:
  struct Endpoint {
    explicit Endpoint(SteadyTime now)
        : latency(std::chrono::seconds(10), std::chrono::milliseconds(30), now) {}
    PeakEwma latency;
    OutlierState outlier;
    int pending = 0;
  };
  struct Attempt;
  void Try(const std::shared_ptr<Attempt>& attempt);
  void OnResult(const std::shared_ptr<Attempt>& attempt, const PeerEndpoint& peer, SteadyTime sent,
                absl::StatusOr<PeerResponse> result);

  const MeshDirectory* const directory_;
  PeerClient* const client_;
  const std::string self_;

  std::mutex mu_;
  std::map<std::string, Endpoint> endpoints_ ABSL_GUARDED_BY(mu_);
  RetryBudget budget_ ABSL_GUARDED_BY(mu_);
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hivemesh::routing
