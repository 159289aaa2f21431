// GET /metrics on two real agents: node-a hosts `echo`, node-b hosts `identity`. Local requests,
// requests for `identity` sent through node-a (offloaded there, forwarded_in on node-b) and
// errors are counted where they happened; both nodes' output passes `promtool check metrics`.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <sstream>

#include "support/agent_process.h"
#include "support/http_client.h"
#include "support/mesh_util.h"
#include "telemetry/promtool.h"

namespace hivemesh::test {
namespace {

using ::testing::HasSubstr;

constexpr const char* kBody =
    R"({"inputs":[{"name":"INPUT0","shape":[3],"datatype":"FP32","data":[1,2,3]}]})";
// INT32 where the model takes FP32: decoded fine, refused by the model's checks (400).
constexpr const char* kWrongType =
    R"({"inputs":[{"name":"INPUT0","shape":[1],"datatype":"INT32","data":[1]}]})";

// The value of the sample whose name and labels are exactly `series`; NaN if there is none.
double Sample(const std::string& text, const std::string& series) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.size() > series.size() && line.compare(0, series.size(), series) == 0 &&
        line[series.size()] == ' ') {
      return std::stod(line.substr(series.size() + 1));
    }
  }
  return std::nan("");
}

std::string Requests(const std::string& model, const std::string& route,
                     const std::string& outcome) {
  return "hivemesh_inference_requests_total{model=\"" + model + "\",route=\"" + route +
         "\",outcome=\"" + outcome + "\"}";
}

std::string Scrape(int port) { return HttpRequestOnce(port, "GET", "/metrics").body; }

class MetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_.Write("a/echo/config.yaml", IdentityModelConfig());
    dir_.Write("a/echo/1/.keep", "");
    dir_.Write("b/identity/config.yaml", IdentityModelConfig());
    dir_.Write("b/identity/1/.keep", "");
    b_ = std::make_unique<AgentProcess>(std::vector<std::string>{
        "--node-name", "node-b", "--model-repository", dir_.path() + "/b"});
    ASSERT_TRUE(b_->ok()) << b_->log();
    a_ = std::make_unique<AgentProcess>(
        std::vector<std::string>{"--node-name", "node-a", "--model-repository", dir_.path() + "/a",
                                 "--join", GossipAddress(b_->port())});
    ASSERT_TRUE(a_->ok()) << a_->log();
    ASSERT_TRUE(WaitFor([&] { return PeersHosting(a_->port(), "identity") == 1; },
                        std::chrono::seconds(10)))
        << "node-a never learnt node-b's models\n"
        << a_->log();
    ASSERT_TRUE(WaitFor(
        [&] { return Sample(Scrape(b_->port()), "hivemesh_members{state=\"alive\"}") == 2; },
        std::chrono::seconds(10)))
        << "node-b never counted two alive members\n"
        << Scrape(b_->port());
  }

  TempDir dir_;
  std::unique_ptr<AgentProcess> b_, a_;  // stopped (SIGKILL) when destroyed
};

TEST_F(MetricsTest, CountsLocalOffloadedForwardedInAndErrorsAndPassesPromtool) {
  constexpr int kLocal = 5, kForwarded = 4;
  HttpConnection conn(a_->port());
  for (int i = 0; i < kLocal; ++i) {
    HttpResult r = conn.Request("POST", "/v2/models/echo/infer", kBody);
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.header("hivemesh-served-by"), "node-a");
  }
  for (int i = 0; i < kForwarded; ++i) {
    HttpResult r = conn.Request("POST", "/v2/models/identity/infer", kBody);
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.header("hivemesh-served-by"), "node-b");
  }
  ASSERT_TRUE(test::WaitSettled(a_->port()));  // until then, 503 and a retry for an unknown model
  EXPECT_EQ(conn.Request("POST", "/v2/models/no-such-model/infer", kBody).status, 404);
  EXPECT_EQ(conn.Request("POST", "/v2/models/echo/infer", kWrongType).status, 400);
  // node-b refuses it; node-a passes node-b's answer on.
  EXPECT_EQ(conn.Request("POST", "/v2/models/identity/infer", kWrongType).status, 400);

  const HttpResult scrape_a = HttpRequestOnce(a_->port(), "GET", "/metrics");
  ASSERT_EQ(scrape_a.status, 200);
  EXPECT_EQ(scrape_a.header("content-type"), "text/plain; version=0.0.4; charset=utf-8");
  const std::string a = scrape_a.body;
  const std::string b = Scrape(b_->port());
  for (const auto& [node, text] : {std::pair{"node-a", a}, std::pair{"node-b", b}}) {
    const PromtoolResult check = CheckMetrics(text);
    ASSERT_TRUE(check.ran) << check.output;
    EXPECT_EQ(check.exit_code, 0) << node << ": " << check.output << "\n" << text;
    EXPECT_EQ(check.output, "") << node << "\n" << text;
  }

  // node-a: what its clients sent, by where it was served.
  EXPECT_EQ(Sample(a, Requests("echo", "local", "success")), kLocal) << a;
  EXPECT_EQ(Sample(a, Requests("identity", "offloaded", "success")), kForwarded) << a;
  EXPECT_EQ(Sample(a, Requests("identity", "offloaded", "client_error")), 1) << a;
  // A model nobody serves has no series of its own.
  EXPECT_EQ(Sample(a, Requests("_unknown", "local", "client_error")), 1) << a;
  EXPECT_TRUE(std::isnan(Sample(a, Requests("no-such-model", "local", "client_error")))) << a;
  EXPECT_EQ(Sample(a, Requests("echo", "local", "client_error")), 1) << a;
  EXPECT_TRUE(std::isnan(Sample(a, Requests("identity", "forwarded_in", "success")))) << a;
  EXPECT_EQ(Sample(a,
                   "hivemesh_inference_request_duration_seconds_count{model=\"echo\","
                   "route=\"local\"}"),
            kLocal + 1);
  EXPECT_EQ(Sample(a,
                   "hivemesh_inference_request_duration_seconds_bucket{model=\"identity\","
                   "route=\"offloaded\",le=\"+Inf\"}"),
            kForwarded + 1);
  EXPECT_GT(Sample(a,
                   "hivemesh_inference_request_duration_seconds_sum{model=\"identity\","
                   "route=\"offloaded\"}"),
            0);
  // Routing and forwarding, from the forwarder's own counters.
  EXPECT_EQ(Sample(a, "hivemesh_routing_decisions_total{decision=\"local\"}"), kLocal + 1);
  EXPECT_EQ(Sample(a, "hivemesh_routing_decisions_total{decision=\"forwarded\"}"), kForwarded + 1);
  EXPECT_EQ(Sample(a, "hivemesh_routing_decisions_total{decision=\"rejected\"}"), 1);
  EXPECT_EQ(Sample(a, "hivemesh_forward_attempts_total{peer=\"node-b\"}"), kForwarded + 1);
  EXPECT_EQ(Sample(a, "hivemesh_forward_failures_total{peer=\"node-b\"}"), 0);
  EXPECT_EQ(Sample(a, "hivemesh_forward_retries_total"), 0);
  EXPECT_EQ(Sample(a, "hivemesh_peer_ejected{peer=\"node-b\"}"), 0);
  // The model: one execution per computed request (batches of 1), nothing queued or running.
  EXPECT_EQ(Sample(a, "hivemesh_model_batch_size_count{model=\"echo\",version=\"1\"}"), kLocal);
  EXPECT_EQ(Sample(a, "hivemesh_model_batch_size_bucket{model=\"echo\",version=\"1\",le=\"1\"}"),
            kLocal);
  EXPECT_EQ(Sample(a, "hivemesh_model_batch_size_sum{model=\"echo\",version=\"1\"}"), kLocal);
  EXPECT_EQ(Sample(a, "hivemesh_model_queue_depth{model=\"echo\",version=\"1\"}"), 0);
  EXPECT_EQ(Sample(a, "hivemesh_model_in_flight{model=\"echo\",version=\"1\"}"), 0);
  EXPECT_EQ(Sample(a, "hivemesh_model_instances{model=\"echo\",version=\"1\"}"), 1);
  // The mesh and the process.
  EXPECT_EQ(Sample(a, "hivemesh_members{state=\"alive\"}"), 2) << a;
  EXPECT_EQ(Sample(a, "hivemesh_members{state=\"dead\"}"), 0);
  EXPECT_EQ(Sample(a, "hivemesh_gossip_packets_dropped_total{reason=\"unauthenticated\"}"), 0);
  EXPECT_GT(Sample(a, "hivemesh_gossip_bytes_sent_total{transport=\"tcp\"}"), 0);  // the join
  EXPECT_GT(Sample(a, "hivemesh_gossip_bytes_received_total{transport=\"tcp\"}"), 0);
  EXPECT_THAT(a, HasSubstr("hivemesh_build_info{version=\""));
  EXPECT_THAT(a, HasSubstr("\",node=\"node-a\"} 1\n"));
  EXPECT_GT(Sample(a, "process_start_time_seconds"), 1.7e9);
  EXPECT_GT(Sample(a, "process_resident_memory_bytes"), 0);

  // node-b: the same forwarded requests, received from a peer.
  EXPECT_EQ(Sample(b, Requests("identity", "forwarded_in", "success")), kForwarded) << b;
  EXPECT_EQ(Sample(b, Requests("identity", "forwarded_in", "client_error")), 1) << b;
  EXPECT_TRUE(std::isnan(Sample(b, Requests("identity", "local", "success")))) << b;
  EXPECT_EQ(Sample(b, "hivemesh_model_batch_size_count{model=\"identity\",version=\"1\"}"),
            kForwarded);
  EXPECT_EQ(Sample(b, "hivemesh_members{state=\"alive\"}"), 2) << b;

  // Gossip UDP flows both ways once probes run.
  EXPECT_TRUE(WaitFor(
      [&] {
        const std::string now = Scrape(a_->port());
        return Sample(now, "hivemesh_gossip_packets_sent_total") > 0 &&
               Sample(now, "hivemesh_gossip_packets_received_total") > 0 &&
               Sample(now, "hivemesh_gossip_bytes_received_total{transport=\"udp\"}") > 0;
      },
      std::chrono::seconds(10)))
      << Scrape(a_->port());
}

TEST_F(MetricsTest, OnlyGetIsAllowed) {
  HttpResult r = HttpRequestOnce(a_->port(), "POST", "/metrics", "");
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.header("allow"), "GET");
  // The query string does not matter.
  EXPECT_EQ(HttpRequestOnce(a_->port(), "GET", "/metrics?x=1").status, 200);
}

}  // namespace
}  // namespace hivemesh::test
