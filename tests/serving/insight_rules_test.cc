#include "serving/insight_rules.h"

#include <gtest/gtest.h>

#include <cstring>

#include "serving/model_config.h"

namespace hivemesh {
namespace {

const std::vector<TensorConfig> kOutputs = {
    {"boxes", DataType::kFp32, {-1, 4}},
    {"scores", DataType::kFp32, {-1, 2}},
    {"count", DataType::kInt32, {1}},
    {"label", DataType::kBytes, {1}},
};

template <typename T>
Tensor Make(std::string name, DataType type, std::vector<T> values) {
  std::string data(values.size() * sizeof(T), '\0');
  std::memcpy(data.data(), values.data(), data.size());
  return Tensor::Owned(std::move(name), type, {static_cast<int64_t>(values.size())},
                       std::move(data));
}

std::vector<Tensor> Result(int count, float p_fault, std::string label = "ok") {
  std::string bytes;
  AppendBytesElement(bytes, label);
  return {Make<int32_t>("count", DataType::kInt32, {count}),
          Make<float>("scores", DataType::kFp32, {1 - p_fault, p_fault}),
          Tensor::Owned("label", DataType::kBytes, {1}, bytes)};
}

InsightRule Rule(InsightRuleFields f) {
  absl::StatusOr<InsightRule> r = ParseInsightRule(f, kOutputs);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *r : InsightRule{};
}

std::string ErrorOf(InsightRuleFields f) {
  absl::StatusOr<InsightRule> r = ParseInsightRule(f, kOutputs);
  return r.ok() ? "(accepted)" : std::string(r.status().message());
}

TEST(InsightRulesTest, EveryResultPublishesTheOutputsNamed) {
  InsightRuleSet set({Rule({.topic = "site/{zone}/{node}/people", .outputs = {"count"}}),
                      Rule({.topic = "t/scores", .outputs = {"scores", "label"}}),
                      Rule({.topic = "t/p", .outputs = {"scores[1]"}})});
  std::vector<std::string> errors;
  std::vector<InsightFiring> f = set.Observe(Result(3, 0.25f, "a \"b\""), 1000, &errors);
  EXPECT_TRUE(errors.empty());
  ASSERT_EQ(f.size(), 3u);
  EXPECT_EQ(f[0].values, R"({"count":3})");
  EXPECT_EQ(f[0].time_ms, 1000);
  EXPECT_EQ(f[1].values, R"({"scores":[0.75,0.25],"label":"a \"b\""})");
  EXPECT_EQ(f[2].rule, 2u);
  EXPECT_EQ(f[2].values, R"({"scores[1]":0.25})");
}

TEST(InsightRulesTest, ChangePublishesOnlyWhenTheValuesDiffer) {
  InsightRuleSet set({Rule({.topic = "t", .outputs = {"count"}, .when = "change"})});
  std::vector<int> published;
  for (int count : {1, 1, 2, 2, 2, 1}) {
    for (const InsightFiring& f : set.Observe(Result(count, 0), 0, nullptr)) {
      published.push_back(f.values == R"({"count":1})" ? 1 : 2);
    }
  }
  EXPECT_EQ(published, (std::vector<int>{1, 2, 1}));
}

TEST(InsightRulesTest, AThresholdPublishesTheResultsItHoldsFor) {
  InsightRuleSet set({Rule({.topic = "alerts", .outputs = {"scores"}, .when = "scores[1] > 0.5"}),
                      Rule({.topic = "crowd", .outputs = {"count"}, .when = "count>=4"})});
  EXPECT_TRUE(set.Observe(Result(1, 0.5f), 0, nullptr).empty());  // > is strict
  std::vector<InsightFiring> f = set.Observe(Result(4, 0.75f), 0, nullptr);
  ASSERT_EQ(f.size(), 2u);
  EXPECT_EQ(f[0].values, R"({"scores":[0.25,0.75]})");
  EXPECT_EQ(f[1].values, R"({"count":4})");
}

TEST(InsightRulesTest, WindowsAlignOnTheClockAndPublishAtTheirEnd) {
  InsightRuleSet set({Rule({.topic = "people/10s",
                            .outputs = {"count"},
                            .every = "10s",
                            .aggregates = {"mean", "min", "max", "sum", "count"}}),
                      Rule({.topic = "alerts/1m",
                            .outputs = {"scores[1]"},
                            .when = "scores[1] > 0.5",
                            .every = "1m",
                            .aggregates = {"count"}})});
  EXPECT_TRUE(set.Tick(100'003'000).empty());  // starts the windows: [100000000, +10 s)
  ASSERT_TRUE(set.NextDue().has_value());
  EXPECT_EQ(*set.NextDue(), 100'010'000);
  EXPECT_TRUE(set.Observe(Result(2, 0.9f), 100'004'000, nullptr).empty());
  EXPECT_TRUE(set.Observe(Result(5, 0.1f), 100'009'999, nullptr).empty());
  // The next result is in the next window: the first one is published, with its end's time.
  std::vector<InsightFiring> f = set.Observe(Result(1, 0.1f), 100'010'000, nullptr);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].time_ms, 100'010'000);
  EXPECT_EQ(f[0].values,
            R"({"output":"count","window_s":10,"mean":3.5,"min":2,"max":5,"sum":7,"count":2})");
  // Two windows pass by: one with a result, one empty (count asked: published as 0). The
  // minute window, from 99,960,000 (aligned on the epoch), ends too: it counted one alert.
  f = set.Tick(100'030'500);
  ASSERT_EQ(f.size(), 3u);
  EXPECT_EQ(f[0].values,
            R"({"output":"count","window_s":10,"mean":1,"min":1,"max":1,"sum":1,"count":1})");
  EXPECT_EQ(f[1].time_ms, 100'030'000);
  EXPECT_EQ(f[1].values, R"({"output":"count","window_s":10,"count":0})");
  EXPECT_EQ(f[2].rule, 1u);
  EXPECT_EQ(f[2].time_ms, 100'020'000);
  EXPECT_EQ(f[2].values, R"({"output":"scores[1]","window_s":60,"count":1})");
  EXPECT_EQ(*set.NextDue(), 100'040'000);
}

TEST(InsightRulesTest, AWindowWithoutResultsAndNoCountIsNotPublished) {
  InsightRuleSet set(
      {Rule({.topic = "t", .outputs = {"count"}, .every = "1s", .aggregates = {"mean"}})});
  set.Tick(0);
  EXPECT_TRUE(set.Tick(5000).empty());
  // A clock far ahead skips windows instead of publishing thousands.
  set.Observe(Result(1, 0), 5100, nullptr);
  EXPECT_EQ(set.Tick(1'000'000'000).size(), 1u);
  EXPECT_EQ(*set.NextDue(), 1'000'001'000);
}

TEST(InsightRulesTest, AResultARuleCannotReadIsAnErrorNotAnInsight) {
  InsightRuleSet set({Rule({.topic = "t", .outputs = {"scores[5]"}}),
                      Rule({.topic = "t", .outputs = {"scores"}, .when = "scores > 0.5"}),
                      Rule({.topic = "t", .outputs = {"boxes"}}),
                      Rule({.topic = "t", .outputs = {"count"}})});
  std::vector<std::string> errors;
  std::vector<Tensor> result = Result(1, 0.9f);
  std::vector<float> boxes(4 * 20, 1.0f);  // 80 values: more than an insight carries
  result.push_back(Make<float>("boxes", DataType::kFp32, boxes));
  std::vector<InsightFiring> f = set.Observe(result, 0, &errors);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].rule, 3u);
  ASSERT_EQ(errors.size(), 3u);
  EXPECT_NE(errors[0].find("output scores has 2 values"), std::string::npos) << errors[0];
  EXPECT_NE(errors[1].find("name one: scores[i]"), std::string::npos) << errors[1];
  EXPECT_NE(errors[2].find("80 values, more than 64"), std::string::npos) << errors[2];
  errors.clear();
  EXPECT_TRUE(set.Observe({}, 0, &errors).size() == 0);
  EXPECT_EQ(errors.size(), 4u);
  EXPECT_NE(errors[3].find("no output count"), std::string::npos);
}

TEST(InsightRulesTest, BadRulesAreRefusedNamingTheField) {
  EXPECT_EQ(ErrorOf({.outputs = {"count"}}), "topic: is required");
  EXPECT_EQ(ErrorOf({.topic = "a/+/b", .outputs = {"count"}}),
            "topic: 'a/+/b': + and # are wildcards of filters, not part of a topic");
  EXPECT_EQ(ErrorOf({.topic = "a/{host}", .outputs = {"count"}}),
            "topic: 'a/{host}': the placeholders are {node}, {zone} and {model}");
  EXPECT_EQ(ErrorOf({.topic = "a/}", .outputs = {"count"}}),
            "topic: 'a/}': the placeholders are {node}, {zone} and {model}");
  EXPECT_EQ(ErrorOf({.topic = std::string(600, 'a'), .outputs = {"count"}}),
            "topic: is 600 bytes, more than 512");
  EXPECT_EQ(ErrorOf({.topic = "t"}),
            "output: is required: which output to publish (boxes, "
            "scores, count, label)");
  EXPECT_EQ(ErrorOf({.topic = "t", .outputs = {"window"}}),
            "output: 'window' is not an output of this model (boxes, scores, count, label)");
  EXPECT_EQ(ErrorOf({.topic = "t", .outputs = {"scores[x]"}}),
            "output: 'scores[x]': the index must be a number from 0, like scores[1]");
  EXPECT_EQ(ErrorOf({.topic = "t", .outputs = {"count", "count"}}), "output: 'count' twice");
  EXPECT_EQ(ErrorOf({.topic = "t", .outputs = {"count"}, .when = "count ~ 3"}),
            "when: 'count ~ 3' is not always, change or a threshold like 'scores[1] > 0.5' (> >= "
            "< <= == !=)");
  EXPECT_EQ(ErrorOf({.topic = "t", .outputs = {"count"}, .when = "count > nan"}),
            "when: 'count > nan' is not always, change or a threshold like 'scores[1] > 0.5' (> "
            ">= < <= == !=)");
  EXPECT_EQ(ErrorOf({.topic = "t", .outputs = {"count"}, .when = "input > 3"}),
            "when: 'input' is not an output of this model (boxes, scores, count, label)");
  EXPECT_EQ(ErrorOf({.topic = "t", .outputs = {"count"}, .every = "10"}),
            "every: '10' is not a window like 10s, 5m or 1h");
  EXPECT_EQ(ErrorOf({.topic = "t", .outputs = {"count"}, .every = "2h"}),
            "every: '2h' is outside 1s .. 1h");
  EXPECT_EQ(ErrorOf({.topic = "t", .outputs = {"count"}, .when = "change", .every = "5s"}),
            "when: change does not go with every (a window publishes at its end)");
  EXPECT_EQ(ErrorOf({.topic = "t", .outputs = {"count", "scores[1]"}, .every = "5s"}),
            "output: a window rule aggregates one value per result: name one");
  EXPECT_EQ(ErrorOf({.topic = "t", .outputs = {"count"}, .every = "5s", .aggregates = {"p99"}}),
            "aggregate: 'p99' is not one of mean, min, max, sum, count");
  EXPECT_EQ(ErrorOf({.topic = "t", .outputs = {"count"}, .aggregates = {"mean"}}),
            "aggregate: needs every: the window to aggregate over");
}

TEST(InsightRulesTest, TopicsAreFilledInForTheNode) {
  EXPECT_EQ(*ResolveInsightTopic("site/{zone}/{node}/{model}", "cam-1", "line-1", "people"),
            "site/line-1/cam-1/people");
  absl::StatusOr<std::string> none = ResolveInsightTopic("site/{zone}/x", "cam-1", "", "m");
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().message(),
            "topic site/{zone}/x uses {zone}, and this node has no zone label");
}

TEST(InsightRulesTest, TheModelConfigCarriesTheRulesAndNamesTheBadField) {
  constexpr std::string_view kConfig = R"(
backend: onnx
insights:
  - {topic: "site/{zone}/alerts", output: scores, when: "scores[1] > 0.5"}
  - topic: people/{node}
    output: [count]
    every: 10s
inputs: [{name: window, datatype: FP32, shape: [-1, 128]}]
outputs:
  - {name: scores, datatype: FP32, shape: [-1, 2]}
  - {name: count, datatype: INT32, shape: [1]}
)";
  absl::StatusOr<ModelConfig> c = ParseModelConfig(kConfig, "m", "m/config.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->insight_rules.size(), 2u);
  EXPECT_EQ(c->insight_rules[0].when, InsightRule::When::kThreshold);
  EXPECT_EQ(c->insight_rules[1].every_ms, 10'000);

  // Without rules, a config has none (and loads).
  std::string none(kConfig);
  none.erase(none.find("insights:"), none.find("inputs:") - none.find("insights:"));
  c = ParseModelConfig(none, "m", "m/config.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->insight_rules.empty());

  std::string bad(kConfig);
  bad.replace(bad.find("output: [count]"), 15, "output: [window]");
  c = ParseModelConfig(bad, "m", "m/config.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().message(),
            "m/config.yaml: insights[1].output: 'window' is not an output of this model "
            "(scores, count)");
  bad = std::string(kConfig);
  bad.replace(bad.find("every: 10s"), 10, "evry: 10s");
  c = ParseModelConfig(bad, "m", "m/config.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().message(),
            "m/config.yaml: insights[1].evry: unknown field (topic, output, when, every, "
            "aggregate)");
}

}  // namespace
}  // namespace hivemesh
