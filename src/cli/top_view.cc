#include "cli/top_view.h"

#include <simdjson.h>

#include <algorithm>
#include <cmath>

#include "base/strings.h"
#include "cli/table.h"
#include "codec/json_writer.h"

namespace hivemesh::cli {
namespace {

using simdjson::dom::array;
using simdjson::dom::element;

bool GetInt(element e, const char* key, int64_t& out) {
  if (e[key].get(out) == simdjson::SUCCESS) return true;
  uint64_t u;
  if (e[key].get(u) == simdjson::SUCCESS) {
    out = static_cast<int64_t>(u);
    return true;
  }
  return false;
}

void OptionalDouble(JsonWriter& w, const char* key, std::optional<double> v) {
  w.Key(key);
  if (v) {
    w.Double(std::round(*v * 100) / 100);
  } else {
    w.Raw("null");
  }
}

void OptionalUint(JsonWriter& w, const char* key, std::optional<uint64_t> v) {
  w.Key(key);
  if (v) {
    w.Uint(*v);
  } else {
    w.Raw("null");
  }
}

std::optional<double> OptionalRate(std::optional<uint64_t> before, std::optional<uint64_t> after,
                                   std::chrono::nanoseconds elapsed) {
  if (!before || !after) return std::nullopt;
  return RatePerSecond(*before, *after, elapsed);
}

}  // namespace

absl::StatusOr<NodeCounters> ParseModelStats(std::string_view json) {
  simdjson::dom::parser parser;
  element doc;
  array list;
  if (parser.parse(json.data(), json.size()).get(doc) != simdjson::SUCCESS ||
      doc["model_stats"].get(list) != simdjson::SUCCESS) {
    return absl::InternalError("the node's model statistics cannot be read");
  }
  NodeCounters c;
  for (element m : list) {
    int64_t v = 0;
    if (GetInt(m, "inference_count", v) && v > 0) c.inferences += static_cast<uint64_t>(v);
    if (GetInt(m, "queue_depth", v)) c.queued += std::max<int64_t>(0, v);
    if (GetInt(m, "in_flight", v)) c.running += std::max<int64_t>(0, v);
  }
  return c;
}

absl::Status ParseRoutes(std::string_view json, NodeCounters& counters) {
  simdjson::dom::parser parser;
  element doc;
  int64_t local = 0, forwarded = 0;
  if (parser.parse(json.data(), json.size()).get(doc) != simdjson::SUCCESS ||
      !GetInt(doc, "local", local) || !GetInt(doc, "forwarded", forwarded)) {
    return absl::InternalError("the node's route statistics cannot be read");
  }
  counters.local = static_cast<uint64_t>(std::max<int64_t>(0, local));
  counters.forwarded = static_cast<uint64_t>(std::max<int64_t>(0, forwarded));
  return absl::OkStatus();
}

std::optional<double> RatePerSecond(uint64_t before, uint64_t after,
                                    std::chrono::nanoseconds elapsed) {
  if (elapsed.count() <= 0 || after < before) return std::nullopt;
  return static_cast<double>(after - before) * 1e9 / static_cast<double>(elapsed.count());
}

std::vector<TopRow> TopRows(const std::vector<NodeSample>& now,
                            const std::map<std::string, NodeSample>& before) {
  std::vector<TopRow> rows;
  for (const NodeSample& s : now) {
    TopRow r;
    const Member& m = s.member;
    r.name = m.name;
    r.state = m.state;
    r.draining = m.draining;
    r.zone = m.label("zone");
    r.api_address = m.api_address;
    r.error = s.error;
    for (const ModelAdvert& a : m.models) r.models.push_back(a.name);
    if (s.counters) {
      r.queued = s.counters->queued;
      r.running = s.counters->running;
      r.local = s.counters->local;
      r.forwarded = s.counters->forwarded;
      auto prev = before.find(m.name);
      if (prev != before.end() && prev->second.counters) {
        const NodeCounters& p = *prev->second.counters;
        const std::chrono::nanoseconds elapsed = s.at - prev->second.at;
        r.requests_per_s = RatePerSecond(p.inferences, s.counters->inferences, elapsed);
        r.local_per_s = OptionalRate(p.local, s.counters->local, elapsed);
        r.forwarded_per_s = OptionalRate(p.forwarded, s.counters->forwarded, elapsed);
      }
    } else {
      for (const ModelLoad& l : m.load) {
        r.queued += l.queue_depth;
        r.running += l.in_flight;
      }
    }
    rows.push_back(std::move(r));
  }
  std::sort(rows.begin(), rows.end(),
            [](const TopRow& a, const TopRow& b) { return a.name < b.name; });
  return rows;
}

std::string FormatTopTable(const std::vector<TopRow>& rows) {
  std::vector<Row> table = {
      {"NAME", "STATE", "ZONE", "MODELS", "QUEUED", "RUNNING", "REQ/S", "LOCAL", "FWD"}};
  std::vector<std::string> notes;
  for (const TopRow& r : rows) {
    auto count = [](std::optional<uint64_t> v) { return v ? StrCat(*v) : std::string("-"); };
    table.push_back({r.name, r.draining ? StrCat(r.state, " (draining)") : r.state,
                     r.zone.empty() ? "-" : r.zone, StrCat(r.models.size()), StrCat(r.queued),
                     StrCat(r.running), FormatRate(r.requests_per_s), count(r.local),
                     count(r.forwarded)});
    if (!r.error.empty()) notes.push_back(StrCat(r.name, ": ", r.error));
  }
  std::string out = FormatTable(table, {3, 4, 5, 6, 7, 8});
  for (const std::string& n : notes) StrAppend(&out, "  ! ", n, "\n");
  return out;
}

std::string TopJson(const std::vector<TopRow>& rows, int64_t unix_time_ms) {
  std::string out;
  JsonWriter w(out);
  w.BeginObject().Key("time_ms").Int(unix_time_ms).Key("nodes").BeginArray();
  for (const TopRow& r : rows) {
    w.BeginObject();
    w.Key("name").String(r.name);
    w.Key("state").String(r.state);
    w.Key("draining").Bool(r.draining);
    w.Key("zone").String(r.zone);
    w.Key("api_address").String(r.api_address);
    w.Key("models").BeginArray();
    for (const std::string& m : r.models) w.String(m);
    w.EndArray();
    w.Key("queued").Int(r.queued);
    w.Key("running").Int(r.running);
    OptionalDouble(w, "requests_per_s", r.requests_per_s);
    OptionalUint(w, "local", r.local);
    OptionalUint(w, "forwarded", r.forwarded);
    OptionalDouble(w, "local_per_s", r.local_per_s);
    OptionalDouble(w, "forwarded_per_s", r.forwarded_per_s);
    if (!r.error.empty()) w.Key("error").String(r.error);
    w.EndObject();
  }
  w.EndArray().EndObject();
  return out;
}

}  // namespace hivemesh::cli
