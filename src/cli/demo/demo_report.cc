#include "cli/demo/demo_report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "absl/synchronization/mutex.h"
#include "base/strings.h"

namespace hivemesh::demo {
namespace {

// Nearest-rank percentile of `v` (sorted in place). 0 when empty.
double Percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t rank = static_cast<size_t>(std::ceil(p * static_cast<double>(v.size())));
  return v[std::clamp<size_t>(rank, 1, v.size()) - 1];
}

std::string Ms(double ms) {
  char buf[32];
  std::snprintf(buf, sizeof buf, ms < 10 ? "%.1f" : "%.0f", ms);
  return buf;
}

}  // namespace

void Recorder::Add(Outcome o) {
  absl::MutexLock lock(&mu_);
  outcomes_.push_back(std::move(o));
}

std::vector<Outcome> Recorder::Snapshot() const {
  absl::MutexLock lock(&mu_);
  return outcomes_;
}

Totals Summarize(const std::vector<Outcome>& outcomes) {
  Totals t;
  std::vector<double> latencies;
  latencies.reserve(outcomes.size());
  for (const Outcome& o : outcomes) {
    ++t.requests;
    if (!o.ok()) {
      ++t.failed;
      continue;
    }
    latencies.push_back(o.latency_ms);
    if (o.sent_to != o.node) ++t.failover;
    if (o.served_by == o.sent_to) {
      ++t.local;
    } else {
      ++t.offloaded;
    }
  }
  t.p50_ms = Percentile(latencies, 0.50);
  t.p99_ms = Percentile(latencies, 0.99);
  return t;
}

std::string Thousands(size_t n) {
  std::string digits = std::to_string(n), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out.push_back(',');
    out.push_back(digits[i]);
  }
  return out;
}

std::string LiveLine(const std::vector<Outcome>& outcomes, double elapsed_s, double duration_s,
                     const std::string& note) {
  const Totals t = Summarize(outcomes);
  char head[48];
  std::snprintf(head, sizeof head, "[%3.0fs/%.0fs] ", elapsed_s, duration_s);
  std::string line = StrCat(head, Thousands(t.requests), " requests | local ", Thousands(t.local),
                            " | offloaded ", Thousands(t.offloaded));
  if (t.failover > 0) StrAppend(&line, " | client failover ", Thousands(t.failover));
  StrAppend(&line, " | failed ", Thousands(t.failed), " | p50 ", Ms(t.p50_ms), " ms | p99 ",
            Ms(t.p99_ms), " ms");
  if (!note.empty()) StrAppend(&line, "  ", note);
  return line;
}

std::vector<NodeModelRow> NodeModelTable(const std::vector<Outcome>& outcomes) {
  struct Acc {
    NodeModelRow row;
    std::vector<double> latencies;
  };
  std::map<std::pair<std::string, std::string>, Acc> acc;
  auto at = [&](const std::string& node, const std::string& model) -> Acc& {
    Acc& a = acc[{node, model}];
    a.row.node = node;
    a.row.model = model;
    return a;
  };
  for (const Outcome& o : outcomes) {
    Acc& mine = at(o.sent_to, o.model);
    ++mine.row.requests;
    if (!o.ok()) {
      ++mine.row.errors;
      continue;
    }
    mine.latencies.push_back(o.latency_ms);
    if (o.served_by == o.sent_to) {
      ++mine.row.local;
    } else {
      ++mine.row.offloaded_out;
      ++at(o.served_by, o.model).row.offloaded_in;
    }
  }
  std::vector<NodeModelRow> rows;
  for (auto& [_, a] : acc) {
    a.row.p50_ms = Percentile(a.latencies, 0.50);
    a.row.p99_ms = Percentile(a.latencies, 0.99);
    rows.push_back(a.row);
  }
  return rows;
}

size_t FramesOutsideZone(const std::vector<Outcome>& outcomes,
                         const std::map<std::string, std::string>& zones) {
  auto zone = [&](const std::string& node) {
    auto it = zones.find(node);
    return it == zones.end() ? std::string() : it->second;
  };
  size_t n = 0;
  for (const Outcome& o : outcomes) {
    if (o.kind == ClientKind::kCamera && o.ok() && zone(o.served_by) != zone(o.node)) ++n;
  }
  return n;
}

std::map<std::string, std::vector<PeopleBucket>> PeopleOverTime(
    const std::vector<Outcome>& outcomes, const std::string& model, double bucket_s,
    double duration_s) {
  std::map<std::string, std::vector<PeopleBucket>> out;
  const size_t buckets = static_cast<size_t>(std::max(1.0, std::ceil(duration_s / bucket_s)));
  std::map<std::string, std::vector<double>> sums;
  for (const Outcome& o : outcomes) {
    if (o.kind != ClientKind::kCamera || o.model != model || !o.ok() || o.count < 0) continue;
    auto& v = out[o.client];
    if (v.empty()) {
      v.resize(buckets);
      for (size_t i = 0; i < buckets; ++i) v[i].start_s = static_cast<double>(i) * bucket_s;
      sums[o.client].assign(buckets, 0);
    }
    const size_t b = std::min(buckets - 1, static_cast<size_t>(std::max(0.0, o.t_s / bucket_s)));
    ++v[b].frames;
    v[b].max = std::max(v[b].max, o.count);
    sums[o.client][b] += o.count;
  }
  for (auto& [client, v] : out) {
    for (size_t i = 0; i < v.size(); ++i) {
      v[i].mean = v[i].frames ? sums[client][i] / static_cast<double>(v[i].frames) : 0;
    }
  }
  return out;
}

std::map<std::string, AnomalyScore> Anomalies(const std::vector<Outcome>& outcomes) {
  std::map<std::string, AnomalyScore> out;
  for (const Outcome& o : outcomes) {
    if (o.kind != ClientKind::kSensor || !o.ok() || o.p_fault < 0) continue;
    AnomalyScore& s = out[o.client];
    const bool flagged = o.p_fault > 0.5;
    ++s.windows;
    s.injected += o.injected;
    s.flagged += flagged;
    s.caught += o.injected && flagged;
    s.false_alarms += !o.injected && flagged;
  }
  return out;
}

namespace {

bool PerRequest(const ReceivedInsight& r) { return !r.trace.empty(); }

// The distinct insights received, by id (the first of duplicates).
std::vector<const ReceivedInsight*> Distinct(const std::vector<ReceivedInsight>& received,
                                             size_t* duplicates) {
  std::set<std::string_view> seen;
  std::vector<const ReceivedInsight*> out;
  for (const ReceivedInsight& r : received) {
    if (seen.insert(r.id).second) {
      out.push_back(&r);
    } else if (duplicates != nullptr) {
      ++*duplicates;
    }
  }
  return out;
}

// Per-request insights by (trace, model).
std::map<std::pair<std::string, std::string>, const ReceivedInsight*> ByTrace(
    const std::vector<const ReceivedInsight*>& distinct) {
  std::map<std::pair<std::string, std::string>, const ReceivedInsight*> out;
  for (const ReceivedInsight* r : distinct) {
    if (PerRequest(*r)) out.emplace(std::make_pair(r->trace, r->model), r);
  }
  return out;
}

bool Counted(const Outcome& o) {
  return o.ok() && (o.model == "people-detector" || o.model == "face-detector") && o.count >= 0;
}

}  // namespace

size_t SinkSummary::missing_total() const {
  size_t n = 0;
  for (const auto& [_, k] : missing) n += k;
  return n;
}

SinkSummary Summarize(const std::vector<Outcome>& outcomes,
                      const std::vector<ReceivedInsight>& received) {
  SinkSummary s;
  s.documents = received.size();
  const std::vector<const ReceivedInsight*> distinct = Distinct(received, &s.duplicates);
  std::set<std::pair<std::string_view, std::string_view>> requests;
  for (const ReceivedInsight* r : distinct) {
    if (r->model.empty()) continue;  // a probe, or a client's own
    s.from.insert(r->node);
    if (!PerRequest(*r)) {
      ++s.windows;
    } else if (!requests.insert({r->trace, r->model}).second) {
      ++s.twice;
    } else if (r->model == "people-detector") {
      ++s.people;
    } else if (r->model == "face-detector") {
      ++s.faces;
    } else if (r->model == "vibration-anomaly") {
      ++s.alerts;
    }
  }
  const auto by_trace = ByTrace(distinct);
  for (const Outcome& o : outcomes) {
    const bool expected =
        Counted(o) || (o.ok() && o.model == "vibration-anomaly" && o.p_fault > 0.5);
    if (expected && !by_trace.contains({o.trace, o.model})) ++s.missing[o.served_by];
  }
  return s;
}

std::vector<Outcome> ResultsFromInsights(const std::vector<Outcome>& outcomes,
                                         const std::vector<ReceivedInsight>& received) {
  const auto by_trace = ByTrace(Distinct(received, nullptr));
  std::vector<Outcome> out = outcomes;
  for (Outcome& o : out) {
    auto it = by_trace.find({o.trace, o.model});
    if (o.model == "vibration-anomaly") {
      if (o.ok()) o.p_fault = it != by_trace.end() ? 1 : 0;
      continue;
    }
    std::optional<double> count;
    if (it != by_trace.end()) count = ValueOf(*it->second, "count");
    o.count = count ? static_cast<int>(*count) : -1;
  }
  return out;
}

}  // namespace hivemesh::demo
