#include "api/service_proxy.h"

#include <algorithm>
#include <map>
#include <random>

#include "absl/synchronization/mutex.h"
#include "api/member_check.h"
#include "api/rest_infer.h"
#include "base/strings.h"
#include "base/timeouts.h"
#include "routing/outlier.h"
#include "routing/peak_ewma.h"
#include "routing/retry_budget.h"
#include "services/manifest.h"
#include "serving/expirer.h"
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
  // Each request deposits in the retry budget; each retry withdraws (routing/retry_budget.h).
  void Deposit(SteadyTime now) {
    absl::MutexLock lock(&mu_);
    budget_.Deposit(now);
  }
  bool MayRetry() {
    absl::MutexLock lock(&mu_);
    return budget_.TryWithdraw(SystemClock::Get().Now());
  }
  void Started(const std::string& node) {
    absl::MutexLock lock(&mu_);
    ++StatsOf(node, SystemClock::Get().Now()).pending;
  }
  // A request Started and never sent.
  void Forget(const std::string& node) {
    absl::MutexLock lock(&mu_);
    Stats& s = StatsOf(node, SystemClock::Get().Now());
    s.pending = std::max(0, s.pending - 1);
  }
  // An answer (`status`: its HTTP status) or a transport failure, `took` after it was sent.
  void Finished(const std::string& node, const absl::Status& transport, int status, Nanos took) {
    Observe(node, transport, status, took, /*started=*/true);
  }
  // The same for a request that was not counted as Started (a streamed one: its pending time
  // is its connection's, not the balancer's).
  void Observe(const std::string& node, const absl::Status& transport, int status, Nanos took,
               bool started = false) {
    const SteadyTime now = SystemClock::Get().Now();
    absl::MutexLock lock(&mu_);
    Stats& s = StatsOf(node, now);
    if (started) s.pending = std::max(0, s.pending - 1);
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
  routing::RetryBudget budget_ ABSL_GUARDED_BY(mu_);
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
  if (!services::IsName(host)) return {};
  return host;
}

ServiceProxy::ServiceProxy(std::string self, Resolve resolve, PeerClient* peers, PeerClient* local,
                           Options options)
    : self_(std::move(self)),
      resolve_(std::move(resolve)),
      peers_(peers),
      local_(local),
      options_(options),
      balancer_(std::make_unique<Balancer>()),
      expirer_(std::make_unique<Expirer>()) {}

ServiceProxy::~ServiceProxy() = default;

std::vector<ServiceProxy::Endpoint> ServiceProxy::Allowed(const Route& route,
                                                          std::string* why) const {
  if (route.policy == DataPolicy::kMesh) return route.endpoints;
  std::vector<Endpoint> allowed;
  for (const Endpoint& e : route.endpoints) {
    const bool ok = route.policy == DataPolicy::kLocalOnly
                        ? e.node == self_
                        : !options_.zone.empty() && e.zone == options_.zone;
    if (ok) allowed.push_back(e);
  }
  if (allowed.empty() && !route.endpoints.empty()) {
    *why = route.policy == DataPolicy::kLocalOnly
               ? StrCat("service ", route.service,
                        ": its data policy (local-only) keeps requests "
                        "on the node that received them, and this node (",
                        self_, ") runs no replica of it")
               : StrCat("service ", route.service, ": its data policy (zone) keeps requests in ",
                        options_.zone.empty() ? "the zone of the node that received them"
                                              : StrCat("zone ", options_.zone),
                        ", and no replica of it runs there");
  }
  return allowed;
}

std::string TunnelTarget(std::string_view name, uint16_t port) {
  return port == 0 ? StrCat("/v1/services/", name, "/tunnel")
                   : StrCat("/v1/services/", name, "/tunnel?port=", port);
}

uint16_t TargetOf(const ServiceProxy::Route& route, uint16_t port) {
  if (port == 0) return route.target_port;
  for (const auto& [p, target] : route.ports) {
    if (p == port) return target;
  }
  return 0;
}

absl::StatusOr<RelayPlan> ServiceProxy::PlanPassThrough(
    std::string_view name, const std::function<std::string(const std::string&)>& credential,
    uint16_t port) const {
  std::optional<Route> route = resolve_(name);
  if (!route) return absl::UnavailableError(StrCat("service ", name, " is not applied now"));
  const uint16_t target = TargetOf(*route, port);
  if (target == 0) {
    return absl::UnavailableError(StrCat("service ", name, ": no workload port for port ", port));
  }
  std::string why;
  std::vector<Endpoint> endpoints;
  for (Endpoint& e : Allowed(*route, &why)) {
    if (e.ready) endpoints.push_back(std::move(e));
  }
  if (endpoints.empty() && !why.empty()) return absl::UnavailableError(why);
  RelayPlan plan;
  if (std::any_of(endpoints.begin(), endpoints.end(),
                  [&](const Endpoint& e) { return e.node == self_; })) {
    plan.hops.push_back(RelayHop{StrCat("127.0.0.1:", target), "", "", ""});
    return plan;
  }
  if (endpoints.empty()) {
    return absl::UnavailableError(StrCat("service ", name, " has no ready endpoint"));
  }
  balancer_->Order(endpoints);
  for (const Endpoint& e : endpoints) {
    plan.hops.push_back(RelayHop{e.api_address, e.node, TunnelTarget(name, port),
                                 credential ? credential(e.node) : std::string()});
    balancer_->Started(e.node);
  }
  // The balancer hears how each hop tried went; those left untried once one connects were
  // never sent anything.
  auto tried = std::make_shared<size_t>(0);
  plan.on_attempt = [this, tried, hops = plan.hops](const RelayHop& hop, const absl::Status& result,
                                                    Nanos took) {
    ++*tried;
    balancer_->Finished(hop.peer_node, result, result.ok() ? 200 : 0, took);
    if (!result.ok()) return;
    for (; *tried < hops.size(); ++*tried) balancer_->Forget(hops[*tried].peer_node);
  };
  return plan;
}

std::optional<ForwardPlan> ServiceProxy::PlanForward(
    std::string_view name, const HttpRequest& head,
    const std::function<std::string(const std::string&)>& credential, uint16_t port) const {
  if (name.empty()) name = ServiceNameOfHost(head.header("Host"));
  if (name.empty() || !MemberOf(head).empty() || head.has_header("Upgrade")) return std::nullopt;
  Nanos timeout = options_.default_timeout;
  if (head.has_header(kTimeoutField)) {
    std::optional<uint64_t> ms = ParseUint(head.header(kTimeoutField));
    if (!ms) return std::nullopt;
    absl::StatusOr<std::chrono::milliseconds> given = ClientTimeoutMs(*ms, kTimeoutField);
    if (!given.ok()) return std::nullopt;
    timeout = *given;
  }
  std::optional<Route> route = resolve_(name);
  if (!route) return std::nullopt;
  const uint16_t target = TargetOf(*route, port);
  if (target == 0) return std::nullopt;
  std::string ruled_out;
  std::vector<Endpoint> endpoints;
  for (Endpoint& e : Allowed(*route, &ruled_out)) {
    if (e.ready) endpoints.push_back(std::move(e));
  }
  if (endpoints.empty()) return std::nullopt;
  ForwardPlan plan;
  if (std::any_of(endpoints.begin(), endpoints.end(),
                  [&](const Endpoint& e) { return e.node == self_; })) {
    plan.route.hops.push_back(RelayHop{StrCat("127.0.0.1:", target), "", "", ""});
    plan.served_by.push_back(self_);
  } else {
    balancer_->Order(endpoints);
    for (const Endpoint& e : endpoints) {
      plan.route.hops.push_back(RelayHop{e.api_address, e.node, TunnelTarget(name, port),
                                         credential ? credential(e.node) : std::string()});
      plan.served_by.push_back(e.node);
    }
    // A hop that could not be reached is ejected as for buffered requests; the answers teach the
    // balancer their latency.
    plan.route.on_attempt = [this](const RelayHop& hop, const absl::Status& result, Nanos took) {
      if (!result.ok()) balancer_->Observe(hop.peer_node, result, 0, took);
    };
    plan.on_done = [this, nodes = plan.served_by](size_t hop, const absl::Status& transport,
                                                  int status, Nanos took) {
      balancer_->Observe(nodes[hop], transport, status, took);
    };
  }
  plan.head =
      StrCat(head.method(), " ", head.target(), " HTTP/1.1\r\nHost: ", route->service, "\r\n");
  if (head.has_header("Content-Type")) {
    StrAppend(&plan.head, "Content-Type: ", head.header("Content-Type"), "\r\n");
  }
  for (const auto& [field, value] : head.headers()) {
    if (EndToEnd(field)) StrAppend(&plan.head, field, ": ", value, "\r\n");
  }
  plan.keep_field = [](std::string_view lower) {
    return lower == "content-type" || EndToEnd(lower);
  };
  plan.timeout = std::chrono::duration_cast<std::chrono::milliseconds>(timeout);
  return plan;
}

absl::StatusOr<std::string> ServiceProxy::AuthorizeTunnel(const HttpRequest& request) const {
  std::string_view name = request.target();
  uint16_t port = 0;
  if (const size_t q = name.find('?'); q != std::string_view::npos) {
    const std::string_view query = name.substr(q + 1);
    std::optional<uint64_t> n =
        query.starts_with("port=") ? ParseUint(query.substr(5)) : std::nullopt;
    if (!n || *n == 0 || *n > 65535) return absl::NotFoundError("a tunnel's query is ?port=<n>");
    port = static_cast<uint16_t>(*n);
    name = name.substr(0, q);
  }
  constexpr std::string_view kPrefix = "/v1/services/", kSuffix = "/tunnel";
  if (!name.starts_with(kPrefix) || !name.ends_with(kSuffix)) {
    return absl::NotFoundError("a tunnel is asked for at /v1/services/<name>/tunnel");
  }
  name = name.substr(kPrefix.size(), name.size() - kPrefix.size() - kSuffix.size());
  if (!services::IsName(name)) {
    return absl::NotFoundError("a tunnel names a Service by its name");
  }
  std::optional<Route> route = resolve_(name);
  if (!route) return absl::NotFoundError(StrCat("service ", name, " is not applied here"));
  const uint16_t target = TargetOf(*route, port);
  if (target == 0) return absl::NotFoundError(StrCat("service ", name, " has no port ", port));
  for (const Endpoint& e : route->endpoints) {
    if (e.node == self_ && e.ready) return StrCat("127.0.0.1:", target);
  }
  return absl::UnavailableError(
      StrCat("service ", name, ": this node (", self_, ") does not run a ready replica now"));
}

bool ServiceProxy::Handle(const HttpRequest& request, HttpResponder& respond) const {
  const std::string_view name = ServiceNameOfHost(request.header("Host"));
  if (name.empty()) return false;
  std::optional<Route> route = resolve_(name);
  if (!route) return false;
  Proxy(name, *std::move(route), request, respond, 0);
  return true;
}

void ServiceProxy::Serve(std::string_view name, const HttpRequest& request, HttpResponder respond,
                         uint16_t port) const {
  std::optional<Route> route = resolve_(name);
  if (!route) {
    respond(ErrorResponse(absl::UnavailableError(StrCat("service ", name, " is not applied now"))));
    return;
  }
  Proxy(name, *std::move(route), request, respond, port);
}

// One request on its way: sent, retried, or held while its Service has no endpoint to take it.
struct ServiceProxy::Exchange {
  std::string name;
  Outgoing out;
  HttpResponder respond;
  bool idempotent = false;
  bool from_peer = false;  // a peer sent it here for this node's own replica
  SteadyTime deadline;     // the whole exchange's
  SteadyTime hold_until;   // when waiting for an endpoint ends
  int holds = 0;           // times it waited
  bool resent = false;     // an idempotent request tried again after a failure on the way
  uint16_t port = 0;       // the Service's port it came in on (0: its first)
};

void ServiceProxy::Proxy(std::string_view name, Route route, const HttpRequest& request,
                         HttpResponder& respond, uint16_t port) const {
  auto ex = std::make_shared<Exchange>();
  ex->name = std::string(name);
  const SteadyTime now = SystemClock::Get().Now();
  Nanos timeout = options_.default_timeout;
  if (request.has_header(kTimeoutField)) {
    std::optional<uint64_t> ms = ParseUint(request.header(kTimeoutField));
    absl::StatusOr<std::chrono::milliseconds> given =
        ms ? ClientTimeoutMs(*ms, kTimeoutField)
           : absl::InvalidArgumentError(StrCat(kTimeoutField, ": must be a whole number of ms"));
    if (!given.ok()) return respond(ErrorResponse(given.status()));
    timeout = *given;
  }
  ex->deadline = DeadlineAfter(now, timeout);
  ex->hold_until = std::min(ex->deadline, now + options_.hold_max);
  ex->idempotent = Idempotent(request.method());
  ex->from_peer = !MemberOf(request).empty();
  // A peer names the Service's port the request came in on there (its first, if it does not).
  if (ex->from_peer) {
    std::optional<uint64_t> p = ParseUint(request.header(kServicePortField));
    if (p && *p <= 65535) port = static_cast<uint16_t>(*p);
  }
  ex->port = port;
  ex->out.method = std::string(request.method());
  ex->out.target = std::string(request.target());
  ex->out.headers.emplace_back("Host", route.service);
  if (request.has_header("Content-Type")) {
    ex->out.headers.emplace_back("Content-Type", std::string(request.header("Content-Type")));
  }
  for (const auto& [field, value] : request.headers()) {
    if (EndToEnd(field)) ex->out.headers.emplace_back(std::string(field), std::string(value));
  }
  if (const std::shared_ptr<const std::string> body = request.body(); body != nullptr) {
    ex->out.body = *body;
  }
  ex->respond = std::move(respond);
  balancer_->Deposit(now);
  Attempt(std::move(ex), std::move(route));
}

void ServiceProxy::Attempt(std::shared_ptr<Exchange> ex, std::optional<Route> route) const {
  if (!route) route = resolve_(ex->name);
  if (!route) {
    return ex->respond(
        ErrorResponse(absl::UnavailableError(StrCat("service ", ex->name, " is not applied now"))));
  }
  std::string ruled_out;
  route->endpoints = Allowed(*route, &ruled_out);
  if (route->endpoints.empty() && !ruled_out.empty()) {
    return ex->respond(ErrorResponse(absl::UnavailableError(ruled_out)));
  }
  std::vector<Endpoint> endpoints;
  for (const Endpoint& e : route->endpoints) {
    if (e.ready) endpoints.push_back(e);
  }
  const bool here = std::any_of(endpoints.begin(), endpoints.end(),
                                [&](const Endpoint& e) { return e.node == self_; });
  if (here) {
    endpoints = {Endpoint{self_, ""}};
  } else if (ex->from_peer) {
    // A peer sent it here for the workload this node ran: it goes no further (the peer holds or
    // tries elsewhere: nothing of it reached a workload).
    return ex->respond(ErrorResponse(absl::UnavailableError(
        StrCat("service ", ex->name, ": this node (", self_, ") does not run it now"))));
  } else if (!endpoints.empty()) {
    balancer_->Order(endpoints);
  }
  if (endpoints.empty()) {
    const std::string why =
        route->endpoints.empty()
            ? StrCat("service ", ex->name,
                     " has no endpoint: no live node runs a workload it selects")
            : StrCat("service ", ex->name, " has no ready endpoint: ", route->endpoints.size(),
                     " placed, none ready");
    // A replica restarting, or moving to another node: wait for it a while. (No replica
    // placed at all: no Deployment selects it; nothing to wait for.)
    if (!route->endpoints.empty() && Hold(ex)) return;
    return ex->respond(ErrorResponse(absl::UnavailableError(
        ex->holds > 0 ? StrCat(why, " (waited ", options_.hold_max.count() / 1000000, " ms)")
                      : why)));
  }
  const uint16_t target = TargetOf(*route, ex->port);
  if (target == 0) {
    return ex->respond(ErrorResponse(absl::UnavailableError(
        StrCat("service ", ex->name, ": no workload port for port ", ex->port))));
  }
  Send(std::move(ex), target, std::move(endpoints));
}

bool ServiceProxy::Hold(const std::shared_ptr<Exchange>& ex) const {
  const SteadyTime now = SystemClock::Get().Now();
  if (now >= ex->hold_until) return false;
  // 50 ms, doubling to 400 ms: a replica back within a second is found within a tenth of it.
  const Nanos step = std::min<Nanos>(std::chrono::milliseconds(50) * (1 << std::min(ex->holds, 3)),
                                     ex->hold_until - now);
  ++ex->holds;
  expirer_->Watch(now + step, ex, [this, ex] { Attempt(ex); });
  return true;
}

void ServiceProxy::Send(std::shared_ptr<Exchange> ex, uint16_t target_port,
                        std::vector<Endpoint> left) const {
  const Endpoint to = left.front();
  left.erase(left.begin());
  const bool local = to.node == self_;
  const SteadyTime now = SystemClock::Get().Now();
  if (now >= ex->deadline) {
    return ex->respond(ErrorResponse(absl::DeadlineExceededError(
        StrCat("service ", ex->name, ": the request's time ran out before an endpoint took it"))));
  }
  PeerRequest r;
  r.address = local ? StrCat("127.0.0.1:", target_port) : to.api_address;
  r.peer_node = local ? std::string() : to.node;
  r.link = !local;  // a workload is no hivemesh node
  r.method = ex->out.method;
  r.target = ex->out.target;
  r.headers = ex->out.headers;
  const auto left_ms = std::chrono::duration_cast<std::chrono::milliseconds>(ex->deadline - now);
  r.timeout = std::max(left_ms, std::chrono::milliseconds(1));
  // The next node holds and answers within what is left (a workload is not told).
  if (!local) {
    r.headers.emplace_back(std::string(kTimeoutField), StrCat(r.timeout.count()));
    if (ex->port != 0) r.headers.emplace_back(std::string(kServicePortField), StrCat(ex->port));
  }
  r.body = ex->out.body;
  if (!local) balancer_->Started(to.node);
  (local ? local_ : peers_)
      ->Send(std::move(r), [this, ex, target_port, left = std::move(left), to, local,
                            sent = now](absl::StatusOr<PeerResponse> answer) mutable {
        if (!local) {
          balancer_->Finished(to.node, answer.status(), answer.ok() ? answer->status : 0,
                              SystemClock::Get().Now() - sent);
        }
        // What reached no workload may go again, whatever its method: a refused connection,
        // or a node's own refusal (its 503 names no serving node).
        const bool not_delivered = (!answer.ok() && IsConnectionRefused(answer.status())) ||
                                   (answer.ok() && !local && answer->status == 503 &&
                                    !answer->headers.Get("hivemesh-served-by").has_value());
        if (answer.ok() && !not_delivered) return ex->respond(Answer(*answer, to.node, !local));
        if (not_delivered || (ex->idempotent && !ex->resent && !answer.ok() &&
                              !absl::IsDeadlineExceeded(answer.status()))) {
          if (!not_delivered) ex->resent = true;
          if (balancer_->MayRetry()) {
            if (!left.empty()) return Send(ex, target_port, std::move(left));
            // None left: wait for the mesh to see the replica back (or elsewhere).
            if (Hold(ex)) return;
          }
        }
        if (answer.ok()) return ex->respond(Answer(*answer, to.node, !local));
        if (absl::IsDeadlineExceeded(answer.status())) {
          return ex->respond(ErrorResponse(absl::DeadlineExceededError(
              StrCat("service ", ex->name, ": ", to.node, " did not answer in time"))));
        }
        HttpResponse failed = ErrorResponse(absl::UnavailableError(
            StrCat("service ", ex->name, ": ", to.node, " failed: ", MessageOf(answer.status()))));
        failed.status = 502;
        ex->respond(std::move(failed));
      });
}

}  // namespace hivemesh
