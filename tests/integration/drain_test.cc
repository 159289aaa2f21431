// SIGTERM under load: the node stops accepting, answers every request it accepted (queued ones
// included), and exits 0. No accepted request is lost.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <mutex>
#include <thread>

#include "support/agent_process.h"
#include "support/http_client.h"

namespace hivemesh::test {
namespace {

using ::testing::HasSubstr;

TEST(DrainTest, SigtermUnderLoadAnswersEveryAcceptedRequestThenExitsZero) {
  TempDir repo;
  repo.Write("work/config.yaml", R"(backend: identity
instances: 1
queue_limit: 100
inputs: [{name: INPUT0, datatype: FP32, shape: [-1]}]
outputs: [{name: OUTPUT0, datatype: FP32, shape: [-1]}]
options: {delay_us: 40000}
)");
  repo.Write("work/1/.keep", "");
  AgentProcess agent({"--model-repository", repo.path(), "--node-name", "drainer"});
  ASSERT_TRUE(agent.ok()) << agent.log();

  constexpr int kClients = 8;
  std::atomic<int> ok{0}, refused{0}, lost{0}, wrong{0}, sent{0};
  std::atomic<bool> terminating{false};
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      HttpConnection conn(agent.port(), std::chrono::seconds(30));
      for (int i = 0; conn.connected(); ++i) {
        const std::string id = std::to_string(c) + "-" + std::to_string(i);
        const std::string body =
            R"({"id":")" + id +
            R"(","inputs":[{"name":"INPUT0","shape":[1],"datatype":"FP32","data":[7]}]})";
        sent++;
        HttpResult r = conn.Request("POST", "/v2/models/work/infer", body);
        if (r.status == 200) {
          ok++;
          if (r.body.find(R"("id":")" + id + "\"") == std::string::npos) wrong++;
        } else if (r.status == 503) {
          refused++;  // explicit answer: the node is draining
          EXPECT_THAT(r.body, HasSubstr("shutting down"));
        } else {
          lost++;  // sent on an open connection and never answered
        }
        if (r.header("connection") == "close" || r.status != 200) break;
        if (terminating && i > 1000) break;
      }
    });
  }
  // Let a queue build up (8 clients, one 40 ms worker), then ask the node to stop.
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  terminating = true;
  const int exit_code = agent.Terminate(std::chrono::seconds(30));
  for (auto& t : clients) t.join();

  EXPECT_EQ(exit_code, 0) << agent.log();
  EXPECT_EQ(lost.load(), 0) << "requests sent on open connections got no answer";
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_GT(ok.load(), kClients) << "work was done before and during the drain";
  EXPECT_EQ(ok + refused + lost, sent.load());
  EXPECT_THAT(agent.log(), HasSubstr("drained; stopped"));
  // New connections are refused once the node has stopped.
  HttpConnection after(agent.port());
  EXPECT_FALSE(after.connected() && after.Request("GET", "/v2/health/live").status == 200);
}

}  // namespace
}  // namespace hivemesh::test
