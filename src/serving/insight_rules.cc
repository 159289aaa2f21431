#include "serving/insight_rules.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "base/strings.h"
#include "codec/json_writer.h"

namespace hivemesh {
namespace {

constexpr int64_t kMinWindowMs = 1000;
constexpr int64_t kMaxWindowMs = 3600 * 1000;
// A clock far behind a window's end (a long pause) skips the empty windows past this many.
constexpr int kMaxWindowsClosedAtOnce = 60;

absl::Status FieldError(std::string_view field, std::string_view why) {
  return absl::InvalidArgumentError(StrCat(field, ": ", why));
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::string OutputNames(std::span<const TensorConfig> outputs) {
  std::string names;
  for (const TensorConfig& t : outputs) StrAppend(&names, names.empty() ? "" : ", ", t.name);
  return names;
}

absl::StatusOr<InsightSelector> ParseSelector(std::string_view text,
                                              std::span<const TensorConfig> outputs) {
  text = Trim(text);
  InsightSelector s;
  s.text = std::string(text);
  std::string_view name = text;
  if (const size_t open = text.find('['); open != std::string_view::npos) {
    if (text.back() != ']' || open + 2 > text.size() - 1) {
      return absl::InvalidArgumentError(
          StrCat("'", text, "' is not an output or one value of it, like scores[1]"));
    }
    const std::string digits(text.substr(open + 1, text.size() - open - 2));
    if (digits.empty() || digits.size() > 9 ||
        !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return absl::InvalidArgumentError(
          StrCat("'", text, "': the index must be a number from 0, like scores[1]"));
    }
    s.index = static_cast<uint32_t>(std::strtoul(digits.c_str(), nullptr, 10));
    name = text.substr(0, open);
  }
  s.output = std::string(name);
  const bool known = std::any_of(outputs.begin(), outputs.end(),
                                 [&](const TensorConfig& t) { return t.name == s.output; });
  if (!known) {
    return absl::InvalidArgumentError(
        StrCat("'", s.output, "' is not an output of this model (", OutputNames(outputs), ")"));
  }
  return s;
}

absl::Status CheckTemplate(std::string_view topic) {
  if (topic.empty()) return absl::InvalidArgumentError("is required");
  if (topic.size() > kMaxTopicTemplateBytes) {
    return absl::InvalidArgumentError(
        StrCat("is ", topic.size(), " bytes, more than ", kMaxTopicTemplateBytes));
  }
  if (topic.find_first_of("+#") != std::string_view::npos) {
    return absl::InvalidArgumentError(
        StrCat("'", topic, "': + and # are wildcards of filters, not part of a topic"));
  }
  for (size_t at = topic.find('{'); at != std::string_view::npos; at = topic.find('{', at + 1)) {
    const std::string_view rest = topic.substr(at);
    if (!rest.starts_with("{node}") && !rest.starts_with("{zone}") &&
        !rest.starts_with("{model}")) {
      return absl::InvalidArgumentError(
          StrCat("'", topic, "': the placeholders are {node}, {zone} and {model}"));
    }
  }
  // A '}' outside a placeholder.
  size_t closes = 0, opens = 0;
  for (char c : topic) {
    closes += c == '}';
    opens += c == '{';
  }
  if (closes != opens) {
    return absl::InvalidArgumentError(
        StrCat("'", topic, "': the placeholders are {node}, {zone} and {model}"));
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> ParseWindow(std::string_view text) {
  text = Trim(text);
  int64_t unit_ms = 0;
  std::string_view digits = text;
  if (text.ends_with("s")) {
    unit_ms = 1000;
  } else if (text.ends_with("m")) {
    unit_ms = 60 * 1000;
  } else if (text.ends_with("h")) {
    unit_ms = 3600 * 1000;
  }
  if (unit_ms != 0) digits.remove_suffix(1);
  if (unit_ms == 0 || digits.empty() || digits.size() > 6 ||
      !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return absl::InvalidArgumentError(StrCat("'", text, "' is not a window like 10s, 5m or 1h"));
  }
  const int64_t ms = std::strtoll(std::string(digits).c_str(), nullptr, 10) * unit_ms;
  if (ms < kMinWindowMs || ms > kMaxWindowMs) {
    return absl::InvalidArgumentError(StrCat("'", text, "' is outside 1s .. 1h"));
  }
  return ms;
}

absl::StatusOr<InsightThreshold> ParseThreshold(std::string_view text,
                                                std::span<const TensorConfig> outputs) {
  const size_t at = text.find_first_of("<>=!");
  const auto bad = [&] {
    return absl::InvalidArgumentError(
        StrCat("'", text,
               "' is not always, change or a threshold like 'scores[1] > 0.5' (> >= < <= == !=)"));
  };
  if (at == std::string_view::npos || at == 0) return bad();
  InsightThreshold t;
  std::string_view rest = text.substr(at);
  static constexpr std::pair<std::string_view, InsightCompare> kOps[] = {
      {">=", InsightCompare::kGreaterEqual}, {"<=", InsightCompare::kLessEqual},
      {"==", InsightCompare::kEqual},        {"!=", InsightCompare::kNotEqual},
      {">", InsightCompare::kGreater},       {"<", InsightCompare::kLess}};
  size_t op_size = 0;
  for (const auto& [op, compare] : kOps) {
    if (rest.starts_with(op)) {
      t.op = compare;
      op_size = op.size();
      break;
    }
  }
  if (op_size == 0) return bad();
  const std::string number(Trim(rest.substr(op_size)));
  char* end = nullptr;
  t.value = number.empty() ? 0 : std::strtod(number.c_str(), &end);
  if (number.empty() || end != number.c_str() + number.size() || !std::isfinite(t.value)) {
    return bad();
  }
  absl::StatusOr<InsightSelector> selector = ParseSelector(text.substr(0, at), outputs);
  if (!selector.ok()) return selector.status();
  t.selector = *std::move(selector);
  return t;
}

absl::StatusOr<InsightAggregate> ParseAggregate(std::string_view name) {
  static constexpr std::pair<std::string_view, InsightAggregate> kNames[] = {
      {"mean", InsightAggregate::kMean},
      {"min", InsightAggregate::kMin},
      {"max", InsightAggregate::kMax},
      {"sum", InsightAggregate::kSum},
      {"count", InsightAggregate::kCount}};
  for (const auto& [n, a] : kNames) {
    if (n == name) return a;
  }
  return absl::InvalidArgumentError(
      StrCat("'", name, "' is not one of mean, min, max, sum, count"));
}

std::string_view AggregateName(InsightAggregate a) {
  switch (a) {
    case InsightAggregate::kMean:
      return "mean";
    case InsightAggregate::kMin:
      return "min";
    case InsightAggregate::kMax:
      return "max";
    case InsightAggregate::kSum:
      return "sum";
    case InsightAggregate::kCount:
      return "count";
  }
  return "?";
}

const Tensor* FindOutput(std::span<const Tensor> outputs, std::string_view name) {
  for (const Tensor& t : outputs) {
    if (t.name() == name) return &t;
  }
  return nullptr;
}

template <typename T>
T Load(const Tensor& t, size_t i) {
  T v;
  std::memcpy(&v, t.data().data() + i * sizeof(T), sizeof(T));
  return v;
}

// The i-th value of a fixed-size tensor as a number. REQUIRES: type != BYTES, i in range.
double NumberAt(const Tensor& t, size_t i) {
  switch (t.type()) {
    case DataType::kBool:
    case DataType::kUint8:
      return Load<uint8_t>(t, i);
    case DataType::kUint16:
      return Load<uint16_t>(t, i);
    case DataType::kUint32:
      return Load<uint32_t>(t, i);
    case DataType::kUint64:
      return static_cast<double>(Load<uint64_t>(t, i));
    case DataType::kInt8:
      return Load<int8_t>(t, i);
    case DataType::kInt16:
      return Load<int16_t>(t, i);
    case DataType::kInt32:
      return Load<int32_t>(t, i);
    case DataType::kInt64:
      return static_cast<double>(Load<int64_t>(t, i));
    case DataType::kFp16:
      return HalfToFloat(Load<uint16_t>(t, i));
    case DataType::kBf16:
      return Bf16ToFloat(Load<uint16_t>(t, i));
    case DataType::kFp32:
      return Load<float>(t, i);
    case DataType::kFp64:
      return Load<double>(t, i);
    case DataType::kBytes:
      break;
  }
  return 0;
}

// How many values `t` holds, by its data (its shape was checked when the model answered).
size_t ValueCount(const Tensor& t) {
  if (t.type() != DataType::kBytes) return t.data().size() / ElementSize(t.type());
  size_t n = 0;
  ForEachBytesElement(t.data(), [&](std::string_view) { ++n; });
  return n;
}

// Writes value `i` of `t` (a number, a bool or a string).
absl::Status WriteValue(JsonWriter& w, const Tensor& t, size_t i) {
  if (t.type() == DataType::kBytes) {
    std::string_view element;
    size_t k = 0;
    ForEachBytesElement(t.data(), [&](std::string_view e) {
      if (k++ == i) element = e;
    });
    if (element.size() > kMaxRuleStringBytes) {
      return absl::InvalidArgumentError(StrCat("output ", t.name(), " has a value of ",
                                               element.size(), " bytes, more than ",
                                               kMaxRuleStringBytes, " an insight carries"));
    }
    w.String(element);
  } else if (t.type() == DataType::kBool) {
    w.Bool(NumberAt(t, i) != 0);
  } else if (t.type() == DataType::kFp32 || t.type() == DataType::kFp16 ||
             t.type() == DataType::kBf16) {
    w.Float(static_cast<float>(NumberAt(t, i)));
  } else if (t.type() == DataType::kFp64) {
    w.Double(NumberAt(t, i));
  } else if (t.type() == DataType::kUint64) {
    w.Uint(Load<uint64_t>(t, i));
  } else if (t.type() == DataType::kInt64) {
    w.Int(Load<int64_t>(t, i));
  } else {
    w.Int(static_cast<int64_t>(NumberAt(t, i)));
  }
  return absl::OkStatus();
}

absl::Status Missing(const InsightSelector& s) {
  return absl::InvalidArgumentError(StrCat("the result has no output ", s.output));
}

// Writes the selector's values under its name: one value as itself, several as an array.
absl::Status WriteSelector(JsonWriter& w, std::span<const Tensor> outputs,
                           const InsightSelector& s) {
  const Tensor* t = FindOutput(outputs, s.output);
  if (t == nullptr) return Missing(s);
  const size_t n = ValueCount(*t);
  w.Key(s.text);
  if (s.index) {
    if (*s.index >= n) {
      return absl::InvalidArgumentError(
          StrCat(s.text, ": output ", s.output, " has ", n, " values in this result"));
    }
    return WriteValue(w, *t, *s.index);
  }
  if (n == 1) return WriteValue(w, *t, 0);
  if (n > kMaxRuleValues) {
    return absl::InvalidArgumentError(StrCat("output ", s.output, " has ", n, " values, more than ",
                                             kMaxRuleValues,
                                             " an insight carries (name one: ", s.output, "[i])"));
  }
  w.BeginArray();
  for (size_t i = 0; i < n; ++i) {
    if (absl::Status st = WriteValue(w, *t, i); !st.ok()) return st;
  }
  w.EndArray();
  return absl::OkStatus();
}

// The one number a selector names in this result.
absl::StatusOr<double> NumberOf(std::span<const Tensor> outputs, const InsightSelector& s) {
  const Tensor* t = FindOutput(outputs, s.output);
  if (t == nullptr) return Missing(s);
  if (t->type() == DataType::kBytes) {
    return absl::InvalidArgumentError(StrCat("output ", s.output, " holds text, not numbers"));
  }
  const size_t n = ValueCount(*t);
  const size_t i = s.index.value_or(0);
  if (!s.index && n != 1) {
    return absl::InvalidArgumentError(StrCat(
        "output ", s.output, " has ", n, " values in this result; name one: ", s.output, "[i]"));
  }
  if (i >= n) {
    return absl::InvalidArgumentError(
        StrCat(s.text, ": output ", s.output, " has ", n, " values in this result"));
  }
  return NumberAt(*t, i);
}

bool Holds(const InsightThreshold& t, double v) {
  switch (t.op) {
    case InsightCompare::kGreater:
      return v > t.value;
    case InsightCompare::kGreaterEqual:
      return v >= t.value;
    case InsightCompare::kLess:
      return v < t.value;
    case InsightCompare::kLessEqual:
      return v <= t.value;
    case InsightCompare::kEqual:
      return v == t.value;
    case InsightCompare::kNotEqual:
      return v != t.value;
  }
  return false;
}

int64_t FloorTo(int64_t t, int64_t step) { return t - (((t % step) + step) % step); }

}  // namespace

absl::StatusOr<InsightRule> ParseInsightRule(const InsightRuleFields& f,
                                             std::span<const TensorConfig> outputs) {
  InsightRule r;
  if (absl::Status s = CheckTemplate(f.topic); !s.ok()) return FieldError("topic", MessageOf(s));
  r.topic = f.topic;
  if (f.outputs.empty()) {
    return FieldError("output",
                      StrCat("is required: which output to publish (", OutputNames(outputs), ")"));
  }
  for (const std::string& text : f.outputs) {
    absl::StatusOr<InsightSelector> s = ParseSelector(text, outputs);
    if (!s.ok()) return FieldError("output", MessageOf(s.status()));
    for (const InsightSelector& earlier : r.outputs) {
      if (earlier.text == s->text) return FieldError("output", StrCat("'", s->text, "' twice"));
    }
    r.outputs.push_back(*std::move(s));
  }
  if (r.outputs.size() > 8) return FieldError("output", "more than 8 outputs in one rule");
  const std::string when(Trim(f.when));
  if (when.empty() || when == "always") {
    r.when = InsightRule::When::kAlways;
  } else if (when == "change") {
    r.when = InsightRule::When::kChange;
  } else {
    absl::StatusOr<InsightThreshold> t = ParseThreshold(when, outputs);
    if (!t.ok()) return FieldError("when", MessageOf(t.status()));
    r.when = InsightRule::When::kThreshold;
    r.threshold = *std::move(t);
  }
  if (!f.every.empty()) {
    absl::StatusOr<int64_t> every = ParseWindow(f.every);
    if (!every.ok()) return FieldError("every", MessageOf(every.status()));
    r.every_ms = *every;
    if (r.when == InsightRule::When::kChange) {
      return FieldError("when", "change does not go with every (a window publishes at its end)");
    }
    if (r.outputs.size() != 1) {
      return FieldError("output", "a window rule aggregates one value per result: name one");
    }
    for (const std::string& name : f.aggregates) {
      absl::StatusOr<InsightAggregate> a = ParseAggregate(Trim(name));
      if (!a.ok()) return FieldError("aggregate", MessageOf(a.status()));
      if (std::find(r.aggregates.begin(), r.aggregates.end(), *a) != r.aggregates.end()) {
        return FieldError("aggregate", StrCat("'", name, "' twice"));
      }
      r.aggregates.push_back(*a);
    }
    if (r.aggregates.empty()) {
      r.aggregates = {InsightAggregate::kMean, InsightAggregate::kMax, InsightAggregate::kCount};
    }
  } else if (!f.aggregates.empty()) {
    return FieldError("aggregate", "needs every: the window to aggregate over");
  }
  return r;
}

absl::StatusOr<std::string> ResolveInsightTopic(std::string_view topic_template,
                                                std::string_view node, std::string_view zone,
                                                std::string_view model) {
  std::string out;
  out.reserve(topic_template.size() + 32);
  for (size_t i = 0; i < topic_template.size();) {
    const std::string_view rest = topic_template.substr(i);
    if (rest.starts_with("{node}")) {
      out += node;
      i += 6;
    } else if (rest.starts_with("{zone}")) {
      if (zone.empty()) {
        return absl::InvalidArgumentError(
            StrCat("topic ", topic_template, " uses {zone}, and this node has no zone label"));
      }
      out += zone;
      i += 6;
    } else if (rest.starts_with("{model}")) {
      out += model;
      i += 7;
    } else {
      out += topic_template[i++];
    }
  }
  return out;
}

InsightRuleSet::InsightRuleSet(std::vector<InsightRule> rules)
    : rules_(std::move(rules)), last_(rules_.size()), windows_(rules_.size()) {}

std::vector<InsightFiring> InsightRuleSet::Observe(std::span<const Tensor> outputs, int64_t now_ms,
                                                   std::vector<std::string>* errors) {
  std::vector<InsightFiring> out;
  const auto fail = [&](size_t i, const absl::Status& s) {
    if (errors != nullptr) errors->push_back(StrCat("rule ", i, ": ", MessageOf(s)));
  };
  for (size_t i = 0; i < rules_.size(); ++i) {
    const InsightRule& r = rules_[i];
    if (r.threshold) {
      absl::StatusOr<double> v = NumberOf(outputs, r.threshold->selector);
      if (!v.ok()) {
        fail(i, v.status());
        continue;
      }
      if (!Holds(*r.threshold, *v)) {
        if (r.every_ms > 0) Roll(i, now_ms, &out);
        continue;
      }
    }
    if (r.every_ms > 0) {
      Roll(i, now_ms, &out);
      absl::StatusOr<double> v = NumberOf(outputs, r.outputs[0]);
      if (!v.ok()) {
        fail(i, v.status());
        continue;
      }
      Window& w = windows_[i];
      w.min = w.n == 0 ? *v : std::min(w.min, *v);
      w.max = w.n == 0 ? *v : std::max(w.max, *v);
      w.sum += *v;
      ++w.n;
      continue;
    }
    std::string values;
    JsonWriter json(values);
    json.BeginObject();
    absl::Status written;
    for (const InsightSelector& s : r.outputs) {
      written = WriteSelector(json, outputs, s);
      if (!written.ok()) break;
    }
    if (!written.ok()) {
      fail(i, written);
      continue;
    }
    json.EndObject();
    if (r.when == InsightRule::When::kChange) {
      if (values == last_[i]) continue;
      last_[i] = values;
    }
    out.push_back({i, std::move(values), now_ms});
  }
  return out;
}

void InsightRuleSet::Roll(size_t i, int64_t now_ms, std::vector<InsightFiring>* out) {
  const InsightRule& r = rules_[i];
  Window& w = windows_[i];
  const int64_t current = FloorTo(now_ms, r.every_ms);
  if (w.start_ms < 0) {
    w.start_ms = current;
    return;
  }
  const bool counts = std::find(r.aggregates.begin(), r.aggregates.end(),
                                InsightAggregate::kCount) != r.aggregates.end();
  for (int closed = 0; w.start_ms < current; ++closed) {
    if (closed == kMaxWindowsClosedAtOnce) {
      w = Window{};
      w.start_ms = current;
      break;
    }
    if (w.n > 0 || counts) {
      std::string values;
      JsonWriter json(values);
      json.BeginObject().Key("output").String(r.outputs[0].text);
      json.Key("window_s").Int(r.every_ms / 1000);
      for (InsightAggregate a : r.aggregates) {
        if (a == InsightAggregate::kCount) {
          json.Key("count").Uint(w.n);
          continue;
        }
        if (w.n == 0) continue;  // no mean of nothing
        json.Key(AggregateName(a));
        switch (a) {
          case InsightAggregate::kMean:
            json.Double(w.sum / static_cast<double>(w.n));
            break;
          case InsightAggregate::kMin:
            json.Double(w.min);
            break;
          case InsightAggregate::kMax:
            json.Double(w.max);
            break;
          case InsightAggregate::kSum:
            json.Double(w.sum);
            break;
          case InsightAggregate::kCount:
            break;
        }
      }
      json.EndObject();
      out->push_back({i, std::move(values), w.start_ms + r.every_ms});
    }
    const int64_t next = w.start_ms + r.every_ms;
    w = Window{};
    w.start_ms = next;
  }
}

std::vector<InsightFiring> InsightRuleSet::Tick(int64_t now_ms) {
  std::vector<InsightFiring> out;
  for (size_t i = 0; i < rules_.size(); ++i) {
    if (rules_[i].every_ms > 0) Roll(i, now_ms, &out);
  }
  return out;
}

std::optional<int64_t> InsightRuleSet::NextDue() const {
  std::optional<int64_t> due;
  for (size_t i = 0; i < rules_.size(); ++i) {
    if (rules_[i].every_ms <= 0 || windows_[i].start_ms < 0) continue;
    const int64_t end = windows_[i].start_ms + rules_[i].every_ms;
    if (!due || end < *due) due = end;
  }
  return due;
}

}  // namespace hivemesh
