#include "routing/forwarder.h"

#include <algorithm>

#include "api/codec/infer_codec.h"
#include "base/strings.h"
#include "routing/decision.h"

namespace hivemesh::routing {

struct Forwarder::Attempt {
  InferRequest request;
  EncodedInferRequest encoded;
  std::string trace;
  ForwardCallback done;
  std::vector<std::string> tried;
  int attempts = 0;
  absl::Status last_error = absl::UnavailableError("no peer could be tried");
};

Forwarder::Forwarder(const MeshDirectory* directory, PeerClient* client, std::string self,
                     uint64_t seed)
    : directory_(directory), client_(client), self_(std::move(self)), rng_(seed) {}

void Forwarder::Forward(InferRequest request, std::string trace, ForwardCallback done) {
  auto attempt = std::make_shared<Attempt>();
  attempt->encoded = EncodeForwardRequest(request);
  attempt->request = std::move(request);
  attempt->trace = std::move(trace);
  attempt->done = std::move(done);
  {
    std::lock_guard<std::mutex> lock(mu_);
    budget_.Deposit(SystemClock::Get().Now());
  }
  Try(attempt);
}

void Forwarder::Try(const std::shared_ptr<Attempt>& attempt) {
  const SteadyTime now = SystemClock::Get().Now();
  const InferRequest& req = attempt->request;
  std::vector<PeerEndpoint> peers = directory_->PeersFor(req.model_name);
  if (peers.empty() && attempt->attempts == 0) {
    return attempt->done(absl::NotFoundError(
        StrCat("model '", req.model_name, "' is not served by this node or any node of the mesh")));
  }
  std::vector<Candidate> candidates;
  std::vector<PeerEndpoint> chosen_from;
  RouteRequest route;
  for (const Tensor& t : req.inputs) route.payload_bytes += t.data().size();
  if (req.deadline) route.remaining = *req.deadline - now;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const PeerEndpoint& p : peers) {
      if (std::find(attempt->tried.begin(), attempt->tried.end(), p.node) != attempt->tried.end()) {
        continue;
      }
      Endpoint& e = endpoints_.try_emplace(p.node, now).first->second;
      Candidate c;
      c.node = p.node;
      c.zone = p.zone;
      c.queue_depth = p.queue_depth;
      c.service_ns = p.service_ns;
      c.rtt_ns = 200e3;  // loopback-to-LAN order; refined by the peak-EWMA below
      c.peak_ewma_ns = e.latency.Get(now);
      c.pending = e.pending;
      c.ejected = e.outlier.Ejected(now);
      candidates.push_back(c);
      chosen_from.push_back(p);
    }
  }
  std::mt19937_64 rng;
  {
    std::lock_guard<std::mutex> lock(mu_);
    rng.seed(rng_());
  }
  const Decision d = Decide(candidates, route, RoutingPolicy{}, rng);
  if (d.kind != Decision::kForward) {
    return attempt->done(attempt->attempts == 0 ? d.reason : attempt->last_error);
  }
  const PeerEndpoint peer = chosen_from[static_cast<size_t>(d.index)];
  attempt->tried.push_back(peer.node);
  ++attempt->attempts;

  PeerRequest pr;
  pr.address = peer.api_address;
  pr.target = StrCat("/v2/models/", req.model_name,
                     req.model_version.empty() ? "" : "/versions/" + req.model_version, "/infer");
  pr.body = attempt->encoded.json;
  pr.tail = attempt->encoded.binary;
  pr.headers = {{"Content-Type", "application/octet-stream"},
                {"Inference-Header-Content-Length", std::to_string(attempt->encoded.json.size())},
                {kHopsHeader, "1"},
                {kOriginHeader, self_},
                {kTraceHeader, attempt->trace}};
  if (req.deadline) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(*req.deadline - now);
    if (left.count() <= 0) {
      return attempt->done(absl::DeadlineExceededError("the request's deadline passed"));
    }
    pr.headers.emplace_back("Inference-Timeout-Ms", std::to_string(left.count()));
    pr.timeout = left;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++endpoints_.at(peer.node).pending;
  }
  client_->Send(std::move(pr), [this, attempt, peer, now](absl::StatusOr<PeerResponse> r) {
    OnResult(attempt, peer, now, std::move(r));
  });
}

void Forwarder::OnResult(const std::shared_ptr<Attempt>& attempt, const PeerEndpoint& peer,
                         SteadyTime sent, absl::StatusOr<PeerResponse> result) {
  const SteadyTime now = SystemClock::Get().Now();
  // A transport failure or a 503 (the peer is overloaded or draining) is worth another peer.
  const bool retryable = !result.ok() || result->status == 503;
  bool may_retry = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Endpoint& e = endpoints_.at(peer.node);
    --e.pending;
    if (retryable) {
      int ejected = 0;
      for (const auto& [_, other] : endpoints_) ejected += other.outlier.Ejected(now) ? 1 : 0;
      const bool refused = !result.ok() && IsConnectionRefused(result.status());
      e.outlier.OnFailure(now, refused,
                          MayEject(ejected, static_cast<int>(endpoints_.size()), OutlierConfig{}));
      may_retry = budget_.TryWithdraw(now);
    } else {
      e.outlier.OnSuccess(now);
      e.latency.Observe(now - sent, now);
    }
  }
  if (retryable) {
    attempt->last_error =
        result.ok()
            ? absl::UnavailableError(StrCat("node ", peer.node, " answered 503: ", *result->body))
            : absl::UnavailableError(
                  StrCat("node ", peer.node, " failed: ", MessageOf(result.status())));
    if (may_retry) return Try(attempt);
    return attempt->done(attempt->last_error);
  }
  const PeerResponse& r = *result;
  auto ct = r.headers.find("inference-header-content-length");
  std::optional<uint64_t> header_length;
  if (ct != r.headers.end()) header_length = std::strtoull(ct->second.c_str(), nullptr, 10);
  if (r.status != 200) {
    // The peer's error, passed through with its status (400, 404, 504 ...).
    const std::string body = *r.body;
    absl::StatusCode code = absl::StatusCode::kInternal;
    if (r.status == 400) code = absl::StatusCode::kInvalidArgument;
    if (r.status == 404) code = absl::StatusCode::kNotFound;
    if (r.status == 504) code = absl::StatusCode::kDeadlineExceeded;
    return attempt->done(absl::Status(code, StrCat("node ", peer.node, ": ", body)));
  }
  absl::StatusOr<InferResponse> decoded = DecodeInferResponse(r.body, header_length);
  if (!decoded.ok()) {
    return attempt->done(absl::InternalError(
        StrCat("node ", peer.node, " sent an unreadable response: ", MessageOf(decoded.status()))));
  }
  auto served = r.headers.find("hivemesh-served-by");
  decoded->served_by = served != r.headers.end() ? served->second : peer.node;
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

}  // namespace hivemesh::routing
