// Placement without a scheduler (services/placement.h): every node computes the same members
// from the same view, the node selector and zones are honoured, and a change moves little.
#include "services/placement.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

namespace hivemesh::services {
namespace {

std::vector<Candidate> Mesh(int n) {
  std::vector<Candidate> out;
  for (int i = 0; i < n; ++i) {
    out.push_back(Candidate{"node-" + std::to_string(i),
                            {{"zone", i % 2 == 0 ? "east" : "west"}, {"hw", i < 4 ? "npu" : "cpu"}},
                            false});
  }
  return out;
}

TEST(PlacementTest, EveryNodeComputesTheSameAnswerWhateverTheOrder) {
  std::vector<Candidate> members = Mesh(10);
  PlacementRule rule;
  rule.replicas = 3;
  const std::vector<std::string> first = Place("detector", rule, members);
  ASSERT_EQ(first.size(), 3u);
  std::reverse(members.begin(), members.end());
  EXPECT_EQ(Place("detector", rule, members), first);
  // The weight is a fixed function: the same in every build and on every machine.
  EXPECT_EQ(RendezvousWeight("detector", "node-1"), RendezvousWeight("detector", "node-1"));
  EXPECT_NE(RendezvousWeight("detector", "node-1"), RendezvousWeight("detector", "node-2"));
  EXPECT_EQ(RendezvousWeight("a", "bc"), 0x0u + RendezvousWeight("a", "bc"));
  EXPECT_NE(RendezvousWeight("ab", "c"), RendezvousWeight("a", "bc")) << "the pair is delimited";
  // Different workloads spread over different members.
  std::set<std::string> used;
  for (int w = 0; w < 20; ++w) {
    for (const std::string& m : Place("w" + std::to_string(w), rule, members)) used.insert(m);
  }
  EXPECT_GE(used.size(), 8u);
}

TEST(PlacementTest, AMemberLeavingMovesOnlyItsOwnReplicas) {
  std::vector<Candidate> members = Mesh(10);
  PlacementRule rule;
  rule.replicas = 3;
  const std::vector<std::string> before = Place("detector", rule, members);
  const std::string gone = before[1];
  std::erase_if(members, [&](const Candidate& c) { return c.name == gone; });
  const std::vector<std::string> after = Place("detector", rule, members);
  ASSERT_EQ(after.size(), 3u);
  EXPECT_EQ(after[0], before[0]);
  EXPECT_EQ(after[1], before[2]);
  EXPECT_EQ(std::count(after.begin(), after.end(), gone), 0);
  // A draining member is left out the same way.
  members = Mesh(10);
  for (Candidate& c : members) c.draining = c.name == gone;
  EXPECT_EQ(Place("detector", rule, members), after);
}

TEST(PlacementTest, TheNodeSelectorAndZonesAreHonoured) {
  const std::vector<Candidate> members = Mesh(10);
  absl::StatusOr<Parsed> parsed = ParseManifests(R"(apiVersion: apps/v1
kind: Deployment
metadata:
  name: detector
  annotations:
    hivemesh.io/node-selector: "hw=npu, zone=east"
spec:
  replicas: 5
  selector: {matchLabels: {app: d}}
  template:
    metadata: {labels: {app: d}}
    spec: {containers: [{name: d, command: [x]}]}
)");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  absl::StatusOr<PlacementRule> rule = RuleOf(parsed->manifests[0]);
  ASSERT_TRUE(rule.ok()) << rule.status();
  EXPECT_EQ(rule->node_selector, (Labels{{"hw", "npu"}, {"zone", "east"}}));
  // Only node-0 and node-2 are npu in the east: two replicas, not five.
  std::vector<std::string> placed = Place("detector", *rule, members);
  std::sort(placed.begin(), placed.end());
  EXPECT_EQ(placed, (std::vector<std::string>{"node-0", "node-2"}));
  // Per zone: the top one of each zone.
  PlacementRule zones;
  zones.replicas_per_zone = 1;
  placed = Place("detector", zones, members);
  ASSERT_EQ(placed.size(), 2u);
  std::set<std::string> zone_of;
  for (const std::string& p : placed) zone_of.insert(std::stoi(p.substr(5)) % 2 == 0 ? "e" : "w");
  EXPECT_EQ(zone_of.size(), 2u);
  // Bad annotations are refused naming them.
  Manifest bad = parsed->manifests[0];
  bad.annotations["hivemesh.io/node-selector"] = "zone";
  EXPECT_THAT(RuleOf(bad).status().message(), ::testing::HasSubstr("hivemesh.io/node-selector"));
  bad = parsed->manifests[0];
  bad.annotations["hivemesh.io/replicas-per-zone"] = "0";
  EXPECT_THAT(RuleOf(bad).status().message(),
              ::testing::HasSubstr("hivemesh.io/replicas-per-zone"));
}

}  // namespace
}  // namespace hivemesh::services
