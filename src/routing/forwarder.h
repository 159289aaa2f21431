// Forwarder: decides where an inference runs (here, or on a peer hosting the model) and sends it
// to the chosen peer. The decision is routing/decision.h over this node's live load and what it
// knows of each peer: the gossip load reports, refreshed by the load every forwarded response
// carries (header Hivemesh-Load), the peer's observed latency (peak-EWMA) and the requests this
// node has in flight to it. A transport failure or a 503 is retried on another peer within a
// retry budget, after a full-jitter backoff. A try that is late (unanswered after a multiple of
// what the peer should take: routing/hedge.h) is hedged: the request also goes to another peer,
// within a hedge budget, and the first answer is the request's; the late try counts against its
// peer like a timeout. A refused or reset connection ejects the peer at
// once, consecutive timeouts or 503s after a few; an ejected peer gets one probe request when its
// ejection ends (longer each time), and a peer that restarted (new incarnation) starts afresh.
//
// The request travels in the mesh tensor form (codec/mesh_tensors.h): a short binary head,
// then the tensor bytes as they arrived, and the peer answers in the same form. It carries the
// hop count, the origin node, a trace id and what is left of its deadline. The peer's answer
// says which node served it.
//
// Time: every time the forwarder reads (latencies, load freshness, ejections, the retry budget)
// and every retry's backoff is `clock`'s, so it runs on a ManualClock in tests.
//
// Thread safety: Route may be called from any thread; `done` runs on the thread the peer client
// delivers the answer on (the I/O thread that sent the request) or on the retry timer's.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "base/clock.h"
#include "routing/decision.h"
#include "routing/hedge.h"
#include "routing/outlier.h"
#include "routing/path_estimate.h"
#include "routing/peak_ewma.h"
#include "routing/retry_budget.h"
#include "serving/expirer.h"
#include "tensor/inference.h"
#include "transport/peer_client.h"

namespace hivemesh::routing {

// A peer hosting a model, as the mesh reports it.
struct PeerEndpoint {
  std::string node;
  std::string api_address;  // host:port
  std::string zone;
  uint64_t generation = 0;  // changes when the peer restarts (its gossip incarnation)
  // Suspected by the mesh (not yet confirmed dead): a candidate of last resort, tried only when
  // no other peer (nor this node) can take the request.
  bool suspect = false;
  DataPolicy policy = DataPolicy::kMesh;  // the model's policy as the peer declares it
  int instances = 1;
  // The model's versions it serves, as it announces them. Shared and immutable: endpoints are
  // copied for every routed request, and a list shared costs no allocation to copy.
  std::shared_ptr<const std::vector<std::string>> versions;
  double queue_depth = 0;  // queued + running, from its last load report
  double service_ns = 0;
};

// What the forwarder needs to know of the mesh (the agent implements it over gossip).
class MeshDirectory {
 public:
  virtual ~MeshDirectory() = default;
  // Alive peers (not this node, not draining) that host `model` and report it ready, with the
  // versions each serves.
  virtual std::vector<PeerEndpoint> PeersFor(const std::string& model) const = 0;
  // The public key gossip bound `node`'s name to, if it is an alive member of the mesh (member
  // credentials are checked against it: api/member_check.h); nullopt otherwise.
  virtual std::optional<std::string> MemberKey(std::string_view node) const = 0;
  // True while a request for `model`, which no peer hosts now, may find a host soon: the view is
  // settling (the node has not joined its seeds yet, or its view of the members changed within
  // the last seconds: it started, rejoined, or a member came or went; or a member is suspect), or
  // a member announced the model recently and no member hosts it now. Then "no host" is transient:
  // the request is held, and answered 503 with Retry-After rather than 404. An empty `model`: the
  // view alone.
  virtual bool Settling(const std::string& model) const {
    (void)model;
    return false;
  }
};

// Header names on forwarded requests and responses.
inline constexpr const char* kHopsHeader = "Hivemesh-Hops";
inline constexpr const char* kOriginHeader = "Hivemesh-Origin";
inline constexpr const char* kTraceHeader = "Hivemesh-Trace";
inline constexpr const char* kServedByHeader = "Hivemesh-Served-By";
// On responses to forwarded requests: "<queued> <running> <instances> <service_us> <server_us>":
// the model's load on the serving node, and the time that node spent on this request (from its
// headers arriving to its response being ready), which tells the network's share of the latency.
inline constexpr const char* kLoadHeader = "Hivemesh-Load";

using ForwardCallback = std::function<void(absl::StatusOr<InferResponse>)>;

struct ForwarderOptions {
  RoutingPolicy policy;
  int max_hops = 1;  // a request that has made this many hops is not forwarded again
  OutlierConfig outlier;
  RetryBudgetConfig retry_budget;
  Nanos backoff_base{std::chrono::milliseconds(10)};
  Nanos backoff_cap{std::chrono::milliseconds(250)};
  // A peer that refuses a request because it has not heard of this node yet (403: this node
  // just joined) hears of it within a few gossip rounds. The request may ask it again, after a
  // pause of half to all of `origin_retry_after` (the agent sets its gossip interval), up to
  // `max_origin_refusals` times.
  Nanos origin_retry_after{std::chrono::milliseconds(200)};
  int max_origin_refusals = 5;
  // How long the load carried by a response is preferred over the gossip report.
  Nanos fresh_load{std::chrono::seconds(1)};
  // Late tries are hedged to another peer (routing/hedge.h); false: a try waits for its answer
  // or the request's deadline.
  bool hedging = true;
  HedgeConfig hedge;
  // A request for a model no peer hosts while the directory says the view is settling is held
  // (within its deadline) for up to this long, looking again every `hold_recheck`, for a host to
  // appear; then it is answered UNAVAILABLE (503 with Retry-After), not NOT_FOUND.
  Nanos hold_max{std::chrono::seconds(1)};
  Nanos hold_recheck{std::chrono::milliseconds(20)};
};

struct RouteOptions {
  // This node hosts the model: its live load (`local` set to true). Absent: peers only.
  std::optional<Candidate> local;
  // The model's data policy if this node knows it (it hosts the model); otherwise the strictest
  // policy the hosting peers declare applies.
  std::optional<DataPolicy> policy;
  std::string local_zone;
  int hops = 0;  // hops the request has made so far
  // Why this node could not serve the request itself (its queue refused it, the model failed to
  // load here): when no peer can take it either, the answer has this status, followed by the
  // reason no peer could.
  absl::Status if_no_peer;
  // The request's only input holds the whole body of a raw request
  // (Inference-Header-Content-Length: 0): only a node hosting the model can interpret it, so it
  // is sent on as it came.
  bool raw_body = false;
  // Set by a node that hosts the model and sent the request on (it was busier here): when no
  // peer takes it after all (they refused it, failed or were full, and no other is left or the
  // retry budget is spent), the request comes back through this, to be served here, instead of
  // failing with the last peer's error. Called at most once, and then `done` is not.
  std::function<void(InferRequest&&)> serve_here;
  // Called with the peer's name each time the request is about to be sent to a peer (the first
  // attempt and each retry), on the thread sending it; not called when no peer is tried.
  std::function<void(const std::string& peer)> on_send;
};

// Counters, for the node's statistics and tests.
struct PeerStats {
  std::string node;
  uint64_t sent = 0;      // attempts sent to it
  uint64_t failures = 0;  // transport failures and 503s
  uint64_t late = 0;      // tries still unanswered at their hedge time
  int times_ejected = 0;
  bool ejected = false;
  double latency_ns = 0;  // peak-EWMA of forwarded requests' end-to-end latency
  double rtt_ns = 0;      // path estimates (defaults until measured)
  double bandwidth_bytes_per_s = 0;
};
struct RouteStats {
  uint64_t local = 0;      // decided to run here
  uint64_t forwarded = 0;  // requests sent to a peer (first attempts)
  uint64_t retries = 0;
  uint64_t hedges = 0;       // tries sent because another was late
  uint64_t served_back = 0;  // sent on, taken by no peer, and served by this node after all
  uint64_t rejected = 0;     // no node could take it (404, 503, 504 at once)
  uint64_t held = 0;         // held while the view settled (no host for the model yet)
  uint64_t held_found = 0;   // of those, the ones a host appeared for
  uint64_t cancelled = 0;    // tries given up because another answered first
  int connections = 0;       // open to peers, mesh links included
  int links = 0;             // mesh links among them
  std::vector<PeerStats> peers;
};

class Forwarder {
 public:
  // `directory`, `client` and `clock` must outlive the forwarder.
  Forwarder(const MeshDirectory* directory, PeerClient* client, std::string self, uint64_t seed,
            ForwarderOptions options = {}, Clock& clock = SystemClock::Get());

  enum class Routed { kLocal, kForwarded };
  // Decides where `request` runs. `trace` is the request's trace id; empty: a new one is made if
  // the request leaves this node. kLocal: the caller runs it here; `request` and `done` are left
  // untouched. kForwarded: `request` and `done` were taken, and `done` will be called exactly
  // once with the peer's response or an error saying why none could serve it.
  Routed Route(InferRequest& request, std::string trace, const RouteOptions& options,
               ForwardCallback& done);

  RouteStats Stats() const;
  // The mesh's view is settling now (MeshDirectory::Settling): "no host" would be held.
  bool Settling() const { return directory_->Settling(""); }

 private:
  struct Endpoint {
    explicit Endpoint(SteadyTime now, OutlierConfig config)
        : latency(std::chrono::seconds(10), std::chrono::milliseconds(30), now), outlier(config) {}
    PeakEwma latency;
    PathEstimate path;
    OutlierState outlier;
    uint64_t generation = 0;
    int pending = 0;
    uint64_t sent = 0, failures = 0, late = 0;
    struct Load {
      double queue_depth = 0;  // per instance
      double service_ns = 0;
      SteadyTime at;
    };
    std::map<std::string, Load> fresh;  // by model, from forwarded responses
  };
  struct Attempt;
  struct Try;
  // Candidates for `a` (the local one first, if given) and the decision among them.
  Decision Choose(const InferRequest& request, const RouteOptions& options,
                  const std::vector<std::string>& tried, std::vector<PeerEndpoint>* peers,
                  SteadyTime now);
  // Sends a try of `attempt` to `peer`, expected to take `predicted_ns` (Decide's prediction).
  void Send(const std::shared_ptr<Attempt>& attempt, const PeerEndpoint& peer, double predicted_ns,
            SteadyTime now);
  // Sends `attempt`'s first try to `peer` (encoded once, counted in the budgets), or answers it
  // at once if it cannot travel in the mesh form.
  void Launch(const std::shared_ptr<Attempt>& attempt, const PeerEndpoint& peer,
              double predicted_ns, SteadyTime now);
  void Retry(const std::shared_ptr<Attempt>& attempt);
  // `attempt` found no host while the view was settling: looks again, sends it when a host has
  // appeared, waits on until `until`, then answers UNAVAILABLE.
  void Hold(const std::shared_ptr<Attempt>& attempt, SteadyTime until);
  // The try's hedge time passed without an answer.
  void OnLate(const std::shared_ptr<Attempt>& attempt, const std::shared_ptr<Try>& t);
  void OnResult(const std::shared_ptr<Attempt>& attempt, const std::shared_ptr<Try>& t,
                absl::StatusOr<PeerResponse> result);
  // Answers `attempt` with `status`, unless another try is in flight or a retry is waiting
  // (then `status` is only remembered as the latest error).
  void FailUnlessPending(const std::shared_ptr<Attempt>& attempt, absl::Status status);
  // Gives the attempt's caller what a peer answered: the decoded response, or the peer's error.
  void Answer(const std::shared_ptr<Attempt>& attempt, const PeerEndpoint& peer,
              const PeerResponse& r);
  Endpoint& EndpointFor(const PeerEndpoint& peer, SteadyTime now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Calls OnLate for `t` at `tick` (a multiple of the hedge tick) unless it was answered.
  void WatchLate(const std::shared_ptr<Attempt>& attempt, const std::shared_ptr<Try>& t,
                 SteadyTime tick);
  void OnTick(SteadyTime tick);

  const MeshDirectory* const directory_;
  PeerClient* const client_;
  const std::string self_;
  const ForwarderOptions options_;
  Clock& clock_;

  mutable absl::Mutex mu_;
  std::map<std::string, Endpoint> endpoints_ ABSL_GUARDED_BY(mu_);
  RetryBudget budget_ ABSL_GUARDED_BY(mu_);
  RetryBudget hedge_budget_ ABSL_GUARDED_BY(mu_);
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_);
  std::atomic<uint64_t> local_{0}, forwarded_{0}, retries_{0}, hedges_{0}, served_back_{0},
      rejected_{0}, held_{0}, held_found_{0}, cancelled_{0};
  std::atomic<uint64_t> trace_seq_{0};
  // Tries waiting for their hedge time, by tick: the timer holds one entry per tick, not one
  // per try, and holds neither the attempts nor the tries.
  using LateWatch = std::pair<std::weak_ptr<Attempt>, std::weak_ptr<Try>>;
  absl::Mutex ticks_mu_;
  std::map<SteadyTime, std::vector<LateWatch>> ticks_ ABSL_GUARDED_BY(ticks_mu_);
  std::vector<std::vector<LateWatch>> spare_ticks_ ABSL_GUARDED_BY(ticks_mu_);  // to reuse
  const std::shared_ptr<int> alive_ = std::make_shared<int>(0);  // the timer's token for ticks
  Expirer timer_;  // runs retries after their backoff and hedges; last, so it stops first
};

// The value of kLoadHeader.
std::string EncodeLoadHeader(int64_t queued, int64_t running, int instances, uint64_t service_us,
                             uint64_t server_us);

}  // namespace hivemesh::routing
