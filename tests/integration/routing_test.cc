// Mesh routing between real agents on loopback: a model hosted only on B, called through A.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "support/agent_process.h"
#include "support/http_client.h"

namespace hivemesh::test {
namespace {

using ::testing::HasSubstr;

std::string GossipAddress(int port) {
  const std::string body = HttpRequestOnce(port, "GET", "/v1/mesh/stats").body;
  const size_t at = body.find("\"address\":\"");
  if (at == std::string::npos) return "";
  const size_t start = at + 11;
  return body.substr(start, body.find('"', start) - start);
}

class RoutingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_.Write("empty/.keep", "");
    dir_.Write("only-b/identity/config.yaml",
               "backend: identity\ninputs: [{name: INPUT0, datatype: FP32, shape: [-1]}]\n"
               "outputs: [{name: OUTPUT0, datatype: FP32, shape: [-1]}]\n");
    dir_.Write("only-b/identity/1/.keep", "");
    b_ = std::make_unique<AgentProcess>(std::vector<std::string>{
        "--node-name", "node-b", "--model-repository", dir_.path() + "/only-b"});
    ASSERT_TRUE(b_->ok()) << b_->log();
    a_ = std::make_unique<AgentProcess>(
        std::vector<std::string>{"--node-name", "node-a", "--model-repository",
                                 dir_.path() + "/empty", "--join", GossipAddress(b_->port())});
    ASSERT_TRUE(a_->ok()) << a_->log();
    // Wait until A knows B and its models.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      if (HttpRequestOnce(a_->port(), "GET", "/v1/mesh/members").body.find("\"identity\"") !=
          std::string::npos) {
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    FAIL() << "node-a never learnt node-b's models";
  }

  int ExecutionsOnB() {
    const std::string s = HttpRequestOnce(b_->port(), "GET", "/v2/models/identity/stats").body;
    return std::stoi(s.substr(s.find("\"execution_count\":") + 18));
  }

  TempDir dir_;
  std::unique_ptr<AgentProcess> b_, a_;
};

TEST_F(RoutingTest, ModelHostedOnlyOnBIsServedThroughAAndSaysSo) {
  const std::string body =
      R"({"id":"via-a","inputs":[{"name":"INPUT0","shape":[3],"datatype":"FP32","data":[1,2,3]}]})";
  HttpResult r = HttpRequestOnce(a_->port(), "POST", "/v2/models/identity/infer", body);
  ASSERT_EQ(r.status, 200) << r.body << "\n" << a_->log();
  EXPECT_EQ(r.header("hivemesh-served-by"), "node-b");
  EXPECT_THAT(r.body, HasSubstr(R"("id":"via-a","parameters":{"served_by":"node-b"})"));
  EXPECT_THAT(r.body, HasSubstr(R"("data":[1,2,3])"));
  // Binary in and out through the hop.
  const std::string json =
      R"({"inputs":[{"name":"INPUT0","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":8}}],)"
      R"("outputs":[{"name":"OUTPUT0","parameters":{"binary_data":true}}]})";
  const float values[2] = {4.5f, -1.0f};
  const std::string raw(reinterpret_cast<const char*>(values), 8);
  HttpResult bin =
      HttpRequestOnce(a_->port(), "POST", "/v2/models/identity/infer", json + raw,
                      {{"Inference-Header-Content-Length", std::to_string(json.size())}});
  ASSERT_EQ(bin.status, 200) << bin.body;
  const size_t hlen = std::stoul(bin.header("inference-header-content-length"));
  EXPECT_EQ(bin.body.substr(hlen), raw);
  // Many requests reuse pooled connections and all succeed.
  HttpConnection conn(a_->port());
  for (int i = 0; i < 50; ++i)
    ASSERT_EQ(conn.Request("POST", "/v2/models/identity/infer", body).status, 200);
}

TEST_F(RoutingTest, UnknownModelIs404AtOnceWithoutForwarding) {
  const int before = ExecutionsOnB();
  const auto start = std::chrono::steady_clock::now();
  HttpResult r =
      HttpRequestOnce(a_->port(), "POST", "/v2/models/nowhere/infer",
                      R"({"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}]})");
  EXPECT_EQ(r.status, 404);
  EXPECT_THAT(r.body, HasSubstr("not served by this node or any node of the mesh"));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(200));
  EXPECT_EQ(ExecutionsOnB(), before);
  EXPECT_EQ(b_->log().find("nowhere"), std::string::npos) << "nothing reached node-b";
}

TEST_F(RoutingTest, ForwardedRequestsFromNonMembersAreRefused) {
  HttpResult r =
      HttpRequestOnce(b_->port(), "POST", "/v2/models/identity/infer",
                      R"({"inputs":[{"name":"INPUT0","shape":[1],"datatype":"FP32","data":[1]}]})",
                      {{"Hivemesh-Hops", "1"}, {"Hivemesh-Origin", "stranger"}});
  EXPECT_EQ(r.status, 403);
  EXPECT_THAT(r.body, HasSubstr("'stranger' is not one"));
  HttpResult ok =
      HttpRequestOnce(b_->port(), "POST", "/v2/models/identity/infer",
                      R"({"inputs":[{"name":"INPUT0","shape":[1],"datatype":"FP32","data":[1]}]})",
                      {{"Hivemesh-Hops", "1"}, {"Hivemesh-Origin", "node-a"}});
  EXPECT_EQ(ok.status, 200) << "a member's forwarded request is served";
}

}  // namespace
}  // namespace hivemesh::test
