// Services reached by name (api/service_proxy.h): which Host values name a Service, and the
// proxy between real servers on loopback: retries of idempotent requests at another endpoint,
// readiness, and what is said when no endpoint serves.
#include "api/service_proxy.h"

#include <gtest/gtest.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

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
          return route_;
        },
        peers_.get(), local_.get());
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

TEST_F(ProxyRetryTest, APostIsNotRetriedAndTheEndpointThatRefusedIsEjected) {
  test::HttpConnection conn(a_->port());
  const ServiceProxy::Endpoint live = route_.endpoints[1];
  route_.endpoints.pop_back();  // the dead one alone
  test::HttpResult post = conn.Request("POST", "/", "x", {{"Host", "svc"}});
  ASSERT_EQ(post.status, 502) << "a POST that met the dead endpoint is not retried";
  EXPECT_NE(post.body.find("service svc: dead failed"), std::string::npos) << post.body;
  route_.endpoints.push_back(live);
  // Its refused connection ejected it (for a second: three requests take far less, even on a
  // loaded machine): the next POSTs go to the live one.
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(conn.Request("POST", "/", "x", {{"Host", "svc"}}).status, 200) << i;
  }
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

}  // namespace
}  // namespace hivemesh
