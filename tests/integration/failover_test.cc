// Failures under continuous load through node A, with the model on B and C: kill -9 of B loses
// no request and B gets nothing new after its first failure; B restarted gets traffic again; B
// draining on SIGTERM is told to the mesh, finishes its work and leaves, and no request fails.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "support/agent_process.h"
#include "support/http_client.h"
#include "support/mesh_util.h"

namespace hivemesh::test {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr char kModel[] = R"(backend: identity
instances: 2
inputs: [{name: INPUT0, datatype: FP32, shape: [-1]}]
outputs: [{name: OUTPUT0, datatype: FP32, shape: [-1]}]
options: {delay_us: 3000}
)";
constexpr char kBody[] =
    R"({"inputs":[{"name":"INPUT0","shape":[4],"datatype":"FP32","data":[1,2,3,4]}]})";
constexpr int kClients = 4;

class FailoverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_.Write("empty/.keep", "");
    dir_.Write("repo/work/config.yaml", kModel);
    dir_.Write("repo/work/1/.keep", "");
    c_ = Start("node-c", "repo", "");
    ASSERT_TRUE(c_->ok()) << c_->log();
    seed_ = GossipAddress(c_->port());
    // B is killed and restarted on the same gossip address: one no other process can take.
    b_gossip_ = "127.0.0.1:" + std::to_string(RestartablePort());
    b_ = Start("node-b", "repo", seed_, {"--gossip-address", b_gossip_});
    a_ = Start("node-a", "empty", seed_);
    ASSERT_TRUE(b_->ok() && a_->ok()) << b_->log() << a_->log();
    ASSERT_TRUE(WaitFor([&] { return PeersHosting(a_->port(), "work") == 2; }, seconds(10)));
  }

  std::unique_ptr<AgentProcess> Start(const std::string& name, const std::string& repo,
                                      const std::string& join,
                                      std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"--node-name", name, "--model-repository",
                                     dir_.path() + "/" + repo};
    if (!join.empty()) args.insert(args.end(), {"--join", join});
    args.insert(args.end(), extra.begin(), extra.end());
    return std::make_unique<AgentProcess>(args);
  }

  // Waits until the load has been served by `node` at least `n` more times than `from`.
  bool ServedBy(const LoadGenerator& load, const std::string& node, long n, long from = 0) {
    return WaitFor(
        [&] {
          LoadGenerator::Result r = load.Snapshot();
          return r.served_by[node] >= from + n;
        },
        seconds(20));
  }

  TempDir dir_;
  std::string seed_;
  std::string b_gossip_;  // B's gossip address, kept across its restart
  std::unique_ptr<AgentProcess> c_, b_, a_;
};

// (c) and (d).
TEST_F(FailoverTest, KillNineLosesNoRequestAndTheRestartedNodeGetsTrafficAgain) {
  LoadGenerator load(a_->port(), "/v2/models/work/infer", kBody, kClients);
  ASSERT_TRUE(ServedBy(load, "node-b", 20) && ServedBy(load, "node-c", 20));

  b_->Kill();
  // Requests in flight to B fail over to C; the first failure ejects B at once.
  ASSERT_TRUE(
      WaitFor([&] { return RouteCounter(a_->port(), "failures", "node-b") > 0; }, seconds(5)));
  std::this_thread::sleep_for(milliseconds(200));
  const long sent_after_failure = RouteCounter(a_->port(), "sent", "node-b");
  const long c_before = load.Snapshot().served_by["node-c"];
  ASSERT_TRUE(ServedBy(load, "node-c", 200, c_before));
  EXPECT_EQ(RouteCounter(a_->port(), "sent", "node-b"), sent_after_failure)
      << "the dead node receives no new requests";
  EXPECT_LE(RouteCounter(a_->port(), "failures", "node-b"), kClients)
      << "only the requests in flight when it died failed there (and were retried)";
  EXPECT_EQ(RouteCounter(a_->port(), "ejected", "node-b"), 1);
  EXPECT_TRUE(load.Snapshot().by_status.empty()) << load.Snapshot().Describe();

  // (d) Once the mesh has seen it dead, B restarts (same name and gossip address) and gets
  // traffic again, without waiting for its ejection to end.
  ASSERT_TRUE(WaitFor([&] { return PeersHosting(a_->port(), "work") == 1; }, seconds(15)));
  b_ = Start("node-b", "repo", seed_, {"--gossip-address", b_gossip_});
  ASSERT_TRUE(b_->ok()) << b_->log();
  const long b_before = load.Snapshot().served_by["node-b"];
  EXPECT_TRUE(ServedBy(load, "node-b", 50, b_before)) << a_->log();
  LoadGenerator::Result r = load.Stop();
  EXPECT_TRUE(r.by_status.empty()) << r.Describe();
  EXPECT_GT(r.ok, 500);
}

// Draining: B tells the mesh, A stops sending it work, B finishes and exits 0; nothing fails.
TEST_F(FailoverTest, DrainingNodeIsToldToTheMeshAndNoRequestFails) {
  LoadGenerator load(a_->port(), "/v2/models/work/infer", kBody, kClients);
  ASSERT_TRUE(ServedBy(load, "node-b", 20) && ServedBy(load, "node-c", 20));
  std::thread stop([&] { EXPECT_EQ(b_->Terminate(), 0) << b_->log(); });
  // A learns B is draining before B closes its listener.
  EXPECT_TRUE(WaitFor([&] { return PeersHosting(a_->port(), "work") == 1; }, seconds(5)));
  stop.join();
  EXPECT_THAT(b_->log(), ::testing::HasSubstr("draining"));
  const long sent_to_b = RouteCounter(a_->port(), "sent", "node-b");
  const long c_before = load.Snapshot().served_by["node-c"];
  ASSERT_TRUE(ServedBy(load, "node-c", 100, c_before));
  EXPECT_EQ(RouteCounter(a_->port(), "sent", "node-b"), sent_to_b) << "nothing goes to B after";
  LoadGenerator::Result r = load.Stop();
  EXPECT_TRUE(r.by_status.empty()) << r.Describe();
}

}  // namespace
}  // namespace hivemesh::test
