#include "routing/dispatcher.h"

#include <algorithm>
#include <utility>

#include "base/rejections.h"
#include "base/strings.h"
#include "codec/model_name.h"
#include "routing/forwarder.h"

namespace hivemesh::routing {
namespace {

// This node as a routing candidate for `rt`: its live queue, per instance, and service time.
Candidate LocalCandidate(const ModelRuntime& rt, const std::string& node, const std::string& zone) {
  const ModelStats& s = rt.stats();
  Candidate c;
  c.node = node;
  c.local = true;
  c.zone = zone;
  c.queue_depth =
      static_cast<double>(std::max<int64_t>(0, s.queue_depth.load() + s.in_flight.load())) /
      std::max(1, rt.config().instances);
  c.service_ns = static_cast<double>(s.ewma_service_ns.load());
  return c;
}

// The forwarder's callback for `done`: a peer's answer was not served here.
ForwardCallback Remote(Dispatcher::Done done) {
  return [done = std::move(done)](absl::StatusOr<InferResponse> result) {
    done(std::move(result), nullptr);
  };
}

}  // namespace

std::string_view RouteName(InferenceRoute route) {
  switch (route) {
    case InferenceRoute::kLocal:
      return "local";
    case InferenceRoute::kOffloaded:
      return "offloaded";
    case InferenceRoute::kForwardedIn:
      return "forwarded_in";
  }
  return "local";
}

std::string_view ProtocolName(Protocol protocol) {
  return protocol == Protocol::kGrpc ? "grpc" : "rest";
}

Dispatcher::Dispatcher(std::string node_name, ModelRepository* repository, Forwarder* forwarder,
                       Rejections* rejections, InferObserver* observer, Clock& clock)
    : node_(std::move(node_name)),
      repository_(repository),
      forwarder_(forwarder),
      rejections_(rejections),
      observer_(observer),
      clock_(clock) {}

std::shared_ptr<InferCall> Dispatcher::NewCall(std::string model, std::string trace,
                                               SteadyTime received, Protocol protocol) const {
  auto call = std::make_shared<InferCall>();
  call->model = std::move(model);
  call->trace = std::move(trace);
  call->received = received;
  call->protocol = protocol;
  return call;
}

void Dispatcher::SetZone(std::string zone) {
  absl::MutexLock l(&zone_mu_);
  zone_ = std::move(zone);
}

std::string Dispatcher::zone() const {
  absl::MutexLock l(&zone_mu_);
  return zone_;
}

void Dispatcher::Finish(const InferCall& call, int http_status, std::string_view served_by) const {
  if (observer_ == nullptr) return;
  const double seconds = std::chrono::duration<double>(clock_.Now() - call.received).count();
  observer_->Answered(call, http_status, served_by, seconds);
}

void Dispatcher::RecordOverhead(const ModelRuntime& served, SteadyTime received,
                                SteadyTime answered, uint64_t compute_ns) {
  const int64_t total = (answered - received).count();
  served.stats().overhead.Record(
      static_cast<uint64_t>(std::max<int64_t>(0, total - static_cast<int64_t>(compute_ns))));
}

std::string Dispatcher::LoadReport(const ModelRuntime& served, SteadyTime received) const {
  const ModelStats& s = served.stats();
  return EncodeLoadHeader(
      s.queue_depth.load(), s.in_flight.load(), served.config().instances,
      s.ewma_service_ns.load() / 1000,
      static_cast<uint64_t>(std::max<int64_t>(0, (clock_.Now() - received).count() / 1000)));
}

void Dispatcher::Infer(const std::shared_ptr<InferCall>& call, const std::string& version,
                       const Decode& decode, Done done) {
  if (call->hops > 0) {
    call->route = InferenceRoute::kForwardedIn;
    if (refuse_forwarded_.load()) {
      // The origin retries elsewhere: this node told the mesh it is draining.
      return done(absl::UnavailableError(
                      StrCat("node ", node_, " is draining and takes no forwarded work")),
                  nullptr);
    }
  }
  absl::Status why;
  RuntimePtr rt = Resolve(*call, version, &why);
  if (rt == nullptr) {
    if (forwarder_ == nullptr) return done(why, nullptr);
    // Not served here (the model, or the version asked for): a peer may serve it. This node's
    // reason is the answer if no peer has it either.
    absl::StatusOr<DecodedInfer> decoded = decode(nullptr, version);
    if (!decoded.ok()) return done(decoded.status(), nullptr);
    return Forward(decoded->request, decoded->raw_body, why, call, std::move(done));
  }
  absl::StatusOr<DecodedInfer> decoded = decode(&rt->config(), rt->version());
  if (!decoded.ok()) return done(decoded.status(), nullptr);
  decoded->request.model_version = rt->version();
  RouteHosted(std::move(rt), version, std::move(decoded->request), call, std::move(done));
}

RuntimePtr Dispatcher::Resolve(InferCall& call, std::string_view version, absl::Status* why) const {
  // REST paths were checked by the router; a gRPC request's name is checked here. An invalid
  // name is no model anywhere: it is not looked up, and a peer could only refuse it too.
  if (!IsValidModelName(call.model)) {
    *why = CheckModelName(call.model);
    if (rejections_ != nullptr) {
      rejections_->Note(Rejection::kBadModelName, call.source, MessageOf(*why));
    }
    return nullptr;
  }
  RuntimePtr rt = repository_->Get(call.model, version, &call.known_here);
  if (rt != nullptr) return rt;
  // A model this node knows nothing of is a peer's business: no reason is built for it.
  if (!call.known_here && forwarder_ != nullptr) return nullptr;
  // The slow path: the reason (the model failed to load, or lacks that version), or a version
  // that began serving since the first look.
  absl::StatusOr<RuntimePtr> found = repository_->Find(call.model, version);
  if (found.ok()) return *found;
  *why = found.status();
  return nullptr;
}

absl::Status Dispatcher::SubmitLocal(RuntimePtr rt, const std::string& requested_version,
                                     InferRequest&& request, const InferCall& call,
                                     const Done& done) const {
  for (int attempt = 0;; ++attempt) {
    absl::Status admitted = rt->Submit(
        std::move(request),
        [done, rt, c = &call, node = node_, observer = observer_](absl::StatusOr<InferResponse> r) {
          if (r.ok()) {
            r->served_by = node;
            if (observer != nullptr) observer->Served(*c, *rt, *r);
          }
          done(std::move(r), rt);
        });
    // A refused request is left intact; only a retired runtime's refusal is worth another look
    // (a few at most: versions do not change that fast).
    if (admitted.ok() || !rt->retired() || attempt == 3) return admitted;
    RuntimePtr now = repository_->Get(request.model_name, requested_version);
    if (now == nullptr) return admitted;  // the version asked for is gone: say so
    rt = std::move(now);
    request.model_version = rt->version();
  }
}

void Dispatcher::RouteHosted(RuntimePtr rt, const std::string& requested_version,
                             InferRequest&& req, const std::shared_ptr<InferCall>& call,
                             Done done) {
  if (forwarder_ == nullptr || call->hops > 0) {
    // A request forwarded here is served here (the hop limit is 1 by default).
    absl::Status admitted =
        SubmitLocal(std::move(rt), requested_version, std::move(req), *call, done);
    if (!admitted.ok()) done(admitted, nullptr);
    return;
  }
  RouteOptions options;
  options.local = LocalCandidate(*rt, node_, zone());
  options.policy = rt->config().data_policy;
  options.local_zone = options.local->zone;
  // The call lives until the answer, after every send (a raw pointer fits std::function inline).
  options.on_send = [c = call.get()](const std::string&) { c->route = InferenceRoute::kOffloaded; };
  ForwardCallback remote = Remote(done);
  // Sent on because it was busier here: if no peer takes it after all, it is served here.
  options.serve_here = [this, rt, requested_version, done, c = call](InferRequest&& back) {
    c->route = InferenceRoute::kLocal;
    absl::Status admitted = SubmitLocal(rt, requested_version, std::move(back), *c, done);
    if (!admitted.ok()) done(admitted, nullptr);
  };
  if (forwarder_->Route(req, call->trace, options, remote) == Forwarder::Routed::kForwarded) {
    return;
  }
  absl::Status admitted =
      SubmitLocal(std::move(rt), requested_version, std::move(req), *call, done);
  if (admitted.ok()) return;
  if (admitted.code() != absl::StatusCode::kResourceExhausted &&
      admitted.code() != absl::StatusCode::kUnavailable) {
    return remote(admitted);
  }
  // Overloaded or shutting down here after all: a peer with room may take it, if the model's
  // data policy and the routing mode allow (the decision says, and why not).
  options.local->ready = false;
  options.if_no_peer = admitted;
  options.serve_here = nullptr;  // this node just refused it
  forwarder_->Route(req, call->trace, options, remote);
}

void Dispatcher::Forward(InferRequest& req, bool raw_body, const absl::Status& local_error,
                         const std::shared_ptr<InferCall>& call, Done done) {
  RouteOptions options;
  options.raw_body = raw_body;
  // The call lives until the answer, after every send (a raw pointer fits std::function inline).
  options.on_send = [c = call.get()](const std::string&) { c->route = InferenceRoute::kOffloaded; };
  options.local_zone = zone();
  options.hops = call->hops;
  ForwardCallback remote;
  if (local_error.code() == absl::StatusCode::kNotFound) {
    // This node has the model but not the version asked for. If no peer serves that version
    // either, this node's answer, which lists its versions, says more than the mesh's.
    remote = [done = std::move(done), local_error](absl::StatusOr<InferResponse> result) {
      if (result.status().code() == absl::StatusCode::kNotFound) return done(local_error, nullptr);
      done(std::move(result), nullptr);
    };
  } else {
    options.if_no_peer = local_error;
    remote = Remote(std::move(done));
  }
  forwarder_->Route(req, call->trace, options, remote);
}

}  // namespace hivemesh::routing
