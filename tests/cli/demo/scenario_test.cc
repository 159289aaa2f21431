#include "cli/demo/scenario.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "support/agent_process.h"

namespace hivemesh::demo {
namespace {

using test::SourceDir;
using test::TempDir;

std::string ExampleScenario() { return SourceDir() + "/examples/edge-site/scenario.yaml"; }

// A scenario in a temporary folder, with one node config per name in `nodes`.
class ScenarioFiles {
 public:
  ScenarioFiles(const std::string& scenario, const std::vector<std::string>& nodes) {
    for (const std::string& n : nodes) dir_.Write(n + ".yaml", "labels: zone=z1\nmodels: a,b\n");
    dir_.Write("scenario.yaml", scenario);
  }
  std::string path() const { return dir_.path() + "/scenario.yaml"; }
  absl::StatusOr<Scenario> Load() const { return LoadScenario(path()); }

 private:
  TempDir dir_;
};

std::string Message(const absl::StatusOr<Scenario>& s) { return std::string(s.status().message()); }

TEST(ScenarioTest, LoadsTheShippedEdgeSite) {
  absl::StatusOr<Scenario> s = LoadScenario(ExampleScenario());
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_EQ(s->nodes.size(), 4u);
  EXPECT_EQ(s->nodes[0].name, "cam-1");
  EXPECT_EQ(s->nodes[0].zone(), "line-1");
  EXPECT_EQ(s->nodes[0].models, (std::vector<std::string>{"people-detector", "vibration-anomaly"}));
  EXPECT_EQ(s->Node("machine-1")->zone(), "line-2");
  EXPECT_EQ(s->repository, SourceDir() + "/examples/edge-site/models");
  EXPECT_EQ(s->kill, "cam-2");
  EXPECT_LT(s->kill_at, s->restart_at);
  EXPECT_EQ(s->cameras.size(), 2u);
  EXPECT_EQ(s->sensors.size(), 2u);
  // Every model a node loads is in the repository, and every camera's fallback shares its zone
  // (a frame sent to a fallback must not leave its zone either).
  for (const NodeSpec& n : s->nodes) {
    for (const std::string& m : n.models) {
      EXPECT_TRUE(std::filesystem::exists(s->repository + "/" + m + "/config.yaml")) << m;
    }
  }
  for (const CameraSpec& c : s->cameras) {
    for (const std::string& f : c.fallback) {
      EXPECT_EQ(s->Node(f)->zone(), s->Node(c.node)->zone()) << c.name << " -> " << f;
    }
  }
}

TEST(ScenarioTest, BurstsFollowTheSchedule) {
  CameraSpec c;
  c.fps = 4;
  c.burst_fps = 20;
  c.burst_every_s = 30;
  c.burst_for_s = 8;
  EXPECT_EQ(c.RateAt(0), 4);
  EXPECT_EQ(c.RateAt(29.9), 4);
  EXPECT_EQ(c.RateAt(30), 20);
  EXPECT_EQ(c.RateAt(37.9), 20);
  EXPECT_EQ(c.RateAt(38), 4);
  EXPECT_EQ(c.RateAt(61), 20);
  c.burst_fps = 0;
  EXPECT_EQ(c.RateAt(31), 4);
}

TEST(ScenarioTest, ErrorsNameTheFileAndField) {
  const std::string nodes =
      "nodes:\n  - {name: a, config: a.yaml}\n  - {name: b, config: b.yaml}\n";
  {
    ScenarioFiles f(nodes + "cameras:\n  - {name: c, node: zz}\n", {"a", "b"});
    EXPECT_NE(Message(f.Load()).find("cameras[0].node: no node named 'zz'"), std::string::npos)
        << Message(f.Load());
  }
  {
    ScenarioFiles f(nodes + "cameras:\n  - {name: c, node: a, fallback: [q]}\n", {"a", "b"});
    EXPECT_NE(Message(f.Load()).find("cameras[0].fallback: no node named 'q'"), std::string::npos);
  }
  {
    ScenarioFiles f(nodes + "sensors:\n  - {name: s, node: a, rate_hz: 0}\n", {"a", "b"});
    EXPECT_NE(Message(f.Load()).find("sensors[0].rate_hz: must be more than 0"), std::string::npos);
  }
  {
    ScenarioFiles f(nodes + "sensors:\n  - {name: s, node: a, rate_hz: fast}\n", {"a", "b"});
    EXPECT_NE(Message(f.Load()).find("sensors[0].rate_hz: not a number"), std::string::npos);
  }
  {
    ScenarioFiles f(
        "nodes:\n  - {name: a, config: a.yaml}\n  - {name: a, config: a.yaml}\n"
        "sensors:\n  - {name: s, node: a}\n",
        {"a"});
    EXPECT_NE(Message(f.Load()).find("nodes[1].name: 'a' is used twice"), std::string::npos);
  }
  {
    ScenarioFiles f(nodes +
                        "sensors:\n  - {name: s, node: a}\nchaos: {kill: b, kill_at: 0.7, "
                        "restart_at: 0.5}\n",
                    {"a", "b"});
    EXPECT_NE(Message(f.Load()).find("kill_at < restart_at"), std::string::npos);
  }
  {
    ScenarioFiles f(nodes, {"a", "b"});
    EXPECT_NE(Message(f.Load()).find("nothing to do"), std::string::npos);
  }
  {
    ScenarioFiles f(nodes + "sensors:\n  - {name: s, node: a}\n", {"a"});  // no b.yaml
    EXPECT_EQ(f.Load().status().code(), absl::StatusCode::kNotFound);
    EXPECT_NE(Message(f.Load()).find("b.yaml"), std::string::npos);
  }
  EXPECT_EQ(LoadScenario("/nonexistent/scenario.yaml").status().code(),
            absl::StatusCode::kNotFound);
}

TEST(ScenarioTest, ScalingUpCopiesNodesWithTheirClients) {
  absl::StatusOr<Scenario> s = LoadScenario(ExampleScenario());
  ASSERT_TRUE(s.ok()) << s.status();
  absl::StatusOr<Scenario> big = ScaleScenario(*s, 7);
  ASSERT_TRUE(big.ok()) << big.status();
  std::vector<std::string> names;
  for (const NodeSpec& n : big->nodes) names.push_back(n.name);
  EXPECT_EQ(names, (std::vector<std::string>{"cam-1", "cam-2", "gateway-1", "machine-1", "cam-3",
                                             "cam-4", "gateway-2"}));
  EXPECT_EQ(big->Node("cam-3")->zone(), "line-1");
  EXPECT_EQ(big->Node("cam-3")->config_path, s->Node("cam-1")->config_path);
  // cam-1's camera is copied onto cam-3, cam-2's onto cam-4; gateway-1's sensor onto gateway-2.
  ASSERT_EQ(big->cameras.size(), 4u);
  EXPECT_EQ(big->cameras[2].node, "cam-3");
  EXPECT_EQ(big->cameras[2].name, "entrance@cam-3");
  EXPECT_EQ(big->cameras[3].node, "cam-4");
  ASSERT_EQ(big->sensors.size(), 3u);
  EXPECT_EQ(big->sensors[2].node, "gateway-2");
}

TEST(ScenarioTest, ScalingDownKeepsTheFirstNodesAndTheirClients) {
  absl::StatusOr<Scenario> s = LoadScenario(ExampleScenario());
  ASSERT_TRUE(s.ok()) << s.status();
  absl::StatusOr<Scenario> two = ScaleScenario(*s, 2);
  ASSERT_TRUE(two.ok()) << two.status();
  ASSERT_EQ(two->nodes.size(), 2u);
  EXPECT_EQ(two->cameras.size(), 2u);  // both cameras are on cam-1 and cam-2
  EXPECT_TRUE(two->sensors.empty());   // the sensors were on gateway-1 and machine-1
  for (const CameraSpec& c : two->cameras) EXPECT_TRUE(c.fallback.empty()) << c.name;
  EXPECT_EQ(two->kill, "cam-2");
  absl::StatusOr<Scenario> one = ScaleScenario(*s, 1);
  ASSERT_TRUE(one.ok());
  EXPECT_TRUE(one->kill.empty());  // the node to kill is not among those kept
  EXPECT_FALSE(ScaleScenario(*s, 0).ok());
}

}  // namespace
}  // namespace hivemesh::demo
