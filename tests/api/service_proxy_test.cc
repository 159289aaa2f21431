// Services reached by name (api/service_proxy.h): which Host values name a Service, and the
// proxy between real servers on loopback: retries of idempotent requests at another endpoint,
// readiness, and what is said when no endpoint serves.
#include "api/service_proxy.h"

#include <gtest/gtest.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "support/http_client.h"
#include "transport/io_threads.h"
#include "transport/peer_client.h"

namespace hivemesh {
namespace {

TEST(ServiceProxyTest, AHostNamesAServiceByItsNameAloneOrUnderHivemesh) {
  EXPECT_EQ(ServiceNameOfHost("edge-camera-ai"), "edge-camera-ai");
  EXPECT_EQ(ServiceNameOfHost("edge-camera-ai:80"), "edge-camera-ai");
  EXPECT_EQ(ServiceNameOfHost("edge-camera-ai.hivemesh"), "edge-camera-ai");
  EXPECT_EQ(ServiceNameOfHost("edge-camera-ai.hivemesh:8000"), "edge-camera-ai");
  // Addresses and other names are not Services: the node's own API answers them.
  EXPECT_EQ(ServiceNameOfHost("127.0.0.1:8000"), "");
  EXPECT_EQ(ServiceNameOfHost("[::1]:8000"), "");
  EXPECT_EQ(ServiceNameOfHost("example.com"), "");
  EXPECT_EQ(ServiceNameOfHost("Edge_Camera"), "");
  EXPECT_EQ(ServiceNameOfHost(""), "");
  EXPECT_EQ(ServiceNameOfHost(std::string(300, 'a')), "");
}

// A port nothing listens on (bound, then closed).
uint16_t ClosedPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

// Node A's proxy for Service `svc` with two remote endpoints: `dead` (nothing listens) and `b`
// (a server standing for node B, which answers by Host as a node running the workload would).
class ProxyRetryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    HttpServerOptions o;
    o.port = 0;
    auto b = HttpServer::Create(o, [](const HttpRequest& req, HttpResponder done) {
      HttpResponse r;
      r.content_type = "text/plain";
      r.body = std::string(req.method()) + " " + std::string(req.header("Host"));
      r.headers.emplace_back("Hivemesh-Served-By", "b");
      done(std::move(r));
    });
    ASSERT_TRUE(b.ok());
    b_ = std::move(*b);
    b_->Start();
    io_ = IoThreads::Create(1);
    peers_ = PeerClient::Create(io_);
    local_ = PeerClient::Create(io_);
    route_.service = "svc";
    route_.target_port = 5000;
    route_.endpoints = {{"dead", "127.0.0.1:" + std::to_string(ClosedPort())},
                        {"b", "127.0.0.1:" + std::to_string(b_->port())}};
    proxy_ = std::make_unique<ServiceProxy>(
        "a",
        [this](std::string_view name) -> std::optional<ServiceProxy::Route> {
          if (name != "svc") return std::nullopt;
          absl::MutexLock lock(&route_mu_);
          return route_;
        },
        peers_.get(), local_.get(),
        // Long enough that a readiness set 100 ms into a wait is seen on a busy machine.
        ServiceProxy::Options{.hold_max = std::chrono::seconds(3)});
    auto a = HttpServer::Create(
        o,
        [this](const HttpRequest& req, HttpResponder done) {
          if (!proxy_->Handle(req, done)) {
            HttpResponse r;
            r.status = 404;
            done(std::move(r));
          }
        },
        io_);
    ASSERT_TRUE(a.ok());
    a_ = std::move(*a);
    a_->Start();
  }
  void TearDown() override {
    a_->Stop();
    peers_->Stop();
    local_->Stop();
    b_->Stop();
    io_->Stop();
  }

  std::shared_ptr<IoThreads> io_;
  std::unique_ptr<HttpServer> a_, b_;
  std::unique_ptr<PeerClient> peers_, local_;
  // Read by the proxy (on its threads, for a held request), written by the tests.
  absl::Mutex route_mu_;
  ServiceProxy::Route route_;
  std::unique_ptr<ServiceProxy> proxy_;
};

TEST_F(ProxyRetryTest, AGetThatFailsOnTheWayIsTriedAtTheOtherEndpoint) {
  test::HttpConnection conn(a_->port());
  for (int i = 0; i < 24; ++i) {
    test::HttpResult get = conn.Request("GET", "/", "", {{"Host", "svc"}});
    ASSERT_EQ(get.status, 200) << "a GET is retried at the live endpoint: " << get.body;
    EXPECT_EQ(get.body, "GET svc");
    EXPECT_EQ(get.header("hivemesh-served-by"), "b");
  }
}

TEST_F(ProxyRetryTest, APostThatReachedNoWorkloadGoesOnAndTheEndpointThatRefusedIsEjected) {
  test::HttpConnection conn(a_->port());
  // A refused connection delivered nothing: a POST is tried at the live endpoint too.
  for (int i = 0; i < 8; ++i) {
    test::HttpResult post = conn.Request("POST", "/", "x", {{"Host", "svc"}});
    ASSERT_EQ(post.status, 200) << post.body;
    EXPECT_EQ(post.body, "POST svc");
  }
  const ServiceProxy::Endpoint live = route_.endpoints[1];
  route_.endpoints.pop_back();  // the dead one alone: held, tried again, then 502
  test::HttpResult post = conn.Request("POST", "/", "x", {{"Host", "svc"}});
  ASSERT_EQ(post.status, 502);
  EXPECT_NE(post.body.find("service svc: dead failed: connection refused"), std::string::npos)
      << post.body;
  route_.endpoints.push_back(live);
  // Its refused connection ejected it: the next POSTs go to the live one first.
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(conn.Request("POST", "/", "x", {{"Host", "svc"}}).status, 200) << i;
  }
}

// An endpoint that reads a request and closes without an answer: the request may have reached
// its workload.
class Hangup {
 public:
  Hangup() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    listen(fd_, 16);
    socklen_t len = sizeof a;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] {
      for (;;) {
        const int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0) return;
        ++accepted;
        char buf[4096];
        (void)recv(c, buf, sizeof buf, 0);
        close(c);
      }
    });
  }
  ~Hangup() {
    shutdown(fd_, SHUT_RDWR);
    close(fd_);
    thread_.join();
  }
  uint16_t port() const { return port_; }
  std::atomic<int> accepted{0};

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
  std::thread thread_;
};

TEST_F(ProxyRetryTest, APostThatMayHaveReachedAWorkloadIsNotSentAgain) {
  Hangup hangup;
  route_.endpoints = {{"hangup", "127.0.0.1:" + std::to_string(hangup.port())}};
  test::HttpConnection conn(a_->port());
  test::HttpResult post = conn.Request("POST", "/", "x", {{"Host", "svc"}});
  EXPECT_EQ(post.status, 502) << post.body;
  EXPECT_EQ(hangup.accepted.load(), 1) << "sent once";
  // A GET goes once more (it is idempotent), then fails too.
  test::HttpResult get = conn.Request("GET", "/", "", {{"Host", "svc"}});
  EXPECT_EQ(get.status, 502) << get.body;
  EXPECT_EQ(hangup.accepted.load(), 3);
}

TEST_F(ProxyRetryTest, ARequestWaitsForAnEndpointWithinItsDeadline) {
  const ServiceProxy::Endpoint live = route_.endpoints[1];
  route_.endpoints = {{"b", live.api_address, /*ready=*/false}};
  test::HttpConnection conn(a_->port());
  // Not ready for the whole wait (3 s): 503 saying so.
  test::HttpResult none = conn.Request("GET", "/", "", {{"Host", "svc"}});
  EXPECT_EQ(none.status, 503);
  EXPECT_NE(none.body.find("none ready (waited"), std::string::npos) << none.body;
  // Ready while it waits: answered.
  std::thread ready([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    absl::MutexLock lock(&route_mu_);
    route_.endpoints[0].ready = true;
  });
  test::HttpResult got = conn.Request("GET", "/", "", {{"Host", "svc"}});
  ready.join();
  EXPECT_EQ(got.status, 200) << got.body;
  // A deadline the client gives is kept; a bad one is refused.
  route_.endpoints[0].ready = false;
  test::HttpResult late =
      conn.Request("GET", "/", "", {{"Host", "svc"}, {"Hivemesh-Timeout-Ms", "1"}});
  EXPECT_TRUE(late.status == 503 || late.status == 504) << late.status << " " << late.body;
  EXPECT_EQ(conn.Request("GET", "/", "", {{"Host", "svc"}, {"Hivemesh-Timeout-Ms", "soon"}}).status,
            400);
}

TEST_F(ProxyRetryTest, OnlyReadyEndpointsGetRequestsAndNoneReadyIsSaid) {
  route_.endpoints[0].ready = false;  // the dead one is known not ready: never tried
  test::HttpConnection conn(a_->port());
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(conn.Request("POST", "/", "x", {{"Host", "svc"}}).status, 200);
  }
  route_.endpoints[1].ready = false;
  test::HttpResult none = conn.Request("GET", "/", "", {{"Host", "svc"}});
  EXPECT_EQ(none.status, 503);
  EXPECT_NE(none.body.find("svc has no ready endpoint: 2 placed, none ready"), std::string::npos)
      << none.body;
  route_.endpoints.clear();
  none = conn.Request("GET", "/", "", {{"Host", "svc"}});
  EXPECT_EQ(none.status, 503);
  EXPECT_NE(none.body.find("no live node runs a workload it selects"), std::string::npos);
  EXPECT_EQ(conn.Request("GET", "/", "", {{"Host", "other"}}).status, 404)
      << "a Host that names no Service is not the proxy's";
}

TEST_F(ProxyRetryTest, APassThroughPlanTunnelsToReadyEndpointsOrGoesToTheLocalOne) {
  absl::StatusOr<RelayPlan> plan =
      proxy_->PlanPassThrough("svc", [](const std::string& node) { return "cred-" + node; });
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->hops.size(), 2u);
  for (const RelayHop& hop : plan->hops) {
    EXPECT_EQ(hop.target, "/v1/services/svc/tunnel");
    EXPECT_EQ(hop.credential, "cred-" + hop.peer_node);
  }
  // The dead one refused a connection: ejected, so it comes last from now on.
  const RelayHop dead = plan->hops[0].peer_node == "dead" ? plan->hops[0] : plan->hops[1];
  plan->on_attempt(dead, absl::UnavailableError("connection refused by it"), Nanos(1000));
  for (int i = 0; i < 8; ++i) {
    absl::StatusOr<RelayPlan> next = proxy_->PlanPassThrough("svc", nullptr);
    ASSERT_TRUE(next.ok());
    EXPECT_EQ(next->hops[0].peer_node, "b");
    EXPECT_EQ(next->hops[0].credential, "");
  }
  // This node runs a ready replica: straight to its port, no tunnel.
  route_.endpoints.push_back({"a", "", true});
  plan = proxy_->PlanPassThrough("svc", nullptr);
  ASSERT_TRUE(plan.ok());
  ASSERT_EQ(plan->hops.size(), 1u);
  EXPECT_EQ(plan->hops[0].address, "127.0.0.1:5000");
  EXPECT_EQ(plan->hops[0].peer_node, "");
  // Not applied, or nothing ready: refused.
  EXPECT_TRUE(absl::IsUnavailable(proxy_->PlanPassThrough("other", nullptr).status()));
  for (ServiceProxy::Endpoint& e : route_.endpoints) e.ready = false;
  EXPECT_TRUE(absl::IsUnavailable(proxy_->PlanPassThrough("svc", nullptr).status()));
}

TEST_F(ProxyRetryTest, TheDataPolicyRulesEndpointsOut) {
  test::HttpConnection conn(a_->port());
  route_.endpoints = {{"b", route_.endpoints[1].api_address, true, "east"}};
  // local-only: node "a" runs no replica, so nothing leaves it.
  route_.policy = DataPolicy::kLocalOnly;
  test::HttpResult r = conn.Request("GET", "/", "", {{"Host", "svc"}});
  EXPECT_EQ(r.status, 503);
  EXPECT_NE(r.body.find("data policy (local-only)"), std::string::npos) << r.body;
  EXPECT_TRUE(absl::IsUnavailable(proxy_->PlanPassThrough("svc", nullptr).status()));
  // zone: this proxy's node has no zone label, so no endpoint shares it.
  route_.policy = DataPolicy::kZone;
  r = conn.Request("GET", "/", "", {{"Host", "svc"}});
  EXPECT_EQ(r.status, 503);
  EXPECT_NE(r.body.find("data policy (zone)"), std::string::npos) << r.body;
  route_.policy = DataPolicy::kMesh;
  EXPECT_EQ(conn.Request("GET", "/", "", {{"Host", "svc"}}).status, 200);
}

TEST(ServiceProxyZoneTest, AZonePolicyKeepsRequestsInTheReceivingNodesZone) {
  HttpServerOptions o;
  o.port = 0;
  std::atomic<int> east{0}, west{0};
  auto serve = [](std::atomic<int>& count) {
    return [&count](const HttpRequest&, HttpResponder done) {
      ++count;
      HttpResponse r;
      r.body = "ok";
      done(std::move(r));
    };
  };
  auto e = HttpServer::Create(o, serve(east));
  auto w = HttpServer::Create(o, serve(west));
  ASSERT_TRUE(e.ok() && w.ok());
  (*e)->Start();
  (*w)->Start();
  auto io = IoThreads::Create(1);
  auto peers = PeerClient::Create(io);
  ServiceProxy::Route route;
  route.service = "svc";
  route.target_port = 1;
  route.policy = DataPolicy::kZone;
  route.endpoints = {{"e", "127.0.0.1:" + std::to_string((*e)->port()), true, "east"},
                     {"w", "127.0.0.1:" + std::to_string((*w)->port()), true, "west"}};
  ServiceProxy proxy(
      "a", [&](std::string_view) -> std::optional<ServiceProxy::Route> { return route; },
      peers.get(), peers.get(), ServiceProxy::Options{.zone = "east"});
  auto a = HttpServer::Create(
      o, [&](const HttpRequest& req, HttpResponder done) { proxy.Handle(req, done); }, io);
  ASSERT_TRUE(a.ok());
  (*a)->Start();
  test::HttpConnection conn((*a)->port());
  for (int i = 0; i < 16; ++i) {
    EXPECT_EQ(conn.Request("GET", "/", "", {{"Host", "svc"}}).status, 200);
  }
  EXPECT_EQ(east.load(), 16);
  EXPECT_EQ(west.load(), 0) << "never outside the zone";
  absl::StatusOr<RelayPlan> plan = proxy.PlanPassThrough("svc", nullptr);
  ASSERT_TRUE(plan.ok());
  ASSERT_EQ(plan->hops.size(), 1u);
  EXPECT_EQ(plan->hops[0].peer_node, "e");
  (*a)->Stop();
  peers->Stop();
  io->Stop();
  (*e)->Stop();
  (*w)->Stop();
}

// A tunnel upgrade as the serving node sees it: only its target matters to the proxy.
class TunnelRequest : public HttpRequest {
 public:
  explicit TunnelRequest(std::string target) : target_(std::move(target)) {}
  std::string_view method() const override { return "GET"; }
  std::string_view target() const override { return target_; }
  std::string_view header(std::string_view) const override { return {}; }
  bool has_header(std::string_view) const override { return false; }
  std::vector<std::pair<std::string_view, std::string_view>> headers() const override { return {}; }
  std::shared_ptr<const std::string> body() const override { return nullptr; }
  SteadyTime received() const override { return {}; }
  std::string_view remote_address() const override { return "127.0.0.1"; }

 private:
  std::string target_;
};

TEST_F(ProxyRetryTest, ATunnelGoesOnlyToThisNodesOwnReadyReplica) {
  const auto ask = [&](std::string target) {
    return proxy_->AuthorizeTunnel(TunnelRequest(std::move(target)));
  };
  // "a" runs none: 503, and a tunnel is never sent on to another node.
  EXPECT_TRUE(absl::IsUnavailable(ask("/v1/services/svc/tunnel").status()));
  route_.endpoints.push_back({"a", "", false});
  EXPECT_TRUE(absl::IsUnavailable(ask("/v1/services/svc/tunnel").status())) << "not ready";
  route_.endpoints.back().ready = true;
  absl::StatusOr<std::string> to = ask("/v1/services/svc/tunnel");
  ASSERT_TRUE(to.ok()) << to.status();
  EXPECT_EQ(*to, "127.0.0.1:5000");
  // A Service's other ports: the tunnel names the port, each goes to its own target.
  route_.ports = {{80, 5000}, {81, 5001}};
  to = ask("/v1/services/svc/tunnel?port=81");
  ASSERT_TRUE(to.ok()) << to.status();
  EXPECT_EQ(*to, "127.0.0.1:5001");
  for (const char* bad : {"/v1/services/svc/tunnel?port=82", "/v1/services/svc/tunnel?port=x",
                          "/v1/services/svc/tunnel?port=0", "/v1/services/svc/tunnel?p=81"}) {
    EXPECT_TRUE(absl::IsNotFound(ask(bad).status())) << bad;
  }
  EXPECT_EQ(TunnelTarget("svc", 81), "/v1/services/svc/tunnel?port=81");
  for (const char* bad : {"/v1/services/other/tunnel", "/v1/services//tunnel",
                          "/v1/services/../x/tunnel", "/v1/services/svc", "/",
                          "/v1/services/svc/"
                          "tunnel/x",
                          "/v1/services/SVC/tunnel"}) {
    EXPECT_TRUE(absl::IsNotFound(ask(bad).status())) << bad;
  }
}

}  // namespace
}  // namespace hivemesh
