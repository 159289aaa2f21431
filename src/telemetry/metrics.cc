#include "telemetry/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "base/strings.h"
#include "telemetry/prometheus_text.h"

namespace hivemesh::telemetry {
namespace {

[[noreturn]] void Misuse(std::string_view metric, std::string_view what) {
  std::fprintf(stderr, "telemetry: metric '%.*s': %.*s\n", static_cast<int>(metric.size()),
               metric.data(), static_cast<int>(what.size()), what.data());
  std::abort();
}

// One sample line: name+suffix{labels...[,le="..."]} value
template <typename Values>
void AppendSample(std::string& out, const FamilyBase& f, std::string_view suffix,
                  const Values& values, const std::string* le, double value) {
  out += f.name();
  out += suffix;
  const std::vector<std::string>& names = f.label_names();
  if (!names.empty() || le != nullptr) {
    out += '{';
    size_t i = 0;
    for (std::string_view v : values) {
      if (i > 0) out += ',';
      out += names[i++];
      out += "=\"";
      AppendEscapedLabelValue(out, BoundedLabelValue(v));
      out += '"';
    }
    if (le != nullptr) {
      if (i > 0) out += ',';
      out += "le=\"";
      out += *le;
      out += '"';
    }
    out += '}';
  }
  out += ' ';
  AppendValue(out, value);
  out += '\n';
}

template <typename Values>
void AppendHistogram(std::string& out, const FamilyBase& f, const Values& values,
                     const HistogramSnapshot& h) {
  std::string le;
  for (size_t b = 0; b < h.bounds.size(); ++b) {
    le.clear();
    AppendValue(le, h.bounds[b]);
    AppendSample(out, f, "_bucket", values, &le,
                 static_cast<double>(b < h.cumulative.size() ? h.cumulative[b] : h.count));
  }
  le = "+Inf";
  AppendSample(out, f, "_bucket", values, &le, static_cast<double>(h.count));
  AppendSample(out, f, "_sum", values, nullptr, h.sum);
  AppendSample(out, f, "_count", values, nullptr, static_cast<double>(h.count));
}

void CheckBounds(std::string_view name, const std::vector<double>& bounds) {
  for (size_t i = 0; i < bounds.size(); ++i) {
    if (!std::isfinite(bounds[i])) Misuse(name, "bucket bounds must be finite");
    if (i > 0 && !(bounds[i - 1] < bounds[i])) {
      Misuse(name, "bucket bounds must be strictly increasing");
    }
  }
}

// A metric that a collector renders.
class CollectedFamily final : public FamilyBase {
 public:
  using FamilyBase::FamilyBase;
  void RenderSamples(std::string&) const override {}
};

void RenderValue(std::string& out, const FamilyBase& f, const std::vector<std::string>& values,
                 const Counter& c) {
  AppendSample(out, f, "", values, nullptr, static_cast<double>(c.Value()));
}
void RenderValue(std::string& out, const FamilyBase& f, const std::vector<std::string>& values,
                 const Gauge& g) {
  AppendSample(out, f, "", values, nullptr, g.Value());
}
void RenderValue(std::string& out, const FamilyBase& f, const std::vector<std::string>& values,
                 const Histogram& h) {
  AppendHistogram(out, f, values, h.Snapshot());
}

}  // namespace

std::string_view BoundedLabelValue(std::string_view value) {
  if (value.size() <= kMaxLabelValueBytes) return value;
  size_t n = kMaxLabelValueBytes;
  // Back off continuation bytes (10xxxxxx) so that no character is split.
  while (n > 0 && (static_cast<unsigned char>(value[n]) & 0xC0) == 0x80) --n;
  return value.substr(0, n);
}

std::string_view MetricTypeName(MetricType type) {
  switch (type) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
  }
  return "untyped";
}

Histogram::Histogram(std::shared_ptr<const std::vector<double>> bounds)
    : bounds_(std::move(bounds)),
      counts_(std::make_unique<std::atomic<uint64_t>[]>(bounds_->size() + 1)) {}

void Histogram::Observe(double value) {
  if (std::isnan(value)) return;
  const std::vector<double>& b = *bounds_;
  const size_t bucket =
      static_cast<size_t>(std::lower_bound(b.begin(), b.end(), value) - b.begin());
  counts_[bucket].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
}

HistogramSnapshot Histogram::Snapshot() const {
  HistogramSnapshot s;
  s.bounds = *bounds_;
  s.cumulative.reserve(bounds_->size());
  uint64_t running = 0;
  for (size_t i = 0; i < bounds_->size(); ++i) {
    running += counts_[i].load(std::memory_order_relaxed);
    s.cumulative.push_back(running);
  }
  s.count = running + counts_[bounds_->size()].load(std::memory_order_relaxed);
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

std::vector<double> LatencyBuckets() {
  return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
          0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};
}

std::vector<double> ExponentialBuckets(double start, double factor, int count) {
  std::vector<double> out;
  double v = start;
  for (int i = 0; i < count; ++i, v *= factor) out.push_back(v);
  return out;
}

template <typename M>
M& Family<M>::Find(std::initializer_list<std::string_view> values, bool known) {
  if (values.size() != label_names().size()) {
    Misuse(name(),
           StrCat("given ", values.size(), " label values for ", label_names().size(), " labels"));
  }
  // The key is built in a buffer that keeps its capacity, so a lookup allocates nothing.
  thread_local std::string key;
  key.clear();
  for (std::string_view v : values) {
    key.append(BoundedLabelValue(v));
    key += '\xff';
  }
  {
    absl::ReaderMutexLock lock(&mu_);
    auto it = series_.find(std::string_view(key));
    if (it != series_.end()) return *it->second.metric;
  }
  absl::MutexLock lock(&mu_);
  auto it = series_.find(std::string_view(key));
  if (it != series_.end()) return *it->second.metric;
  std::vector<std::string> copy;
  copy.reserve(values.size());
  for (std::string_view v : values) copy.emplace_back(BoundedLabelValue(v));
  if (!known && capped_series_ >= kMaxSeriesPerFamily) {
    key.clear();
    for (std::string& v : copy) {
      v = std::string(kOverflowLabelValue);
      key.append(v);
      key += '\xff';
    }
    it = series_.find(std::string_view(key));
    if (it != series_.end()) return *it->second.metric;
  }
  if (!known) ++capped_series_;
  Series& s = series_[key];
  s.values = std::move(copy);
  s.metric = make_();
  return *s.metric;
}

template <typename M>
void Family<M>::RenderSamples(std::string& out) const {
  absl::ReaderMutexLock lock(&mu_);
  for (const auto& [_, s] : series_) RenderValue(out, *this, s.values, *s.metric);
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

void SampleSink::Add(std::initializer_list<std::string_view> values, double value) {
  if (values.size() != family_.label_names().size()) {
    Misuse(family_.name(), StrCat("a collector gave ", values.size(), " label values for ",
                                  family_.label_names().size(), " labels"));
  }
  if (family_.type() == MetricType::kHistogram) {
    Misuse(family_.name(), "a histogram's collector must use AddHistogram");
  }
  AppendSample(out_, family_, "", values, nullptr, value);
}

void SampleSink::AddHistogram(std::initializer_list<std::string_view> values,
                              const HistogramSnapshot& h) {
  if (values.size() != family_.label_names().size()) {
    Misuse(family_.name(), StrCat("a collector gave ", values.size(), " label values for ",
                                  family_.label_names().size(), " labels"));
  }
  if (family_.type() != MetricType::kHistogram) Misuse(family_.name(), "not a histogram");
  AppendHistogram(out_, family_, values, h);
}

FamilyBase& Registry::Add(std::unique_ptr<FamilyBase> family, Collector collect) {
  const std::string& name = family->name();
  if (!IsValidMetricName(name)) Misuse(name, "not a valid metric name");
  if (family->help().empty()) Misuse(name, "help text is required");
  const bool total = name.ends_with("_total");
  if (family->type() == MetricType::kCounter && !total) Misuse(name, "a counter ends in _total");
  if (family->type() != MetricType::kCounter && total) Misuse(name, "only counters end in _total");
  for (const std::string& l : family->label_names()) {
    if (!IsValidLabelName(l)) Misuse(name, StrCat("'", l, "' is not a valid label name"));
    if (l == "le" && family->type() == MetricType::kHistogram) {
      Misuse(name, "a histogram's labels cannot include le");
    }
    if (std::count(family->label_names().begin(), family->label_names().end(), l) > 1) {
      Misuse(name, StrCat("label '", l, "' is given twice"));
    }
  }
  absl::MutexLock lock(&mu_);
  for (const Entry& e : entries_) {
    if (e.family->name() == name) Misuse(name, "declared twice");
  }
  entries_.push_back(Entry{std::move(family), std::move(collect)});
  return *entries_.back().family;
}

Family<Counter>& Registry::AddCounterFamily(std::string name, std::string help,
                                            std::vector<std::string> labels) {
  return static_cast<Family<Counter>&>(
      Add(std::make_unique<Family<Counter>>(std::move(name), std::move(help), MetricType::kCounter,
                                            std::move(labels),
                                            [] { return std::make_unique<Counter>(); }),
          nullptr));
}

Family<Gauge>& Registry::AddGaugeFamily(std::string name, std::string help,
                                        std::vector<std::string> labels) {
  return static_cast<Family<Gauge>&>(Add(
      std::make_unique<Family<Gauge>>(std::move(name), std::move(help), MetricType::kGauge,
                                      std::move(labels), [] { return std::make_unique<Gauge>(); }),
      nullptr));
}

Family<Histogram>& Registry::AddHistogramFamily(std::string name, std::string help,
                                                std::vector<std::string> labels,
                                                std::vector<double> bounds) {
  CheckBounds(name, bounds);
  auto shared = std::make_shared<const std::vector<double>>(std::move(bounds));
  return static_cast<Family<Histogram>&>(Add(
      std::make_unique<Family<Histogram>>(std::move(name), std::move(help), MetricType::kHistogram,
                                          std::move(labels),
                                          [shared] { return std::make_unique<Histogram>(shared); }),
      nullptr));
}

Counter& Registry::AddCounter(std::string name, std::string help) {
  return AddCounterFamily(std::move(name), std::move(help), {}).WithLabels({});
}

Gauge& Registry::AddGauge(std::string name, std::string help) {
  return AddGaugeFamily(std::move(name), std::move(help), {}).WithLabels({});
}

Histogram& Registry::AddHistogram(std::string name, std::string help, std::vector<double> bounds) {
  return AddHistogramFamily(std::move(name), std::move(help), {}, std::move(bounds)).WithLabels({});
}

void Registry::AddCollector(std::string name, std::string help, MetricType type,
                            std::vector<std::string> labels, Collector collect) {
  if (!collect) Misuse(name, "a collector is required");
  Add(std::make_unique<CollectedFamily>(std::move(name), std::move(help), type, std::move(labels)),
      std::move(collect));
}

std::string Registry::Render() const {
  std::string out;
  absl::MutexLock lock(&mu_);
  for (const Entry& e : entries_) {
    const FamilyBase& f = *e.family;
    out += "# HELP ";
    out += f.name();
    out += ' ';
    AppendEscapedHelp(out, f.help());
    out += "\n# TYPE ";
    out += f.name();
    out += ' ';
    out += MetricTypeName(f.type());
    out += '\n';
    if (e.collect) {
      SampleSink sink(out, f);
      e.collect(sink);
    } else {
      f.RenderSamples(out);
    }
  }
  return out;
}

}  // namespace hivemesh::telemetry
