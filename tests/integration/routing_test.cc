// Mesh routing between real agents on loopback: a model hosted only on B, called through A; an
// overloaded node offloading to idle peers; data policies (with a recording proxy in front of a
// peer, so that what reaches it is seen byte for byte); deadlines across a hop.
//
// The agents run on real time, on a machine that may be busy: the tests assert outcomes (every
// request answered, who served it, what was refused and why), never throughput or latency, and
// wait for conditions with generous deadlines instead of for fixed times.
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "codec/mesh_tensors.h"
#include "support/agent_process.h"
#include "support/http_client.h"
#include "support/mesh_util.h"

namespace hivemesh::test {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// An identity model that takes `delay_ms` per request on one worker.
std::string SlowIdentity(int delay_ms, int queue_limit = 64, const std::string& policy = "mesh") {
  return "backend: identity\ninstances: 1\nqueue_limit: " + std::to_string(queue_limit) +
         "\ndataPolicy: " + policy +
         "\ninputs: [{name: INPUT0, datatype: FP32, shape: [-1]}]\n"
         "outputs: [{name: OUTPUT0, datatype: FP32, shape: [-1]}]\n"
         "options: {delay_us: " +
         std::to_string(delay_ms * 1000) + "}\n";
}

std::string InferBody(const std::string& data) {
  return R"({"inputs":[{"name":"INPUT0","shape":[)" +
         std::to_string(1 + std::count(data.begin(), data.end(), ',')) +
         R"(],"datatype":"FP32","data":[)" + data + "]}]}";
}

// A number from the model's statistics (/v2/models/<model>/stats), e.g. "execution_count";
// -1 if absent.
long ModelStat(int port, const std::string& model, const std::string& key) {
  const std::string s = HttpRequestOnce(port, "GET", "/v2/models/" + model + "/stats").body;
  const std::string field = "\"" + key + "\":";
  const size_t at = s.find(field);
  return at == std::string::npos ? -1 : std::stol(s.substr(at + field.size()));
}

long Executions(int port, const std::string& model) {
  return ModelStat(port, model, "execution_count");
}

long ExpiredInQueue(int port, const std::string& model) {
  return ModelStat(port, model, "expired_in_queue");
}

class RoutingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_.Write("empty/.keep", "");
    dir_.Write("only-b/identity/config.yaml", IdentityModelConfig());
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
  // Many requests all succeed, and they all went over mesh links (one per I/O loop of A at
  // most), never over plain connections.
  HttpConnection conn(a_->port());
  for (int i = 0; i < 50; ++i)
    ASSERT_EQ(conn.Request("POST", "/v2/models/identity/infer", body).status, 200);
  const std::string routes = HttpRequestOnce(a_->port(), "GET", "/v1/mesh/routes").body;
  EXPECT_THAT(routes, HasSubstr(R"("peer_links":)")) << routes;
  EXPECT_THAT(routes, Not(HasSubstr(R"("peer_links":0)"))) << routes;
  const std::string metrics = HttpRequestOnce(a_->port(), "GET", "/metrics").body;
  EXPECT_THAT(metrics, HasSubstr(R"(hivemesh_peer_connections_open{kind="http"} 0)")) << metrics;
  EXPECT_THAT(metrics, Not(HasSubstr(R"(hivemesh_peer_connections_open{kind="link"} 0)")));
}

TEST_F(RoutingTest, ARequestInTheMeshTensorFormIsAnsweredInThatForm) {
  // What node-a sends node-b for a forwarded request, sent to node-b directly.
  InferRequest req;
  req.id = "mesh-1";
  const float values[3] = {1.5f, -2.0f, 8.0f};
  req.inputs.push_back(Tensor::Owned("INPUT0", DataType::kFp32, {3},
                                     std::string(reinterpret_cast<const char*>(values), 12)));
  MeshTensorsMessage m = EncodeMeshRequest(req);
  std::string body = m.head;
  for (const Tensor& t : m.tensors) body.append(t.data());
  const std::vector<std::pair<std::string, std::string>> mesh_form = {
      {"Content-Type", std::string(kMeshTensorsType)}};
  // node-b hosts the model and answers itself. node-a does not: it sends the request on to
  // node-b and answers in the form too (as a node that passes a peer's request on to a third
  // node does).
  for (int port : {b_->port(), a_->port()}) {
    SCOPED_TRACE(port == b_->port() ? "node-b" : "node-a");
    HttpResult r = HttpRequestOnce(port, "POST", "/v2/models/identity/infer", body, mesh_form);
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.header("content-type"), kMeshTensorsType);
    absl::StatusOr<InferResponse> answer =
        DecodeMeshAnswer(std::make_shared<const std::string>(r.body));
    ASSERT_TRUE(answer.ok()) << answer.status();
    EXPECT_EQ(answer->served_by, "node-b");
    EXPECT_EQ(answer->id, "mesh-1");
    EXPECT_EQ(answer->model_name, "identity");
    ASSERT_EQ(answer->outputs.size(), 1u);
    EXPECT_EQ(answer->outputs[0].name(), "OUTPUT0");
    EXPECT_EQ(answer->outputs[0].data(), req.inputs[0].data());
  }
  // A body that is not in the form is refused saying why; node-b goes on serving.
  HttpResult bad = HttpRequestOnce(b_->port(), "POST", "/v2/models/identity/infer",
                                   R"({"inputs":[]})", mesh_form);
  EXPECT_EQ(bad.status, 400);
  EXPECT_THAT(bad.body, HasSubstr("mesh tensor form: the body is not in this form"));
  EXPECT_EQ(
      HttpRequestOnce(b_->port(), "POST", "/v2/models/identity/infer", body, mesh_form).status,
      200);
}

TEST_F(RoutingTest, RawBodyForAModelHostedElsewhereGoesOnAsItCame) {
  // Inference-Header-Content-Length: 0: node-a cannot interpret the body (it has no config for
  // the model), node-b can.
  const float values[3] = {1.5f, -2.0f, 8.25f};
  const std::string raw(reinterpret_cast<const char*>(values), sizeof values);
  HttpResult r = HttpRequestOnce(a_->port(), "POST", "/v2/models/identity/infer", raw,
                                 {{"Inference-Header-Content-Length", "0"}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.header("hivemesh-served-by"), "node-b");
  EXPECT_THAT(r.body, HasSubstr(R"("shape":[3])"));
  EXPECT_THAT(r.body, HasSubstr(R"("data":[1.5,-2,8.25])"));
  // node-b's own error for a body it cannot take comes back as node-b's answer.
  HttpResult bad = HttpRequestOnce(a_->port(), "POST", "/v2/models/identity/infer", "abc",
                                   {{"Inference-Header-Content-Length", "0"}});
  EXPECT_EQ(bad.status, 400) << bad.body;
  EXPECT_THAT(bad.body, HasSubstr("node node-b"));
}

TEST(FailedModelTest, AModelThatFailedToLoadHereIsServedByAPeer) {
  TempDir dir;
  const std::string good =
      "backend: identity\ninputs: [{name: INPUT0, datatype: FP32, shape: [-1]}]\n"
      "outputs: [{name: OUTPUT0, datatype: FP32, shape: [-1]}]\n";
  dir.Write("good/m/config.yaml", good);
  dir.Write("good/m/1/.keep", "");
  dir.Write("broken/m/config.yaml", good + "options: {delay_us: soon}\n");
  dir.Write("broken/m/1/.keep", "");
  AgentProcess a({"--node-name", "node-a", "--model-repository", dir.path() + "/broken"});
  ASSERT_TRUE(a.ok()) << a.log();
  const std::string body = InferBody("4,5");
  HttpResult alone = HttpRequestOnce(a.port(), "POST", "/v2/models/m/infer", body);
  EXPECT_EQ(alone.status, 503) << alone.body;
  EXPECT_THAT(alone.body, HasSubstr("failed to load")) << "alone, the local reason is the answer";
  AgentProcess b({"--node-name", "node-b", "--model-repository", dir.path() + "/good", "--join",
                  GossipAddress(a.port())});
  ASSERT_TRUE(b.ok()) << b.log();
  ASSERT_TRUE(WaitFor([&] { return PeersHosting(a.port(), "m") == 1; }, std::chrono::seconds(10)));
  // node-a's routing table is refreshed from gossip at most every 100 ms.
  HttpResult r;
  WaitFor(
      [&] {
        r = HttpRequestOnce(a.port(), "POST", "/v2/models/m/infer", body);
        return r.status == 200;
      },
      std::chrono::seconds(2));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.header("hivemesh-served-by"), "node-b");
}

TEST(JoinTest, ANewNodesFirstRequestsWaitForThePeerToHearOfIt) {
  // node-c is the seed, node-b (the only node with the model) joined it. node-a joins node-c and
  // learns of node-b from it at once; node-b hears of node-a only through the gossip, a little
  // later, and refuses node-a's requests (403) until then. They are asked again meanwhile.
  TempDir dir;
  dir.Write("repo/m/config.yaml", SlowIdentity(0));
  dir.Write("repo/m/1/.keep", "");
  dir.Write("empty/.keep", "");
  AgentProcess c({"--node-name", "node-c", "--model-repository", dir.path() + "/empty"});
  ASSERT_TRUE(c.ok()) << c.log();
  AgentProcess b({"--node-name", "node-b", "--model-repository", dir.path() + "/repo", "--join",
                  GossipAddress(c.port())});
  ASSERT_TRUE(b.ok()) << b.log();
  ASSERT_TRUE(WaitFor([&] { return PeersHosting(c.port(), "m") == 1; }, std::chrono::seconds(10)));
  AgentProcess a({"--node-name", "node-a", "--model-repository", dir.path() + "/empty", "--join",
                  GossipAddress(c.port())});
  ASSERT_TRUE(a.ok()) << a.log();
  // Until node-a's routing table has been refreshed from gossip it answers 404; from its first
  // success on, every request is served by node-b (none fails with node-b's 403).
  HttpConnection conn(a.port());
  int served = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (served < 20 && std::chrono::steady_clock::now() < deadline) {
    HttpResult r = conn.Request("POST", "/v2/models/m/infer", InferBody("1,2"));
    if ((r.status == 404 || r.status == 503) && served == 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      continue;
    }
    ASSERT_EQ(r.status, 200) << "request " << served << ": " << r.body;
    EXPECT_EQ(r.header("hivemesh-served-by"), "node-b");
    ++served;
  }
  EXPECT_EQ(served, 20) << "node-a never routed the model to node-b";
}

TEST_F(RoutingTest, UnknownModelIs404AtOnceWithoutForwarding) {
  const int before = ExecutionsOnB();
  long forwarded = 0, rejected = 0;
  HttpResult r;
  // While the mesh's view settles (seconds after a member joined) "no host" may be transient:
  // 503 with Retry-After. Once settled, a model no member announced is 404.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  do {
    forwarded = RouteCounter(a_->port(), "forwarded");
    rejected = RouteCounter(a_->port(), "rejected");
    r = HttpRequestOnce(a_->port(), "POST", "/v2/models/nowhere/infer",
                        R"({"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}]})");
    if (r.status != 503) break;
    EXPECT_EQ(r.header("retry-after"), "1");
    EXPECT_THAT(r.body, HasSubstr("settling"));
  } while (std::chrono::steady_clock::now() < deadline);
  EXPECT_EQ(r.status, 404);
  EXPECT_THAT(r.body, HasSubstr("not served by this node or any node of the mesh"));
  // Answered by node-a's decision alone: rejected there, never sent to a peer.
  EXPECT_EQ(RouteCounter(a_->port(), "rejected"), rejected + 1);
  EXPECT_EQ(RouteCounter(a_->port(), "forwarded"), forwarded);
  EXPECT_EQ(ExecutionsOnB(), before);
  EXPECT_EQ(b_->log().find("nowhere"), std::string::npos) << "nothing reached node-b";
}

TEST_F(RoutingTest, ForwardedRequestsWithoutAMembersCredentialAreRefused) {
  // A stranger, and a header naming a real member: the name alone proves nothing
  // (tests/security/test_forged_origin.py tries credentials of every wrong kind).
  for (const char* origin : {"stranger", "node-a"}) {
    HttpResult r = HttpRequestOnce(
        b_->port(), "POST", "/v2/models/identity/infer",
        R"({"inputs":[{"name":"INPUT0","shape":[1],"datatype":"FP32","data":[1]}]})",
        {{"Hivemesh-Hops", "1"}, {"Hivemesh-Origin", origin}});
    EXPECT_EQ(r.status, 403) << origin;
    EXPECT_THAT(r.body, HasSubstr("no Hivemesh-Credential")) << origin;
  }
  // node-a's own forwarded requests (with its credentials) are served.
  HttpResult ok =
      HttpRequestOnce(a_->port(), "POST", "/v2/models/identity/infer",
                      R"({"inputs":[{"name":"INPUT0","shape":[1],"datatype":"FP32","data":[1]}]})");
  EXPECT_EQ(ok.status, 200) << ok.body;
  EXPECT_THAT(ok.body, HasSubstr(R"("served_by":"node-b")"));
}

// (b) A node under a burst above its capacity serves what it can and offloads the rest to idle
// peers that host the model; alone and idle, it serves locally.
TEST(OffloadTest, BurstAboveCapacityIsSharedWithIdlePeers) {
  TempDir dir;
  dir.Write("repo/slow/config.yaml", SlowIdentity(40));
  dir.Write("repo/slow/1/.keep", "");
  const std::string repo = dir.path() + "/repo";
  AgentProcess b({"--node-name", "node-b", "--model-repository", repo});
  ASSERT_TRUE(b.ok()) << b.log();
  AgentProcess c(
      {"--node-name", "node-c", "--model-repository", repo, "--join", GossipAddress(b.port())});
  AgentProcess a(
      {"--node-name", "node-a", "--model-repository", repo, "--join", GossipAddress(b.port())});
  ASSERT_TRUE(c.ok() && a.ok()) << c.log() << a.log();
  ASSERT_TRUE(
      WaitFor([&] { return PeersHosting(a.port(), "slow") == 2; }, std::chrono::seconds(10)));

  // Idle: local first.
  for (int i = 0; i < 3; ++i) {
    HttpResult r = HttpRequestOnce(a.port(), "POST", "/v2/models/slow/infer", InferBody("1"));
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.header("hivemesh-served-by"), "node-a");
  }
  // Six clients at once against one 40 ms worker: more than node-a can do alone. The load runs
  // until each node has served part of it (however slow the machine), then every request must
  // have been answered, some here and some by each idle peer.
  LoadGenerator load(a.port(), "/v2/models/slow/infer", InferBody("1,2"), 6);
  WaitFor(
      [&] {
        LoadGenerator::Result s = load.Snapshot();
        return !s.by_status.empty() || (s.served_by["node-a"] >= 10 && s.served_by["node-b"] >= 5 &&
                                        s.served_by["node-c"] >= 5);
      },
      std::chrono::seconds(120));
  LoadGenerator::Result r = load.Stop();
  EXPECT_TRUE(r.by_status.empty()) << r.Describe();
  SCOPED_TRACE(r.Describe());
  EXPECT_GE(r.served_by["node-a"], 10) << "node-a keeps serving what it can";
  EXPECT_GE(r.served_by["node-b"], 5) << "part of the burst went to the idle peers";
  EXPECT_GE(r.served_by["node-c"], 5);
  EXPECT_EQ(r.served_by.size(), 3u);
  EXPECT_GT(RouteCounter(a.port(), "forwarded"), 0);
}

// Forwards the bytes between a client and `target`, recording everything sent towards it.
class RecordingProxy {
 public:
  RecordingProxy() {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    ::listen(listen_fd_, 64);
    socklen_t len = sizeof addr;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
  }
  ~RecordingProxy() {
    stop_ = true;
    ::shutdown(listen_fd_, SHUT_RDWR);
    ::close(listen_fd_);
    if (acceptor_.joinable()) acceptor_.join();
    for (std::thread& t : pipes_) t.join();
  }
  int port() const { return port_; }
  void Start(int target_port) {
    target_ = target_port;
    acceptor_ = std::thread([this] { Accept(); });
  }
  std::string recorded() const {
    absl::MutexLock lock(&mu_);
    return recorded_;
  }

 private:
  void Accept() {
    while (!stop_) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      const int client = ::accept(listen_fd_, nullptr, nullptr);
      if (client < 0) continue;
      const int upstream = ::socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      addr.sin_port = htons(static_cast<uint16_t>(target_));
      if (::connect(upstream, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        ::close(client);
        ::close(upstream);
        continue;
      }
      pipes_.emplace_back([this, client, upstream] { Pipe(client, upstream); });
    }
  }
  void Pipe(int client, int upstream) {
    char buf[65536];
    pollfd fds[2] = {{client, POLLIN, 0}, {upstream, POLLIN, 0}};
    while (!stop_) {
      if (::poll(fds, 2, 100) <= 0) continue;
      bool closed = false;
      for (int i = 0; i < 2; ++i) {
        if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        const ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
        if (n <= 0) {
          closed = true;
          break;
        }
        if (i == 0) {
          absl::MutexLock lock(&mu_);
          recorded_.append(buf, static_cast<size_t>(n));
        }
        if (::write(fds[1 - i].fd, buf, static_cast<size_t>(n)) != n) closed = true;
      }
      if (closed) break;
    }
    ::close(client);
    ::close(upstream);
  }

  int listen_fd_ = -1, port_ = 0, target_ = 0;
  std::atomic<bool> stop_{false};
  std::thread acceptor_;
  std::vector<std::thread> pipes_;  // acceptor thread only, until joined
  mutable absl::Mutex mu_;
  std::string recorded_ ABSL_GUARDED_BY(mu_);
};

// The raw FP32 bytes of comma-separated values, as a forwarded (binary) request carries them.
std::string RawFloats(const std::vector<float>& values) {
  return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float));
}

// (e) local-only data never leaves the node that received it, zone data stays in the zone, mesh
// data may go anywhere. Node B is reached only through a recording proxy, so every byte sent to
// it is seen; the mesh-policy model shows that the proxy does see what reaches B.
TEST(DataPolicyTest, NoByteOfALocalOnlyRequestReachesAnotherNode) {
  TempDir dir;
  for (const auto& [model, policy] : std::vector<std::pair<std::string, std::string>>{
           {"secret", "local-only"}, {"zoned", "zone"}, {"shared", "mesh"}}) {
    dir.Write("repo/" + model + "/config.yaml", SlowIdentity(30, 2, policy));
    dir.Write("repo/" + model + "/1/.keep", "");
  }
  const std::string repo = dir.path() + "/repo";
  RecordingProxy proxy;
  AgentProcess b({"--node-name", "node-b", "--model-repository", repo, "--labels", "zone=z2",
                  "--http-advertise-address", "127.0.0.1:" + std::to_string(proxy.port())});
  ASSERT_TRUE(b.ok()) << b.log();
  proxy.Start(b.port());
  AgentProcess c({"--node-name", "node-c", "--model-repository", repo, "--labels", "zone=z1",
                  "--join", GossipAddress(b.port())});
  AgentProcess a({"--node-name", "node-a", "--model-repository", repo, "--labels", "zone=z1",
                  "--join", GossipAddress(b.port())});
  ASSERT_TRUE(c.ok() && a.ok()) << c.log() << a.log();
  ASSERT_TRUE(
      WaitFor([&] { return PeersHosting(a.port(), "shared") == 2; }, std::chrono::seconds(10)));

  const std::string secret = "1111.25,-2222.5,3333.75,-4444.125";
  const std::string zoned = "5555.25,-6666.5,7777.75,-8888.125";
  const std::string shared = "9999.25,-1212.5,3434.75,-5656.125";
  // Six clients against a 30 ms worker with room for two in its queue: node-a alone cannot cope.
  // Each load runs until what it shows has happened (however slow the machine).
  LoadGenerator secret_load(a.port(), "/v2/models/secret/infer", InferBody(secret), 6);
  WaitFor(
      [&] {
        LoadGenerator::Result s = secret_load.Snapshot();
        return s.served_by["node-a"] >= 10 && s.by_status[503] >= 1;
      },
      std::chrono::seconds(120));
  LoadGenerator::Result rs = secret_load.Stop();
  SCOPED_TRACE("local-only: " + rs.Describe());
  EXPECT_EQ(rs.served_by.size(), 1u) << "local-only is served by node-a alone";
  EXPECT_GE(rs.served_by["node-a"], 10);
  ASSERT_GT(rs.by_status[503], 0) << "the overload was real";
  EXPECT_EQ(rs.by_status.size(), 1u);
  EXPECT_THAT(rs.failures.front(), HasSubstr("queue is full"));
  EXPECT_THAT(rs.failures.front(), HasSubstr("data policy (local-only) forbids offload"));

  LoadGenerator zoned_load(a.port(), "/v2/models/zoned/infer", InferBody(zoned), 6);
  WaitFor(
      [&] {
        LoadGenerator::Result s = zoned_load.Snapshot();
        return s.served_by["node-c"] >= 5 && s.ok >= 20;
      },
      std::chrono::seconds(120));
  LoadGenerator::Result rz = zoned_load.Stop();
  SCOPED_TRACE("zone: " + rz.Describe());
  EXPECT_EQ(rz.served_by.count("node-b"), 0u) << "node-b is in another zone";
  EXPECT_GE(rz.served_by["node-c"], 5) << "node-c shares node-a's zone";

  LoadGenerator shared_load(a.port(), "/v2/models/shared/infer", InferBody(shared), 6);
  WaitFor([&] { return shared_load.Snapshot().served_by["node-b"] >= 1; },
          std::chrono::seconds(120));
  LoadGenerator::Result rm = shared_load.Stop();
  SCOPED_TRACE("mesh: " + rm.Describe());
  EXPECT_GT(rm.served_by["node-b"], 0) << "mesh data may go to any zone";

  const std::string seen = proxy.recorded();
  EXPECT_NE(seen.find(RawFloats({9999.25f, -1212.5f, 3434.75f, -5656.125f})), std::string::npos)
      << "the proxy sees the mesh model's data reach node-b";
  EXPECT_EQ(seen.find(RawFloats({1111.25f, -2222.5f, 3333.75f, -4444.125f})), std::string::npos);
  EXPECT_EQ(seen.find("1111.25"), std::string::npos);
  EXPECT_EQ(seen.find("/v2/models/secret"), std::string::npos);
  EXPECT_EQ(seen.find(RawFloats({5555.25f, -6666.5f, 7777.75f, -8888.125f})), std::string::npos);
  EXPECT_EQ(seen.find("/v2/models/zoned"), std::string::npos);
  EXPECT_EQ(Executions(b.port(), "secret"), 0);
  EXPECT_EQ(Executions(b.port(), "zoned"), 0);
}

// (f) Deadlines across a hop: a deadline no node can meet is answered 504 at once; otherwise the
// remaining time travels with the request and every answer arrives by the deadline.
TEST(DeadlineTest, DeadlinesAreKeptAcrossTheHop) {
  TempDir dir;
  dir.Write("empty/.keep", "");
  dir.Write("repo/slow/config.yaml", SlowIdentity(100));
  dir.Write("repo/slow/1/.keep", "");
  AgentProcess b({"--node-name", "node-b", "--model-repository", dir.path() + "/repo"});
  ASSERT_TRUE(b.ok()) << b.log();
  AgentProcess a({"--node-name", "node-a", "--model-repository", dir.path() + "/empty", "--join",
                  GossipAddress(b.port())});
  ASSERT_TRUE(a.ok()) << a.log();
  ASSERT_TRUE(
      WaitFor([&] { return PeersHosting(a.port(), "slow") == 1; }, std::chrono::seconds(10)));
  // One request teaches node-a the model's service time on node-b (carried by the response).
  ASSERT_EQ(HttpRequestOnce(a.port(), "POST", "/v2/models/slow/infer", InferBody("1")).status, 200);

  const long before = Executions(b.port(), "slow");
  const long forwarded_before = RouteCounter(a.port(), "forwarded");
  HttpResult fast = HttpRequestOnce(a.port(), "POST", "/v2/models/slow/infer", InferBody("1"),
                                    {{"Inference-Timeout-Ms", "30"}});
  EXPECT_EQ(fast.status, 504) << fast.body;
  // Answered at once by node-a's decision: nothing was sent to node-b or computed for it.
  EXPECT_THAT(fast.body, HasSubstr("no node can serve this model before the request's deadline"));
  EXPECT_EQ(RouteCounter(a.port(), "forwarded"), forwarded_before) << "nothing was sent";
  EXPECT_EQ(Executions(b.port(), "slow"), before) << "nothing was computed for it";

  // The remaining time travels with the request: node-b, busy with work sent to it directly (at
  // least 200 ms of it still queued when the request is sent), drops the forwarded request when
  // its deadline passes, without computing it. If node-b's load report
  // (gossiped every second) happens to tell node-a of that work first, node-a answers 504 at once
  // itself (the case above) and the request never reaches node-b: wait until node-a sees node-b
  // idle again, and try again.
  auto b_idle_seen_by_a = [&] {
    return HttpRequestOnce(a.port(), "GET", "/v1/mesh/members")
               .body.find(R"("name":"slow","queue_depth":0,"in_flight":0)") != std::string::npos;
  };
  bool forwarded = false;
  for (int attempt = 0; attempt < 5 && !forwarded; ++attempt) {
    ASSERT_TRUE(WaitFor(b_idle_seen_by_a, std::chrono::seconds(5)));
    const long expired_before = ExpiredInQueue(b.port(), "slow");
    const long executed_before = Executions(b.port(), "slow");
    std::vector<std::thread> busy;
    for (const char* v : {"3", "4", "6"}) {
      busy.emplace_back(
          [&, v] { HttpRequestOnce(b.port(), "POST", "/v2/models/slow/infer", InferBody(v)); });
    }
    // Two of the three wait in node-b's queue: 200 ms of work or more ahead of a new request.
    ASSERT_TRUE(WaitFor([&] { return ModelStat(b.port(), "slow", "queue_depth") >= 2; },
                        std::chrono::seconds(10)));
    HttpResult queued = HttpRequestOnce(a.port(), "POST", "/v2/models/slow/infer", InferBody("5"),
                                        {{"Inference-Timeout-Ms", "150"}});
    for (std::thread& t : busy) t.join();
    EXPECT_EQ(queued.status, 504) << queued.body;
    if (queued.body.find("no node can serve this model before the request's deadline") !=
        std::string::npos) {
      continue;  // node-a knew node-b was busy and answered at once
    }
    forwarded = true;
    EXPECT_TRUE(WaitFor([&] { return ExpiredInQueue(b.port(), "slow") == expired_before + 1; },
                        std::chrono::seconds(10)))
        << "node-b knew the deadline and dropped the request";
    EXPECT_EQ(Executions(b.port(), "slow"), executed_before + 3)
        << "node-b computed its own three requests, never the forwarded one";
  }
  EXPECT_TRUE(forwarded) << "node-a answered every attempt itself; the hop was never exercised";

  // Four at once with 250 ms each against one 100 ms worker: some make it, the rest are told
  // their deadline passed; every one gets one of those two answers.
  std::vector<std::thread> clients;
  std::atomic<int> ok{0}, expired{0}, other{0};
  for (int i = 0; i < 4; ++i) {
    clients.emplace_back([&] {
      HttpResult r = HttpRequestOnce(a.port(), "POST", "/v2/models/slow/infer", InferBody("2"),
                                     {{"Inference-Timeout-Ms", "250"}});
      (r.status == 200 ? ok : r.status == 504 ? expired : other)++;
    });
  }
  for (std::thread& t : clients) t.join();
  EXPECT_EQ(other.load(), 0);
  EXPECT_GE(ok.load(), 1);
  EXPECT_GE(expired.load(), 1);
  EXPECT_EQ(ok.load() + expired.load(), 4);
}

}  // namespace
}  // namespace hivemesh::test
