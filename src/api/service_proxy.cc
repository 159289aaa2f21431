#include "api/service_proxy.h"

#include <algorithm>
#include <map>
#include <random>

#include "absl/synchronization/mutex.h"
#include "api/member_check.h"
#include "api/rest_infer.h"
#include "base/strings.h"
#include "routing/outlier.h"
#include "routing/peak_ewma.h"
#include "services/manifest.h"
#include "transport/peer_client.h"

namespace hivemesh {

// Per endpoint node: peak-EWMA of its answers' latency, requests pending, outlier ejection.
class ServiceProxy::Balancer {
 public:
  // `endpoints` (ready, not this node) ordered: the P2C choice first, the others after, ejected
  // ones last.
  void Order(std::vector<Endpoint>& endpoints) {
    const SteadyTime now = SystemClock::Get().Now();
    absl::MutexLock lock(&mu_);
    std::vector<Endpoint> open, ejected;
    for (Endpoint& e : endpoints) {
      (StatsOf(e.node, now).outlier.Ejected(now) ? ejected : open).push_back(std::move(e));
    }
    if (open.empty()) open.swap(ejected);  // all ejected: try them rather than answer 503
    std::shuffle(open.begin(), open.end(), rng_);
    if (open.size() >= 2) {
      const double a = Cost(open[0].node, now), b = Cost(open[1].node, now);
      if (b < a) std::swap(open[0], open[1]);
    }
    endpoints = std::move(open);
    endpoints.insert(endpoints.end(), ejected.begin(), ejected.end());
  }
  void Started(const std::string& node) {
    absl::MutexLock lock(&mu_);
    ++StatsOf(node, SystemClock::Get().Now()).pending;
  }
  // An answer (`status`: its HTTP status) or a transport failure, `took` after it was sent.
  void Finished(const std::string& node, const absl::Status& transport, int status, Nanos took) {
    const SteadyTime now = SystemClock::Get().Now();
    absl::MutexLock lock(&mu_);
    Stats& s = StatsOf(node, now);
    s.pending = std::max(0, s.pending - 1);
    if (!transport.ok()) {
      const routing::FailureKind kind = IsConnectionRefused(transport)
                                            ? routing::FailureKind::kRefused
                                            : routing::FailureKind::kReset;
      s.outlier.OnFailure(now, kind, true);
      return;
    }
    // A node's own refusal (it no longer runs the workload, or its workload failed on the way)
    // is a soft failure; the workload's answers, errors too, are its own.
    if (status == 502 || status == 503) {
      s.outlier.OnFailure(now, routing::FailureKind::kSoft, true);
    } else {
      s.outlier.OnSuccess(now);
    }
    s.latency.Observe(took, now);
  }

 private:
  struct Stats {
    explicit Stats(SteadyTime now)
        : latency(std::chrono::seconds(10), std::chrono::milliseconds(30), now) {}
    routing::PeakEwma latency;
    routing::OutlierState outlier;
    int pending = 0;
  };
  Stats& StatsOf(const std::string& node, SteadyTime now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = stats_.find(node);
    if (it == stats_.end()) {
      if (stats_.size() >= 4096) stats_.clear();  // nodes come and go: bounded
      it = stats_.emplace(node, Stats(now)).first;
    }
    return it->second;
  }
  double Cost(const std::string& node, SteadyTime now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Stats& s = StatsOf(node, now);
    return s.latency.Get(now) * (s.pending + 1);
  }

  absl::Mutex mu_;
  std::map<std::string, Stats> stats_ ABSL_GUARDED_BY(mu_);
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_){std::random_device{}()};
};

namespace {

constexpr std::string_view kServedBy = "Hivemesh-Served-By";

bool Idempotent(std::string_view method) { return method == "GET" || method == "HEAD"; }

// A field that goes end to end (RFC 9110 7.6.1): not one of the connection's own, not one the
// sender sets from the message (Host, length, framing), and not one of hivemesh's own (a
// client's Hivemesh-* fields, credentials among them, never reach a node or a workload).
bool EndToEnd(std::string_view name) {
  for (std::string_view hop : {"connection", "keep-alive", "proxy-connection", "proxy-authenticate",
                               "proxy-authorization", "te", "trailer", "transfer-encoding",
                               "upgrade", "host", "content-length", "content-type", "expect"}) {
    if (EqualsLowerCase(name, hop)) return false;
  }
  return !(name.size() >= 9 && EqualsLowerCase(name.substr(0, 9), "hivemesh-"));
}

// `from_peer`: the answer came from another node, which names who served (a workload's own
// Hivemesh-Served-By is not taken).
HttpResponse Answer(const PeerResponse& r, std::string_view served_by, bool from_peer) {
  HttpResponse out;
  out.status = r.status;
  out.content_type =
      std::string(r.headers.Get("content-type").value_or("application/octet-stream"));
  if (r.body != nullptr) out.body = *r.body;
  r.headers.ForEach([&](std::string_view name, std::string_view value) {
    if (EndToEnd(name)) out.headers.emplace_back(std::string(name), std::string(value));
  });
  out.headers.emplace_back(
      std::string(kServedBy),
      std::string(from_peer ? r.headers.Get("hivemesh-served-by").value_or(served_by) : served_by));
  return out;
}

}  // namespace

std::string_view ServiceNameOfHost(std::string_view host) {
  if (const size_t colon = host.rfind(':'); colon != std::string_view::npos) {
    host = host.substr(0, colon);
  }
  constexpr std::string_view kSuffix = ".hivemesh";
  if (host.ends_with(kSuffix)) host.remove_suffix(kSuffix.size());
  if (!services::CheckName(host, "host").ok()) return {};
  return host;
}

ServiceProxy::ServiceProxy(std::string self, Resolve resolve, PeerClient* peers, PeerClient* local)
    : self_(std::move(self)),
      resolve_(std::move(resolve)),
      peers_(peers),
      local_(local),
      balancer_(std::make_unique<Balancer>()) {}

ServiceProxy::~ServiceProxy() = default;

bool ServiceProxy::Handle(const HttpRequest& request, HttpResponder& respond) const {
  const std::string_view name = ServiceNameOfHost(request.header("Host"));
  if (name.empty()) return false;
  std::optional<Route> route = resolve_(name);
  if (!route) return false;
  Proxy(name, *route, request, respond);
  return true;
}

void ServiceProxy::Serve(std::string_view name, const HttpRequest& request,
                         HttpResponder respond) const {
  std::optional<Route> route = resolve_(name);
  if (!route) {
    respond(ErrorResponse(absl::UnavailableError(StrCat("service ", name, " is not applied now"))));
    return;
  }
  Proxy(name, *route, request, respond);
}

void ServiceProxy::Proxy(std::string_view name, const Route& route, const HttpRequest& request,
                         HttpResponder& respond) const {
  std::vector<Endpoint> endpoints;
  for (const Endpoint& e : route.endpoints) {
    if (e.ready) endpoints.push_back(e);
  }
  const bool here = std::any_of(endpoints.begin(), endpoints.end(),
                                [&](const Endpoint& e) { return e.node == self_; });
  if (here) {
    endpoints = {Endpoint{self_, ""}};
  } else if (!MemberOf(request).empty()) {
    // A peer sent it here for the workload this node ran: it goes no further.
    respond(ErrorResponse(absl::UnavailableError(
        StrCat("service ", name, ": this node (", self_, ") does not run it now"))));
    return;
  } else if (!endpoints.empty()) {
    balancer_->Order(endpoints);
  }
  if (endpoints.empty()) {
    respond(ErrorResponse(absl::UnavailableError(
        route.endpoints.empty()
            ? StrCat("service ", name, " has no endpoint: no live node runs a workload it selects")
            : StrCat("service ", name, " has no ready endpoint: ", route.endpoints.size(),
                     " placed, none ready"))));
    return;
  }
  auto out = std::make_shared<Outgoing>();
  out->method = std::string(request.method());
  out->target = std::string(request.target());
  out->headers.emplace_back("Host", route.service);
  if (request.has_header("Content-Type")) {
    out->headers.emplace_back("Content-Type", std::string(request.header("Content-Type")));
  }
  for (const auto& [field, value] : request.headers()) {
    if (EndToEnd(field)) out->headers.emplace_back(std::string(field), std::string(value));
  }
  if (const std::shared_ptr<const std::string> body = request.body(); body != nullptr) {
    out->body = *body;
  }
  Send(std::move(out), route, std::move(endpoints), Idempotent(request.method()),
       std::move(respond));
}

void ServiceProxy::Send(std::shared_ptr<const Outgoing> out, const Route& route,
                        std::vector<Endpoint> left, bool may_retry, HttpResponder respond) const {
  const Endpoint to = left.front();
  left.erase(left.begin());
  const bool local = to.node == self_;
  PeerRequest r;
  r.address = local ? StrCat("127.0.0.1:", route.target_port) : to.api_address;
  r.peer_node = local ? std::string() : to.node;
  r.link = !local;  // a workload is no hivemesh node
  r.method = out->method;
  r.target = out->target;
  r.headers = out->headers;
  r.body = out->body;
  if (!local) balancer_->Started(to.node);
  const SteadyTime sent = SystemClock::Get().Now();
  (local ? local_ : peers_)
      ->Send(std::move(r), [this, out, route, left = std::move(left), may_retry, to, local, sent,
                            respond = std::move(respond)](absl::StatusOr<PeerResponse> answer) {
        if (!local) {
          balancer_->Finished(to.node, answer.status(), answer.ok() ? answer->status : 0,
                              SystemClock::Get().Now() - sent);
        }
        if (answer.ok()) return respond(Answer(*answer, to.node, !local));
        // An idempotent request that failed on the way is tried once at the next endpoint.
        if (may_retry && !left.empty()) return Send(out, route, left, false, respond);
        HttpResponse failed = ErrorResponse(absl::UnavailableError(StrCat(
            "service ", route.service, ": ", to.node, " failed: ", MessageOf(answer.status()))));
        failed.status = 502;
        respond(std::move(failed));
      });
}

}  // namespace hivemesh
