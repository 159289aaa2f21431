// Gossip membership between real `hivemesh agent` processes on loopback UDP/TCP: joining,
// failure detection after kill -9, restart, graceful leave, metadata spreading, and encryption
// keeping nodes with the wrong key out (and a plaintext node refusing to join).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <simdjson.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <thread>

#include "support/agent_process.h"
#include "support/http_client.h"
#include "support/mesh_util.h"

namespace hivemesh::test {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

struct Member {
  std::string state;
  std::string zone;
};

// name -> member, as the agent on `port` sees the mesh. Empty if it cannot be asked.
std::map<std::string, Member> Members(int port) {
  std::map<std::string, Member> out;
  HttpResult r = HttpRequestOnce(port, "GET", "/v1/mesh/members");
  if (r.status != 200) return out;
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(r.body).get(doc) != simdjson::SUCCESS) return out;
  simdjson::dom::array members;
  if (doc["members"].get(members) != simdjson::SUCCESS) return out;
  for (simdjson::dom::element m : members) {
    std::string_view name, state, zone;
    if (m["name"].get(name) || m["state"].get(state)) continue;
    Member x{std::string(state), ""};
    if (m["labels"]["zone"].get(zone) == simdjson::SUCCESS) x.zone = std::string(zone);
    out[std::string(name)] = x;
  }
  return out;
}

uint64_t Dropped(int port, const char* reason) {
  HttpResult r = HttpRequestOnce(port, "GET", "/v1/mesh/stats");
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  uint64_t n = 0;
  if (parser.parse(r.body).get(doc) || doc["dropped"][reason].get(n)) return 0;
  return n;
}

class Mesh {
 public:
  explicit Mesh(TempDir& dir) : dir_(dir) { dir_.Write("repo/.keep", ""); }

  AgentProcess& Start(const std::string& name, std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"--node-name", name, "--model-repository",
                                     dir_.path() + "/repo"};
    if (!seed_.empty()) {
      args.push_back("--join");
      args.push_back(seed_);
    }
    args.insert(args.end(), extra.begin(), extra.end());
    agents_[name] = std::make_unique<AgentProcess>(args);
    AgentProcess& a = *agents_[name];
    if (seed_.empty() && a.ok()) seed_ = GossipAddress(a.port());
    return a;
  }
  AgentProcess& operator[](const std::string& name) { return *agents_.at(name); }
  std::vector<std::string> Names() const {
    std::vector<std::string> out;
    for (const auto& [n, _] : agents_) out.push_back(n);
    return out;
  }
  void Remove(const std::string& name) { agents_.erase(name); }

  // True when every running agent in `observers` sees `node` in `state`.
  bool AllSee(const std::vector<std::string>& observers, const std::string& node,
              const std::string& state) {
    for (const std::string& o : observers) {
      auto m = Members(agents_.at(o)->port());
      auto it = m.find(node);
      if (it == m.end() || it->second.state != state) return false;
    }
    return true;
  }

 private:
  TempDir& dir_;
  std::string seed_;
  std::map<std::string, std::unique_ptr<AgentProcess>> agents_;
};

TEST(MembershipTest, JoinFailRestartLeaveAndMetadataAcrossFiveAgents) {
  TempDir dir;
  dir.Write("n4.yaml", "labels: zone=line-1\n");
  Mesh mesh(dir);
  // n3 is killed and restarted on the same gossip address: one no other process can take.
  const std::string n3_gossip = "127.0.0.1:" + std::to_string(RestartablePort());
  for (const char* n : {"n0", "n1", "n2"}) ASSERT_TRUE(mesh.Start(n).ok()) << n;
  ASSERT_TRUE(mesh.Start("n3", {"--gossip-address", n3_gossip}).ok());
  ASSERT_TRUE(mesh.Start("n4", {"--config", dir.path() + "/n4.yaml"}).ok());
  const std::vector<std::string> all = mesh.Names();

  // All join: every agent sees all five alive.
  ASSERT_TRUE(WaitFor(
      [&] {
        for (const std::string& o : all) {
          auto m = Members(mesh[o].port());
          if (m.size() != 5) return false;
          for (const auto& [_, x] : m) {
            if (x.state != "alive") return false;
          }
        }
        return true;
      },
      seconds(20)))  // generous: ASan builds run beside other tests on two cores
      << "the five agents did not converge";

  // A metadata change (labels reloaded on SIGHUP) reaches every node.
  EXPECT_EQ(Members(mesh["n0"].port())["n4"].zone, "line-1");
  dir.Write("n4.yaml", "labels: zone=line-2\n");
  ::kill(mesh["n4"].pid(), SIGHUP);
  EXPECT_TRUE(WaitFor(
      [&] {
        for (const std::string& o : all) {
          if (Members(mesh[o].port())["n4"].zone != "line-2") return false;
        }
        return true;
      },
      // Gossip spreads it within a second or two; on a loaded machine every broadcast of it
      // can be lost, and then the next push-pull (every 30 s on LAN) carries it.
      seconds(40)))
      << "the label change did not spread";

  // kill -9: every other agent marks it dead.
  mesh["n3"].Kill();
  const std::vector<std::string> others = {"n0", "n1", "n2", "n4"};
  EXPECT_TRUE(WaitFor([&] { return mesh.AllSee(others, "n3", "dead"); }, seconds(40)))
      << "a killed agent was not marked dead by all";

  // It restarts (same name and gossip address) and is alive again everywhere.
  mesh.Remove("n3");
  AgentProcess& n3 = mesh.Start("n3", {"--gossip-address", n3_gossip});
  ASSERT_TRUE(n3.ok()) << n3.log();
  EXPECT_TRUE(WaitFor([&] { return mesh.AllSee(others, "n3", "alive"); }, seconds(40)))
      << "the restarted agent is not alive everywhere";

  // A graceful leave (SIGTERM) is seen as left, not failed.
  EXPECT_EQ(mesh["n1"].Terminate(), 0);
  const std::vector<std::string> rest = {"n0", "n2", "n3", "n4"};
  EXPECT_TRUE(WaitFor([&] { return mesh.AllSee(rest, "n1", "left"); }, seconds(10)))
      << "a leave was not seen as left";
}

TEST(MembershipTest, AgentsWithTheWrongKeyNeverJoin) {
  const std::string key_a = "m+NNHzY+XWuHgrdyG00PMHqNertyz8y0aUTIfUn6+jI=";
  const std::string key_b = "3q2+7wABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhs=";
  TempDir dir;
  Mesh mesh(dir);
  ASSERT_TRUE(mesh.Start("a0", {"--gossip-keys", key_a}).ok());
  ASSERT_TRUE(mesh.Start("a1", {"--gossip-keys", key_a}).ok());
  ASSERT_TRUE(mesh.Start("b0", {"--gossip-keys", key_b}).ok());
  // Plaintext: a0 answers that its mesh requires encryption, and p0 stops (exit code 1).
  ASSERT_TRUE(mesh.Start("p0").ok());
  EXPECT_TRUE(WaitFor(
      [&] {
        return mesh.AllSee({"a0", "a1"}, "a1", "alive") && mesh.AllSee({"a0", "a1"}, "a0", "alive");
      },
      seconds(10)))
      << "agents sharing a key did not join each other";
  std::this_thread::sleep_for(seconds(3));  // several join retries and gossip rounds
  for (const char* o : {"a0", "a1"}) {
    auto m = Members(mesh[o].port());
    EXPECT_EQ(m.count("b0"), 0u) << o << " let in a node with another key";
    EXPECT_EQ(m.count("p0"), 0u) << o << " let in a plaintext node";
  }
  EXPECT_EQ(Members(mesh["b0"].port()).size(), 1u) << "b0 must see only itself";
  EXPECT_TRUE(WaitFor(
      [&] {
        return mesh["p0"].log().find(
                   "encrypts its gossip and this node has no --gossip-keys: "
                   "refusing to join") != std::string::npos;
      },
      seconds(10)))
      << mesh["p0"].log();
  EXPECT_EQ(mesh["p0"].Terminate(), 1) << "a plaintext node kept running in an encrypted mesh";
  EXPECT_GT(Dropped(mesh["a0"].port(), "unauthenticated"), 0u)
      << "the seed counts the packets it refused";
}

}  // namespace
}  // namespace hivemesh::test
