// Insight rules: what a model publishes on the insight bus from its own results
// (docs/insights.md, "Insights from models"), declared in its config.yaml:
//
//   insights:
//     - topic: site/{zone}/{node}/people    # {node}, {zone} and {model} are filled in by the node
//       output: count                        # an output, a list of them, or one value: scores[1]
//     - topic: site/{zone}/alerts/vibration
//       output: scores
//       when: scores[1] > 0.5                # always (the default) | change | a threshold
//     - topic: site/{zone}/{node}/people/10s
//       output: count
//       every: 10s                           # an aggregate over windows of 1 s .. 1 h
//       aggregate: [mean, max, count]        # of mean, min, max, sum, count (default: these 3)
//
// - A selector is an output's name (all its values) or `name[i]` (its i-th value, row-major).
//   Rules read outputs only: a model's inputs are never published.
// - always: one insight per result. change: when the values differ from the last ones the rule
//   published. A threshold (`selector op number`, op one of > >= < <= == !=, on a selector of
//   one value): one insight per result for which it holds.
// - every: windows aligned on the clock (multiples of the window since the epoch), so that the
//   windows of every node line up. At a window's end the rule publishes the aggregates of one
//   value per result (`count` of a one-value output, or `scores[1]`); `when` (a threshold)
//   narrows which results count. A window without results publishes only if `count` is asked
//   (a count of 0 says something). A window's insight carries the time of its end.
// - The values of an insight: {"count": 3}, {"scores": [0.02, 0.98]}, {"scores[1]": 0.98}; a
//   window's: {"output": "count", "window_s": 10, "mean": 2.5, "max": 4, "count": 12}. One
//   selector carries at most kMaxRuleValues values (a result with more publishes nothing for the
//   rule: an error is reported); a BYTES value at most kMaxRuleStringBytes.
//
// Pure: times are handed in (Unix milliseconds). Thread safety: an InsightRuleSet is not
// thread-safe (its owner locks it); the parsed rules are values.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "tensor/tensor.h"
#include "tensor/tensor_config.h"

namespace hivemesh {

inline constexpr size_t kMaxInsightRules = 16;
inline constexpr size_t kMaxRuleValues = 64;
inline constexpr size_t kMaxRuleStringBytes = 256;
inline constexpr size_t kMaxTopicTemplateBytes = 512;

// One output, or one value of it (`index` set).
struct InsightSelector {
  std::string output;
  std::optional<uint32_t> index;
  std::string text;  // as written: "count", "scores[1]"
};

enum class InsightCompare { kGreater, kGreaterEqual, kLess, kLessEqual, kEqual, kNotEqual };

struct InsightThreshold {
  InsightSelector selector;
  InsightCompare op = InsightCompare::kGreater;
  double value = 0;
};

enum class InsightAggregate { kMean, kMin, kMax, kSum, kCount };

struct InsightRule {
  enum class When { kAlways, kChange, kThreshold };
  std::string topic;  // the template, placeholders unfilled
  std::vector<InsightSelector> outputs;
  When when = When::kAlways;
  std::optional<InsightThreshold> threshold;  // When::kThreshold
  int64_t every_ms = 0;                       // > 0: a window rule
  std::vector<InsightAggregate> aggregates;   // window rules
};

// A rule as config.yaml writes it: scalar fields as text (empty: absent), lists as lists.
struct InsightRuleFields {
  std::string topic;
  std::vector<std::string> outputs;
  std::string when;
  std::string every;
  std::vector<std::string> aggregates;
};

// The rule, checked against the model's `outputs`: INVALID_ARGUMENT with "<field>: <why>"
// (field one of topic, output, when, every, aggregate).
absl::StatusOr<InsightRule> ParseInsightRule(const InsightRuleFields& fields,
                                             std::span<const TensorConfig> outputs);

// The rule's topic for this node: placeholders filled in. INVALID_ARGUMENT if it uses {zone}
// and `zone` is empty. (The bus checks the result as a topic.)
absl::StatusOr<std::string> ResolveInsightTopic(std::string_view topic_template,
                                                std::string_view node, std::string_view zone,
                                                std::string_view model);

// What a rule publishes: the rule's index and the values (a JSON object), at `time_ms`.
struct InsightFiring {
  size_t rule = 0;
  std::string values;
  int64_t time_ms = 0;
};

// The state of one model version's rules (changes, windows).
class InsightRuleSet {
 public:
  explicit InsightRuleSet(std::vector<InsightRule> rules);

  // A result (the outputs as answered) at `now_ms`: what the rules publish, windows that ended
  // by now first. Why a rule could not read this result goes to `errors` (one line per rule).
  std::vector<InsightFiring> Observe(std::span<const Tensor> outputs, int64_t now_ms,
                                     std::vector<std::string>* errors);
  // The windows that ended by `now_ms`.
  std::vector<InsightFiring> Tick(int64_t now_ms);
  // When the next window ends (Unix ms), or nullopt if there is no window rule.
  std::optional<int64_t> NextDue() const;

  const std::vector<InsightRule>& rules() const { return rules_; }

 private:
  struct Window {
    int64_t start_ms = -1;  // -1: not started
    uint64_t n = 0;
    double sum = 0, min = 0, max = 0;
  };
  // Closes the windows of rule `i` that ended by `now_ms` and starts the one holding now.
  void Roll(size_t i, int64_t now_ms, std::vector<InsightFiring>* out);

  const std::vector<InsightRule> rules_;
  std::vector<std::string> last_;  // per rule: the values it last published (change rules)
  std::vector<Window> windows_;    // per rule
};

}  // namespace hivemesh
