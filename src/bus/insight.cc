#include "bus/insight.h"

#include <simdjson.h>

#include <cstdio>
#include <tuple>
#include <utility>

#include "absl/time/time.h"
#include "base/json_string.h"
#include "base/strings.h"
#include "bus/topic.h"

namespace hivemesh::bus {
namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsLowerHex(char c) { return IsDigit(c) || (c >= 'a' && c <= 'f'); }

// Printable UTF-8 of at most kMaxNameBytes, without control characters; empty if `may_be_empty`.
absl::Status CheckName(std::string_view value, std::string_view field, bool may_be_empty) {
  if (value.empty()) {
    return may_be_empty ? absl::OkStatus()
                        : absl::InvalidArgumentError(StrCat("insight: ", field, " is empty"));
  }
  if (value.size() > kMaxNameBytes || !IsValidUtf8(value)) {
    return absl::InvalidArgumentError(
        StrCat("insight: ", field, " is not UTF-8 of at most ", kMaxNameBytes, " bytes"));
  }
  for (char c : value) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      return absl::InvalidArgumentError(StrCat("insight: ", field, " holds a control character"));
    }
  }
  return absl::OkStatus();
}

// "<node>.<1..16 hex digits>.<12 digits>"
bool IdOf(std::string_view id, std::string_view node) {
  if (id.size() <= node.size() + 1 || !id.starts_with(node) || id[node.size()] != '.') {
    return false;
  }
  std::string_view rest = id.substr(node.size() + 1);
  const size_t dot = rest.find('.');
  if (dot == 0 || dot > 16 || dot == std::string_view::npos) return false;
  for (char c : rest.substr(0, dot)) {
    if (!IsLowerHex(c)) return false;
  }
  rest.remove_prefix(dot + 1);
  if (rest.size() != 12) return false;
  for (char c : rest) {
    if (!IsDigit(c)) return false;
  }
  return true;
}

absl::Status Invalid(std::string_view what) {
  return absl::InvalidArgumentError(StrCat("insight: ", what));
}

}  // namespace

absl::Status CheckValues(std::string_view values) {
  constexpr size_t kMaxValues = kMaxInsightBytes - 2048;
  if (values.size() > kMaxValues) {
    return absl::InvalidArgumentError(StrCat("an insight's values are at most ", kMaxValues,
                                             " bytes of JSON; these are ", values.size()));
  }
  simdjson::dom::parser parser;
  simdjson::dom::element e;
  if (parser.parse(values.data(), values.size()).get(e) != simdjson::SUCCESS) {
    return absl::InvalidArgumentError("an insight's values are not valid JSON");
  }
  if (!e.is_object()) {
    return absl::InvalidArgumentError(
        "an insight's values are a JSON object ({\"count\": 3}), not an array or a single value");
  }
  return absl::OkStatus();
}

std::string Encode(const Insight& in) {
  std::string out;
  out.reserve(256 + in.values.size());
  const auto field = [&out](std::string_view name, std::string_view value) {
    out += out.empty() ? '{' : ',';
    AppendJsonString(out, name);
    out += ':';
    AppendJsonString(out, value);
  };
  field("id", in.id);
  field("topic", in.topic);
  field("node", in.node);
  field("zone", in.zone);
  field("model", in.model);
  field("version", in.version);
  field("time", absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::FromUnixMillis(in.time_ms),
                                 absl::UTCTimeZone()));
  StrAppend(&out, ",\"time_ms\":", in.time_ms, ",\"seq\":", in.seq);
  field("trace", in.trace);
  out += ",\"values\":";
  out += in.values;
  out += '}';
  return out;
}

absl::StatusOr<Insight> Decode(std::string_view document) {
  if (document.size() > kMaxInsightBytes) {
    return Invalid(StrCat("a document is at most ", kMaxInsightBytes, " bytes; this one has ",
                          document.size()));
  }
  simdjson::dom::parser parser;
  simdjson::dom::object o;
  if (parser.parse(document.data(), document.size()).get(o) != simdjson::SUCCESS) {
    return Invalid("not a JSON object");
  }
  Insight in;
  const auto text = [&o](const char* name, std::string* to, bool required) -> absl::Status {
    std::string_view v;
    const simdjson::error_code got = o[name].get(v);
    if (got == simdjson::NO_SUCH_FIELD && !required) return absl::OkStatus();
    if (got != simdjson::SUCCESS) return Invalid(StrCat(name, " is missing or not a string"));
    to->assign(v);
    return absl::OkStatus();
  };
  for (auto [name, to, required] : {std::tuple{"id", &in.id, true},
                                    {"topic", &in.topic, true},
                                    {"node", &in.node, true},
                                    {"zone", &in.zone, false},
                                    {"model", &in.model, false},
                                    {"version", &in.version, false},
                                    {"trace", &in.trace, false}}) {
    if (absl::Status s = text(name, to, required); !s.ok()) return s;
  }
  int64_t time_ms = 0;
  uint64_t seq = 0;
  if (o["time_ms"].get(time_ms) != simdjson::SUCCESS || time_ms < 0) {
    return Invalid("time_ms is missing or not a whole number of milliseconds since 1970");
  }
  if (o["seq"].get(seq) != simdjson::SUCCESS || seq == 0) {
    return Invalid("seq is missing or not a positive whole number");
  }
  in.time_ms = time_ms;
  in.seq = seq;
  simdjson::dom::object values;
  if (o["values"].get(values) != simdjson::SUCCESS) {
    return Invalid("values is missing or not a JSON object");
  }
  in.values = simdjson::minify(values);
  if (absl::Status s = CheckTopic(in.topic); !s.ok()) return Invalid(MessageOf(s));
  if (absl::Status s = CheckName(in.node, "node", false); !s.ok()) return s;
  for (auto [value, name] :
       {std::pair{&in.zone, "zone"}, {&in.model, "model"}, {&in.version, "version"}}) {
    if (absl::Status s = CheckName(*value, name, true); !s.ok()) return s;
  }
  if (!IdOf(in.id, in.node)) {
    return Invalid("id is not <node>.<boot, hex>.<12 digits> of the insight's node");
  }
  if (!in.trace.empty()) {
    bool hex = in.trace.size() == 32;
    for (char c : in.trace) hex = hex && IsLowerHex(c);
    if (!hex) return Invalid("trace is not 32 lower-case hex digits");
  }
  return in;
}

void AppendToBatch(std::string& batch, std::string_view document) {
  batch.append(document);
  batch.push_back('\n');
}

absl::StatusOr<std::vector<Insight>> DecodeBatch(std::string_view batch, std::string_view sender) {
  if (batch.size() > kMaxBatchBytes) {
    return absl::OutOfRangeError(
        StrCat("a batch is at most ", kMaxBatchBytes, " bytes; this one has ", batch.size()));
  }
  if (!batch.empty() && batch.back() != '\n') {
    return absl::InvalidArgumentError("a batch ends with a newline");
  }
  std::vector<Insight> out;
  size_t line = 0;
  while (!batch.empty()) {
    const size_t end = batch.find('\n');
    if (++line > kMaxBatchInsights) {
      return absl::OutOfRangeError(
          StrCat("a batch holds at most ", kMaxBatchInsights, " insights"));
    }
    absl::StatusOr<Insight> one = Decode(batch.substr(0, end));
    if (!one.ok()) {
      return absl::InvalidArgumentError(StrCat("line ", line, ": ", MessageOf(one.status())));
    }
    if (one->node != sender) {
      // The sender's name is the caller's; quoted only in part, like any name.
      return absl::InvalidArgumentError(StrCat("line ", line, ": an insight of ", one->node,
                                               ", not of the member that sent it (",
                                               sender.substr(0, kMaxNameBytes), ")"));
    }
    out.push_back(*std::move(one));
    batch.remove_prefix(end + 1);
  }
  return out;
}

InsightIds::InsightIds(std::string node, int64_t boot_s, int64_t last_boot_s)
    : boot_s_(boot_s > last_boot_s ? boot_s : last_boot_s + 1) {
  char hex[24];
  std::snprintf(hex, sizeof hex, "%llx", static_cast<unsigned long long>(boot_s_));
  prefix_ = StrCat(node, ".", hex, ".");
}

std::string InsightIds::Next() {
  char digits[16];
  std::snprintf(digits, sizeof digits, "%012llu", static_cast<unsigned long long>(++counter_));
  return StrCat(prefix_, digits);
}

}  // namespace hivemesh::bus
