// Version policies and reload plans: which versions are served, which are (re)loaded, and which
// are retired, including when a load fails.
#include "serving/version_policy.h"

#include <gtest/gtest.h>

#include "serving/model_config.h"

namespace hivemesh {
namespace {

using V = std::vector<int64_t>;

VersionPolicy Latest(int n) {
  VersionPolicy p;
  p.latest = n;
  return p;
}

TEST(VersionPolicyTest, SelectsByKind) {
  const V available = {3, 1, 7, 2};
  EXPECT_EQ(VersionPolicy{}.Select(available), (V{7})) << "the default is latest 1";
  EXPECT_EQ(Latest(2).Select(available), (V{3, 7}));
  EXPECT_EQ(Latest(9).Select(available), (V{1, 2, 3, 7}));
  VersionPolicy all;
  all.kind = VersionPolicy::Kind::kAll;
  EXPECT_EQ(all.Select(available), (V{1, 2, 3, 7}));
  VersionPolicy specific;
  specific.kind = VersionPolicy::Kind::kSpecific;
  specific.specific = {2, 5, 7};
  EXPECT_EQ(specific.Select(available), (V{2, 7}));
  EXPECT_EQ(specific.ToString(), "specific [2, 5, 7]");
  EXPECT_EQ(Latest(2).ToString(), "latest 2");
  EXPECT_TRUE(Latest(1).Select({}).empty());
}

TEST(VersionPolicyTest, ParsedFromConfigInShortAndTritonForms) {
  const std::string base =
      "backend: identity\ninputs: [{name: x, datatype: FP32, shape: [1]}]\n"
      "outputs: [{name: y, datatype: FP32, shape: [1]}]\n";
  auto parse = [&](const std::string& policy) {
    return ParseModelConfig(base + "version_policy: " + policy + "\n", "m", "m/config.yaml");
  };
  EXPECT_EQ(ParseModelConfig(base, "m", "f")->version_policy, VersionPolicy{});
  EXPECT_EQ(parse("{latest: 3}")->version_policy, Latest(3));
  EXPECT_EQ(parse("{latest: {num_versions: 2}}")->version_policy, Latest(2));
  EXPECT_EQ(parse("all")->version_policy.kind, VersionPolicy::Kind::kAll);
  EXPECT_EQ(parse("{all: {}}")->version_policy.kind, VersionPolicy::Kind::kAll);
  EXPECT_EQ(parse("{specific: [3, 1, 3]}")->version_policy.specific, (V{1, 3}));
  EXPECT_EQ(parse("{specific: {versions: [4]}}")->version_policy.specific, (V{4}));

  auto error = [&](const std::string& policy) {
    auto c = parse(policy);
    EXPECT_FALSE(c.ok()) << policy;
    return std::string(c.status().message());
  };
  EXPECT_EQ(error("newest"),
            "m/config.yaml: version_policy: 'newest' must be all, {latest: N} or {specific: "
            "[versions]}");
  EXPECT_EQ(error("{latest: 0}"), "m/config.yaml: version_policy.latest: 0 is outside [1, 65536]");
  EXPECT_EQ(error("{specific: []}"),
            "m/config.yaml: version_policy.specific: must be a non-empty list of versions");
  EXPECT_EQ(error("{specific: [1, x]}"),
            "m/config.yaml: version_policy.specific[1]: 'x' is not an integer");
  EXPECT_NE(error("{oldest: 1}").find("version_policy.oldest: unknown policy"), std::string::npos);
}

TEST(ReloadPlanTest, NewVersionIsLoadedAndTheOldOneRetiredOnlyOnceItServes) {
  // latest 1: version 1 serves; version 2 appears.
  const std::map<int64_t, uint64_t> serving = {{1, 11}};
  const ReloadPlan plan = PlanReload(Latest(1), {{1, 11}, {2, 22}}, serving);
  EXPECT_EQ(plan.load, (V{2}));
  EXPECT_TRUE(plan.keep.empty());
  EXPECT_EQ(plan.retire, (V{1}));
  EXPECT_EQ(RetireAfterReload(plan, serving, {}), (V{1}));
  // Version 2 fails to load: version 1 keeps serving.
  EXPECT_TRUE(RetireAfterReload(plan, serving, {2}).empty());
}

TEST(ReloadPlanTest, ChangedFilesReloadTheVersionAndAFailedReloadKeepsTheOldFiles) {
  const std::map<int64_t, uint64_t> serving = {{1, 11}, {2, 22}};
  VersionPolicy all;
  all.kind = VersionPolicy::Kind::kAll;
  const ReloadPlan plan = PlanReload(all, {{1, 11}, {2, 23}}, serving);
  EXPECT_EQ(plan.load, (V{2}));
  EXPECT_EQ(plan.keep, (V{1}));
  EXPECT_TRUE(plan.retire.empty());
  EXPECT_EQ(RetireAfterReload(plan, serving, {}), (V{2})) << "the old runtime of 2 is replaced";
  EXPECT_TRUE(RetireAfterReload(plan, serving, {2}).empty());
}

TEST(ReloadPlanTest, RemovedVersionIsRetiredAndAnOlderOneComesBack) {
  // latest 1 serving version 3; its folder is removed, 2 is still on disk.
  const std::map<int64_t, uint64_t> serving = {{3, 33}};
  const ReloadPlan plan = PlanReload(Latest(1), {{1, 11}, {2, 22}}, serving);
  EXPECT_EQ(plan.load, (V{2}));
  EXPECT_EQ(plan.retire, (V{3}));
  EXPECT_EQ(RetireAfterReload(plan, serving, {}), (V{3}));
  // Every folder removed: nothing to load, everything retired.
  const ReloadPlan gone = PlanReload(Latest(1), {}, serving);
  EXPECT_TRUE(gone.load.empty());
  EXPECT_EQ(RetireAfterReload(gone, serving, {}), (V{3}));
}

TEST(ReloadPlanTest, MissingSpecificVersionKeepsTheOthersServing) {
  VersionPolicy specific;
  specific.kind = VersionPolicy::Kind::kSpecific;
  specific.specific = {1, 3};
  const std::map<int64_t, uint64_t> serving = {{2, 22}};
  const ReloadPlan plan = PlanReload(specific, {{1, 11}, {2, 22}}, serving);
  EXPECT_EQ(plan.load, (V{1}));
  EXPECT_EQ(plan.missing, (V{3}));
  EXPECT_EQ(plan.retire, (V{2}));
  EXPECT_TRUE(RetireAfterReload(plan, serving, {}).empty());
}

TEST(ReloadPlanTest, UnchangedModelDoesNothing) {
  const std::map<int64_t, uint64_t> serving = {{4, 44}};
  const ReloadPlan plan = PlanReload(Latest(1), {{3, 33}, {4, 44}}, serving);
  EXPECT_TRUE(plan.load.empty());
  EXPECT_EQ(plan.keep, (V{4}));
  EXPECT_TRUE(plan.retire.empty());
  EXPECT_TRUE(RetireAfterReload(plan, serving, {}).empty());
}

}  // namespace
}  // namespace hivemesh
