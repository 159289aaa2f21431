#include "routing/forwarder.h"

#include <algorithm>
#include <charconv>

#include "base/strings.h"
#include "codec/infer_codec.h"
#include "codec/mesh_tensors.h"
#include "codec/status_codes.h"

namespace hivemesh::routing {
namespace {

// Parses kLoadHeader's value; false if it is not five non-negative integers.
bool ParseLoadHeader(std::string_view v, uint64_t out[5]) {
  for (int i = 0; i < 5; ++i) {
    while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
    auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), out[i]);
    if (ec != std::errc() || ptr == v.data()) return false;
    v.remove_prefix(static_cast<size_t>(ptr - v.data()));
  }
  return v.empty();
}

// What a peer's error answer says: the message of its JSON error body, or the body itself.
std::string PeerErrorText(const PeerResponse& r) {
  if (r.body == nullptr) return "";
  std::optional<std::string> message = DecodeError(*r.body);
  return message ? *std::move(message) : *r.body;
}

// The body a request goes to a peer with: the mesh tensor form, or a raw body as it came.
MeshTensorsMessage Encode(const InferRequest& request, bool raw_body) {
  return raw_body ? MeshTensorsMessage{"", request.inputs} : EncodeMeshRequest(request);
}

// A peer's successful answer: in the mesh tensor form, or (to a raw body, which the peer reads
// as a KServe v2 request) in the KServe v2 form, JSON or binary.
absl::StatusOr<InferResponse> DecodeAnswer(const PeerResponse& r) {
  if (r.headers.Get("content-type") == kMeshTensorsType) return DecodeMeshAnswer(r.body);
  std::optional<uint64_t> header_length;
  if (std::optional<std::string_view> hl = r.headers.Get("inference-header-content-length")) {
    header_length = ParseUint(*hl);
    if (!header_length) {
      return absl::InvalidArgumentError("a malformed Inference-Header-Content-Length");
    }
  }
  absl::StatusOr<InferResponse> decoded = DecodeInferResponse(r.body, header_length);
  if (decoded.ok() && decoded->served_by.empty()) {
    if (std::optional<std::string_view> served = r.headers.Get("hivemesh-served-by")) {
      decoded->served_by = std::string(*served);
    }
  }
  return decoded;
}

}  // namespace

std::string EncodeLoadHeader(int64_t queued, int64_t running, int instances, uint64_t service_us,
                             uint64_t server_us) {
  return StrCat(std::max<int64_t>(0, queued), " ", std::max<int64_t>(0, running), " ",
                std::max(1, instances), " ", service_us, " ", server_us);
}

// One request on its way to peers: its first try, any hedges sent while a try is late, and the
// retries after a try failed. Whichever answer comes first is the request's; `done` runs once.
struct Forwarder::Attempt {
  // Set by Route before the first try; read-only after.
  InferRequest request;
  std::string trace;
  ForwardCallback done;
  RouteOptions options;

  absl::Mutex mu;
  MeshTensorsMessage encoded ABSL_GUARDED_BY(mu);  // the body of the first try
  std::vector<std::string> tried ABSL_GUARDED_BY(mu);
  int attempts ABSL_GUARDED_BY(mu) = 0;
  int origin_refusals ABSL_GUARDED_BY(mu) = 0;  // 403s from peers that had not heard of this node
  absl::Status last_error ABSL_GUARDED_BY(mu);  // of the latest failed try
  int in_flight ABSL_GUARDED_BY(mu) = 0;        // tries sent and not answered
  // Tries sent, to cancel the others once one has answered (hedged requests only have more
  // than one).
  std::vector<std::shared_ptr<Try>> tries ABSL_GUARDED_BY(mu);
  bool retry_pending ABSL_GUARDED_BY(mu) = false;  // a retry waits for its backoff
  bool finished ABSL_GUARDED_BY(mu) = false;       // `done` has been (or is being) called
};

// One try of an attempt, at one peer.
struct Forwarder::Try {
  PeerEndpoint peer;  // its name and generation (what EndpointFor reads)
  SteadyTime sent;
  std::shared_ptr<PeerCancel> cancel;  // given up once another try answered
  bool answered = false;               // under the attempt's mu
  bool late = false;                   // under the attempt's mu: its hedge time passed
};

Forwarder::Forwarder(const MeshDirectory* directory, PeerClient* client, std::string self,
                     uint64_t seed, ForwarderOptions options, Clock& clock)
    : directory_(directory),
      client_(client),
      self_(std::move(self)),
      options_(options),
      clock_(clock),
      budget_(options.retry_budget),
      hedge_budget_(options.hedge.budget),
      rng_(seed),
      timer_(clock) {}

Forwarder::Endpoint& Forwarder::EndpointFor(const PeerEndpoint& peer, SteadyTime now) {
  auto [it, inserted] = endpoints_.try_emplace(peer.node, now, options_.outlier);
  // A peer new to this node gets the next request that goes to a peer, to find out how it is:
  // a guess would keep it behind warmed-up peers.
  if (inserted) it->second.outlier.Probe();
  if (it->second.generation != peer.generation) {
    // The peer restarted (or refuted a suspicion): what was learnt of it no longer holds.
    // The counters and the requests in flight carry over.
    const uint64_t sent = it->second.sent, failures = it->second.failures, late = it->second.late;
    const int pending = it->second.pending;
    it->second = Endpoint(now, options_.outlier);
    it->second.outlier.Probe();  // a restarted peer too: its estimates are gone
    it->second.generation = peer.generation;
    it->second.sent = sent;
    it->second.failures = failures;
    it->second.late = late;
    it->second.pending = pending;
  }
  return it->second;
}

Decision Forwarder::Choose(const InferRequest& req, const RouteOptions& options,
                           const std::vector<std::string>& tried, std::vector<PeerEndpoint>* peers,
                           SteadyTime now) {
  const std::optional<Candidate>& local = options.local;
  std::vector<PeerEndpoint> all = directory_->PeersFor(req.model_name);
  if (!req.model_version.empty()) {
    // A request naming a version goes only where that version is served.
    std::erase_if(all, [&](const PeerEndpoint& p) {
      return p.versions == nullptr || std::find(p.versions->begin(), p.versions->end(),
                                                req.model_version) == p.versions->end();
    });
  }
  RouteRequest route;
  for (const Tensor& t : req.inputs) route.payload_bytes += t.data().size();
  if (req.deadline) route.remaining = *req.deadline - now;
  route.local_zone = options.local_zone;
  route.may_forward = options.hops < options_.max_hops;
  if (options.policy) {
    route.policy = *options.policy;
  } else {
    for (const PeerEndpoint& p : all) route.policy = Strictest(route.policy, p.policy);
  }

  std::vector<Candidate> candidates;
  if (local) candidates.push_back(*local);
  peers->clear();
  Decision d;
  {
    absl::MutexLock lock(&mu_);
    for (PeerEndpoint& p : all) {
      if (std::find(tried.begin(), tried.end(), p.node) != tried.end()) continue;
      Endpoint& e = EndpointFor(p, now);
      Candidate c;
      c.node = p.node;
      c.zone = p.zone;
      const int instances = std::max(1, p.instances);
      c.queue_depth = p.queue_depth / instances;
      c.service_ns = p.service_ns;
      if (auto f = e.fresh.find(req.model_name);
          f != e.fresh.end() && now - f->second.at < options_.fresh_load) {
        c.queue_depth = f->second.queue_depth;
        c.service_ns = f->second.service_ns;
      }
      // A peer that has not served the model yet is assumed as fast as this node.
      if (c.service_ns <= 0 && local) c.service_ns = local->service_ns;
      // Requests this node has in flight to the peer are ahead of this one, reported or not.
      c.queue_depth = std::max(c.queue_depth, static_cast<double>(e.pending) / instances);
      c.rtt_ns = e.path.rtt_ns();
      c.bandwidth_bytes_per_s = e.path.bandwidth_bytes_per_s();
      c.peak_ewma_ns = e.latency.Get(now);
      c.pending = e.pending;
      c.ejected = e.outlier.Ejected(now) || p.suspect;  // suspects: last resort
      c.probe = !c.ejected && e.pending == 0 && e.outlier.Probing(now);
      candidates.push_back(c);
      peers->push_back(std::move(p));
    }
    d = Decide(candidates, route, options_.policy, rng_);
  }
  if (local && d.index >= 0) --d.index;  // peers are indexed from 0; local is index -1
  if (d.kind == Decision::kReject && all.empty() && (!local || !local->ready)) {
    d.reason = absl::NotFoundError(
        req.model_version.empty()
            ? StrCat("model '", req.model_name,
                     "' is not served by this node or any node of the mesh")
            : StrCat("version '", req.model_version, "' of model '", req.model_name,
                     "' is not served by this node or any node of the mesh"));
  }
  return d;
}

Forwarder::Routed Forwarder::Route(InferRequest& request, std::string trace,
                                   const RouteOptions& options, ForwardCallback& done) {
  const SteadyTime now = clock_.Now();
  std::vector<PeerEndpoint> peers;
  const Decision d = Choose(request, options, {}, &peers, now);
  if (d.kind == Decision::kLocal) {
    ++local_;
    return Routed::kLocal;
  }
  auto attempt = std::make_shared<Attempt>();
  attempt->options = options;
  attempt->options.local.reset();  // retries and hedges go to peers only
  attempt->request = std::move(request);
  attempt->trace = trace.empty() ? StrCat(self_, "-", ++trace_seq_) : std::move(trace);
  attempt->done = std::move(done);
  if (d.kind == Decision::kReject && d.reason.code() == absl::StatusCode::kNotFound &&
      options.if_no_peer.ok() && options_.hold_max > Nanos(0) &&
      directory_->Settling(attempt->request.model_name)) {
    // No host now, but the view is settling: one may appear within moments.
    ++held_;
    SteadyTime until = now + options_.hold_max;
    if (attempt->request.deadline) until = std::min(until, *attempt->request.deadline);
    Hold(attempt, until);
    return Routed::kForwarded;
  }
  if (d.kind == Decision::kReject) {
    ++rejected_;
    if (options.if_no_peer.ok()) {
      attempt->done(d.reason);
    } else if (d.reason.code() == absl::StatusCode::kNotFound) {
      attempt->done(options.if_no_peer);  // no peer hosts it: this node's reason is the answer
    } else {
      attempt->done(absl::Status(options.if_no_peer.code(),
                                 StrCat(MessageOf(options.if_no_peer), "; ", MessageOf(d.reason))));
    }
    return Routed::kForwarded;
  }
  Launch(attempt, peers[static_cast<size_t>(d.index)], d.predicted_ns, now);
  return Routed::kForwarded;
}

void Forwarder::Launch(const std::shared_ptr<Attempt>& attempt, const PeerEndpoint& peer,
                       double predicted_ns, SteadyTime now) {
  if (!attempt->options.raw_body) {
    if (absl::Status fits = MeshRequestFits(attempt->request); !fits.ok()) {
      return attempt->done(std::move(fits));
    }
  }
  {
    absl::MutexLock lock(&attempt->mu);
    attempt->encoded = Encode(attempt->request, attempt->options.raw_body);
  }
  {
    absl::MutexLock lock(&mu_);
    budget_.Deposit(now);
    hedge_budget_.Deposit(now);
  }
  ++forwarded_;
  Send(attempt, peer, predicted_ns, now);
}

void Forwarder::Hold(const std::shared_ptr<Attempt>& attempt, SteadyTime until) {
  const SteadyTime now = clock_.Now();
  std::vector<PeerEndpoint> peers;
  const Decision d = Choose(attempt->request, attempt->options, {}, &peers, now);
  if (d.kind == Decision::kForward) {
    ++held_found_;
    return Launch(attempt, peers[static_cast<size_t>(d.index)], d.predicted_ns, now);
  }
  const bool not_found =
      d.kind == Decision::kReject && d.reason.code() == absl::StatusCode::kNotFound;
  if (!not_found) {
    ++rejected_;
    return attempt->done(d.reason);  // hosts appeared but none can take it: say why
  }
  if (now + options_.hold_recheck < until) {
    timer_.Watch(now + options_.hold_recheck, attempt,
                 [this, attempt, until] { Hold(attempt, until); });
    return;
  }
  ++rejected_;
  const InferRequest& req = attempt->request;
  attempt->done(absl::UnavailableError(
      StrCat("model '", req.model_name, "'", req.model_version.empty() ? "" : " version '",
             req.model_version, req.model_version.empty() ? "" : "'",
             " has no ready host in the mesh right now (the mesh's view is settling); retry")));
}

void Forwarder::FailUnlessPending(const std::shared_ptr<Attempt>& attempt, absl::Status status) {
  {
    absl::MutexLock lock(&attempt->mu);
    attempt->last_error = status;
    if (attempt->finished || attempt->in_flight > 0 || attempt->retry_pending) return;
    attempt->finished = true;
  }
  // No peer took it (gone, failing or full): a node that hosts the model serves it itself.
  // Out of time is final.
  if (attempt->options.serve_here && (status.code() == absl::StatusCode::kUnavailable ||
                                      status.code() == absl::StatusCode::kResourceExhausted)) {
    ++served_back_;
    return attempt->options.serve_here(std::move(attempt->request));
  }
  attempt->done(std::move(status));
}

void Forwarder::Retry(const std::shared_ptr<Attempt>& attempt) {
  const SteadyTime now = clock_.Now();
  std::vector<std::string> tried;
  absl::Status last_error;
  {
    absl::MutexLock lock(&attempt->mu);
    attempt->retry_pending = false;
    if (attempt->finished) return;
    tried = attempt->tried;
    last_error = attempt->last_error;
  }
  std::vector<PeerEndpoint> peers;
  const Decision d = Choose(attempt->request, attempt->options, tried, &peers, now);
  if (d.kind != Decision::kForward) {
    return FailUnlessPending(attempt, last_error.ok()
                                          ? absl::UnavailableError("no peer could be tried")
                                          : std::move(last_error));
  }
  ++retries_;
  Send(attempt, peers[static_cast<size_t>(d.index)], d.predicted_ns, now);
}

void Forwarder::Send(const std::shared_ptr<Attempt>& attempt, const PeerEndpoint& peer,
                     double predicted_ns, SteadyTime now) {
  const InferRequest& req = attempt->request;
  MeshTensorsMessage encoded;
  {
    absl::MutexLock lock(&attempt->mu);
    if (attempt->finished) return;
    attempt->tried.push_back(peer.node);
    // The encoded body goes out with the first try, without a copy; a retry or a hedge (rare)
    // encodes the request again.
    encoded = ++attempt->attempts == 1 ? std::move(attempt->encoded)
                                       : Encode(req, attempt->options.raw_body);
  }
  PeerRequest pr;
  pr.address = peer.api_address;
  if (req.model_version.empty()) {
    pr.target = StrCat("/v2/models/", req.model_name, "/infer");
  } else {
    pr.target = StrCat("/v2/models/", req.model_name, "/versions/", req.model_version, "/infer");
  }
  pr.headers.reserve(5);
  if (attempt->options.raw_body) {
    pr.headers.emplace_back("Content-Type", "application/octet-stream");
    pr.headers.emplace_back("Inference-Header-Content-Length", "0");
  } else {
    pr.headers.emplace_back("Content-Type", kMeshTensorsType);
  }
  pr.headers.emplace_back(kHopsHeader, std::to_string(attempt->options.hops + 1));
  pr.headers.emplace_back(kOriginHeader, self_);
  pr.peer_node = peer.node;
  pr.headers.emplace_back(kTraceHeader, attempt->trace);
  pr.body = std::move(encoded.head);
  pr.tail = std::move(encoded.tensors);
  std::optional<Nanos> remaining;
  if (req.deadline) {
    remaining = *req.deadline - now;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(*remaining);
    if (left.count() <= 0) {
      return FailUnlessPending(
          attempt, absl::DeadlineExceededError(StrCat("the request's deadline passed before node ",
                                                      peer.node, " could be tried")));
    }
    pr.timeout = left;
    pr.send_time_left = true;
  }
  if (attempt->options.on_send) attempt->options.on_send(peer.node);
  double observed_ns = 0;
  {
    absl::MutexLock lock(&mu_);
    Endpoint& e = EndpointFor(peer, now);
    ++e.pending;
    ++e.sent;
    observed_ns = e.latency.Get(now);
  }
  auto try_ = std::make_shared<Try>();
  try_->peer.node = peer.node;
  try_->peer.generation = peer.generation;
  try_->sent = now;
  if (options_.hedging) {
    try_->cancel = std::make_shared<PeerCancel>();
    pr.cancel = try_->cancel;
  }
  {
    absl::MutexLock lock(&attempt->mu);
    ++attempt->in_flight;
    if (try_->cancel) attempt->tries.push_back(try_);
  }
  if (options_.hedging) {
    // A try not answered by then is hedged (OnLate); the timer holds neither the attempt nor
    // the try, so an answered request costs nothing more.
    if (std::optional<Nanos> after =
            HedgeAfter(ExpectedTryNanos(predicted_ns, observed_ns), remaining, options_.hedge)) {
      WatchLate(attempt, try_, RoundUpToTick(now + *after, options_.hedge.tick));
    }
  }
  client_->Send(std::move(pr), [this, attempt, try_](absl::StatusOr<PeerResponse> r) {
    OnResult(attempt, try_, std::move(r));
  });
}

void Forwarder::WatchLate(const std::shared_ptr<Attempt>& attempt, const std::shared_ptr<Try>& t,
                          SteadyTime tick) {
  bool first = false;  // the first try of this tick: the timer learns of the tick
  {
    absl::MutexLock lock(&ticks_mu_);
    auto [it, inserted] = ticks_.try_emplace(tick);
    if (inserted && !spare_ticks_.empty()) {
      it->second = std::move(spare_ticks_.back());
      spare_ticks_.pop_back();
    }
    it->second.emplace_back(attempt, t);
    first = inserted;
  }
  if (first) timer_.Watch(tick, alive_, [this, tick] { OnTick(tick); });
}

void Forwarder::OnTick(SteadyTime tick) {
  std::vector<LateWatch> due;
  {
    absl::MutexLock lock(&ticks_mu_);
    auto it = ticks_.find(tick);
    if (it == ticks_.end()) return;
    due = std::move(it->second);
    ticks_.erase(it);
  }
  for (const auto& [weak_attempt, weak_try] : due) {
    if (weak_try.expired()) continue;  // answered: the common case
    std::shared_ptr<Attempt> a = weak_attempt.lock();
    std::shared_ptr<Try> t = weak_try.lock();
    if (a && t) OnLate(a, t);
  }
  due.clear();
  absl::MutexLock lock(&ticks_mu_);
  if (spare_ticks_.size() < 4) spare_ticks_.push_back(std::move(due));
}

void Forwarder::OnLate(const std::shared_ptr<Attempt>& attempt, const std::shared_ptr<Try>& t) {
  const SteadyTime now = clock_.Now();
  std::vector<std::string> tried;
  {
    absl::MutexLock lock(&attempt->mu);
    if (attempt->finished || t->answered || t->late) return;
    t->late = true;
    tried = attempt->tried;
  }
  bool may_hedge = false;
  {
    // A try this late counts against its peer as a timeout would: a peer that keeps not
    // answering (hung, or cut off after accepting) is ejected like one that fails.
    absl::MutexLock lock(&mu_);
    Endpoint& e = EndpointFor(t->peer, now);
    ++e.late;
    int ejected = 0;
    for (const auto& [_, other] : endpoints_) ejected += other.outlier.Ejected(now) ? 1 : 0;
    e.outlier.OnFailure(now, FailureKind::kSoft,
                        MayEject(ejected, static_cast<int>(endpoints_.size()), options_.outlier));
    may_hedge = hedge_budget_.TryWithdraw(now);
  }
  if (!may_hedge) return;  // the try goes on waiting, as it would without hedging
  std::vector<PeerEndpoint> peers;
  const Decision d = Choose(attempt->request, attempt->options, tried, &peers, now);
  if (d.kind != Decision::kForward) return;
  ++hedges_;
  Send(attempt, peers[static_cast<size_t>(d.index)], d.predicted_ns, now);
}

void Forwarder::OnResult(const std::shared_ptr<Attempt>& attempt, const std::shared_ptr<Try>& t,
                         absl::StatusOr<PeerResponse> result) {
  const SteadyTime now = clock_.Now();
  const PeerEndpoint& peer = t->peer;
  const SteadyTime sent = t->sent;
  // A transport failure, a 503 (the peer is overloaded or draining), a 403 (the peer has not
  // heard of this node yet: it just joined) or a 415 (the peer, of another release, does not read
  // this mesh tensor form) is worth another peer; running out of time is not.
  const bool timed_out =
      !result.ok() && result.status().code() == absl::StatusCode::kDeadlineExceeded;
  // A try this node gave up (another answered first): it says nothing of its peer.
  const bool given_up = t->cancel && t->cancel->cancelled() &&
                        (result.ok() ? result->status == 499
                                     : result.status().code() == absl::StatusCode::kCancelled);
  const bool refused_origin = result.ok() && result->status == 403;
  const bool retryable = !timed_out && (!result.ok() || result->status == 503 ||
                                        result->status == 415 || refused_origin);
  bool answer = false;   // this result is the request's answer
  bool decided = false;  // the request already has its answer (another try's)
  bool others = false;   // other tries are in flight or a retry is waiting
  bool origin_may_retry = false;
  std::vector<std::shared_ptr<Try>> losers;  // to cancel once this answer is the request's
  {
    absl::MutexLock lock(&attempt->mu);
    t->answered = true;
    --attempt->in_flight;
    decided = attempt->finished;
    if (!decided && result.ok() && !retryable && !given_up) answer = attempt->finished = true;
    if (answer || (decided && !given_up)) {
      for (const std::shared_ptr<Try>& other : attempt->tries) {
        if (other != t && !other->answered) losers.push_back(other);
      }
      attempt->tries.clear();
    }
    others = attempt->in_flight > 0 || attempt->retry_pending;
    if (refused_origin) {
      origin_may_retry = ++attempt->origin_refusals <= options_.max_origin_refusals;
    }
  }
  if (given_up) {
    ++cancelled_;
    absl::MutexLock lock(&mu_);
    --EndpointFor(peer, now).pending;
    return;
  }
  if (result.ok() && !retryable) {
    // The peer's answer goes to the client first; the tries that lost are given up next (their
    // peers drop them if still queued); what the answer says of the peer is noted after.
    if (answer) Answer(attempt, peer, *result);
    for (const std::shared_ptr<Try>& loser : losers) loser->cancel->Cancel();
    absl::MutexLock lock(&mu_);
    Endpoint& e = EndpointFor(peer, now);
    --e.pending;
    e.outlier.OnSuccess(now);
    e.latency.Observe(now - sent, now);
    std::optional<std::string_view> load = result->headers.Get("hivemesh-load");
    uint64_t v[5];
    if (load && ParseLoadHeader(*load, v)) {
      const InferRequest& req = attempt->request;
      e.fresh[req.model_name] = Endpoint::Load{
          static_cast<double>(v[0] + v[1]) / static_cast<double>(std::max<uint64_t>(1, v[2])),
          static_cast<double>(v[3]) * 1e3, now};
      // The network's share: the whole exchange minus the peer's own time.
      const Nanos server = std::chrono::duration_cast<Nanos>(std::chrono::microseconds(v[4]));
      size_t bytes = result->body ? result->body->size() : 0;
      for (const Tensor& tensor : req.inputs) bytes += tensor.data().size();
      e.path.Observe(now - sent - server, bytes);
    }
    return;
  }
  // Only a request that is still waiting, with no other try of its own under way, retries.
  const bool wants_retry = !decided && !others && retryable;
  bool may_retry = false;
  double unit = 0;
  {
    absl::MutexLock lock(&mu_);
    Endpoint& e = EndpointFor(peer, now);
    --e.pending;
    if (refused_origin) {
      e.outlier.OnSuccess(now);  // it answered: healthy, only not told of this node yet
      may_retry = wants_retry && origin_may_retry && budget_.TryWithdraw(now);
    } else {
      ++e.failures;
      int ejected = 0;
      for (const auto& [_, other] : endpoints_) ejected += other.outlier.Ejected(now) ? 1 : 0;
      // A refused or reset connection (the client already retried a stale pooled one) means the
      // peer is gone: eject at once (refused: briefly, as it may be restarting). Timeouts and
      // 503s count towards consecutive failures. The cap on ejections guards against ejecting
      // many peers on soft failures; a peer that is gone is ejected whatever the cap (two hosts
      // of a small mesh may die at once).
      const bool gone = !result.ok() && !timed_out;
      const FailureKind kind = !gone                                  ? FailureKind::kSoft
                               : IsConnectionRefused(result.status()) ? FailureKind::kRefused
                                                                      : FailureKind::kReset;
      e.outlier.OnFailure(
          now, kind,
          gone || MayEject(ejected, static_cast<int>(endpoints_.size()), options_.outlier));
      may_retry = wants_retry && budget_.TryWithdraw(now);
    }
    unit = std::uniform_real_distribution<double>(0.0, 1.0)(rng_);
  }
  absl::Status error =
      result.ok()
          ? absl::Status(StatusCodeForHttp(result->status),
                         StrCat("node ", peer.node, " answered ", result->status, ": ",
                                PeerErrorText(*result)))
          : absl::Status(result.status().code(),
                         StrCat("node ", peer.node, " failed: ", MessageOf(result.status())));
  if (decided) return;
  if (!may_retry) return FailUnlessPending(attempt, std::move(error));
  int attempts = 0;
  Nanos backoff(0);
  {
    absl::MutexLock lock(&attempt->mu);
    attempts = attempt->attempts;
    backoff = FullJitterBackoff(attempts - 1, options_.backoff_base, options_.backoff_cap, unit);
    if (refused_origin) {
      // The peer will hear of this node from the mesh's gossip: it may be asked again, once
      // that has had time to reach it.
      std::erase(attempt->tried, peer.node);
      backoff = std::chrono::duration_cast<Nanos>(options_.origin_retry_after * (0.5 + 0.5 * unit));
    }
  }
  const InferRequest& req = attempt->request;
  if (req.deadline && now + backoff >= *req.deadline) {
    return FailUnlessPending(attempt, std::move(error));
  }
  {
    absl::MutexLock lock(&attempt->mu);
    attempt->last_error = std::move(error);
    attempt->retry_pending = true;
  }
  if (backoff <= Nanos(0)) return Retry(attempt);
  timer_.Watch(now + backoff, attempt, [this, attempt] { Retry(attempt); });
}

void Forwarder::Answer(const std::shared_ptr<Attempt>& attempt, const PeerEndpoint& peer,
                       const PeerResponse& r) {
  if (r.status != 200) {
    // The peer's error, passed through with its status (400, 404, 504 ...).
    return attempt->done(absl::Status(StatusCodeForHttp(r.status),
                                      StrCat("node ", peer.node, ": ", PeerErrorText(r))));
  }
  absl::StatusOr<InferResponse> decoded = DecodeAnswer(r);
  if (!decoded.ok()) {
    return attempt->done(absl::InternalError(
        StrCat("node ", peer.node, " sent an unreadable response: ", MessageOf(decoded.status()))));
  }
  if (decoded->served_by.empty()) decoded->served_by = peer.node;
  // The original client's choice of binary or JSON outputs.
  const InferRequest& req = attempt->request;
  decoded->binary.assign(decoded->outputs.size(), req.binary_output);
  for (size_t i = 0; i < decoded->outputs.size(); ++i) {
    for (const RequestedOutput& o : req.outputs) {
      if (o.name == decoded->outputs[i].name() && o.binary) decoded->binary[i] = true;
    }
  }
  attempt->done(std::move(*decoded));
}

RouteStats Forwarder::Stats() const {
  RouteStats s;
  s.local = local_.load();
  s.forwarded = forwarded_.load();
  s.retries = retries_.load();
  s.hedges = hedges_.load();
  s.served_back = served_back_.load();
  s.rejected = rejected_.load();
  s.held = held_.load();
  s.held_found = held_found_.load();
  s.cancelled = cancelled_.load();
  s.connections = client_->open_connections();
  s.links = client_->open_links();
  const SteadyTime now = clock_.Now();
  absl::MutexLock lock(&mu_);
  for (const auto& [name, e] : endpoints_) {
    s.peers.push_back(PeerStats{name, e.sent, e.failures, e.late, e.outlier.times_ejected(),
                                e.outlier.Ejected(now), e.latency.Get(now), e.path.rtt_ns(),
                                e.path.bandwidth_bytes_per_s()});
  }
  return s;
}

}  // namespace hivemesh::routing
