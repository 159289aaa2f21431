// Metrics registry: counters, gauges and histograms with labels, rendered in the Prometheus text
// exposition format 0.0.4 (telemetry/prometheus_text.h) for `GET /metrics`.
//
// A component declares its metrics once, with help text, when it is wired (house style #9).
// A metric is fed in one of two ways:
//  - Updated where the event happens: a Family's WithLabels() finds (or makes, on first use) the
//    series for a set of label values; the Counter, Gauge or Histogram it returns lives as long
//    as the registry, so a caller may keep the reference instead of looking it up again.
//  - Collected at scrape time: a collector callback reads statistics that exist anyway (model
//    stats, gossip stats, forwarder stats) and emits their current values, so nothing is counted
//    twice and the hot path pays nothing.
//
// Thread safety: every method may be called from any thread. Updates of a Counter, Gauge or
// Histogram are relaxed atomics. WithLabels() takes its family's own reader lock (its writer
// lock once per new label set); there is no registry-wide lock on the update path. Registration
// and Render() take the registry's mutex; collectors run under it and must not register.
//
// Misuse by the program (an invalid or duplicate name, a counter without `_total`, the wrong
// number of label values) is a bug, not an input error: it aborts with a message naming the
// metric, at start-up where metrics are declared.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace hivemesh::telemetry {

enum class MetricType { kCounter, kGauge, kHistogram };
std::string_view MetricTypeName(MetricType type);  // "counter", "gauge", "histogram"

// A family holds at most this many label sets; further ones share a single series whose label
// values are all kOverflowLabelValue, so a flood of distinct values (say, model names made up by
// clients) cannot grow memory without bound. Label sets the program vouches for
// (WithKnownLabels: the models a node serves) are always kept and not counted against it.
inline constexpr size_t kMaxSeriesPerFamily = 1000;
inline constexpr std::string_view kOverflowLabelValue = "_overflow";
// Label values longer than this many bytes are cut to it (at a UTF-8 character boundary), in
// series made where events happen and in collected samples alike: a value a client or a peer
// chose (a model or node name) cannot make /metrics large.
inline constexpr size_t kMaxLabelValueBytes = 128;

// `value` cut to at most kMaxLabelValueBytes without splitting a UTF-8 character.
std::string_view BoundedLabelValue(std::string_view value);

// A monotonically increasing count.
class Counter {
 public:
  void Increment(uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

// A value that goes up and down.
class Gauge {
 public:
  void Set(double v) { value_.store(v, std::memory_order_relaxed); }
  void Add(double d) { value_.fetch_add(d, std::memory_order_relaxed); }
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// A histogram as the text format shows it.
struct HistogramSnapshot {
  std::vector<double> bounds;        // finite upper bounds ("le"), increasing
  std::vector<uint64_t> cumulative;  // per bound: observations <= that bound
  uint64_t count = 0;                // every observation: the le="+Inf" bucket and _count
  double sum = 0;
};

// Observations counted in fixed buckets (an observation v falls in the first bucket with
// v <= bound; above every bound, only in +Inf).
class Histogram {
 public:
  // REQUIRES: `bounds` finite and strictly increasing.
  explicit Histogram(std::shared_ptr<const std::vector<double>> bounds);
  void Observe(double value);  // NaN is ignored
  HistogramSnapshot Snapshot() const;

 private:
  const std::shared_ptr<const std::vector<double>> bounds_;
  // One per bound, then one for observations above every bound. Not cumulative.
  const std::unique_ptr<std::atomic<uint64_t>[]> counts_;
  std::atomic<double> sum_{0};
};

// Request durations in seconds, 100 µs to 10 s: from a 1 µs MLP behind HTTP to a 130 ms HOG
// frame queued behind others.
std::vector<double> LatencyBuckets();
// start, start*factor, ... (`count` bounds). REQUIRES: start > 0, factor > 1, count >= 1.
std::vector<double> ExponentialBuckets(double start, double factor, int count);

// What every family shares: its name, help, type and label names, and how it renders.
class FamilyBase {
 public:
  FamilyBase(std::string name, std::string help, MetricType type, std::vector<std::string> labels)
      : name_(std::move(name)), help_(std::move(help)), type_(type), labels_(std::move(labels)) {}
  virtual ~FamilyBase() = default;
  const std::string& name() const { return name_; }
  const std::string& help() const { return help_; }
  MetricType type() const { return type_; }
  const std::vector<std::string>& label_names() const { return labels_; }
  // Appends the samples (not the HELP and TYPE lines).
  virtual void RenderSamples(std::string& out) const = 0;

 private:
  const std::string name_, help_;
  const MetricType type_;
  const std::vector<std::string> labels_;
};

// The series of one metric, by label values. M is Counter, Gauge or Histogram.
template <typename M>
class Family final : public FamilyBase {
 public:
  Family(std::string name, std::string help, MetricType type, std::vector<std::string> labels,
         std::function<std::unique_ptr<M>()> make)
      : FamilyBase(std::move(name), std::move(help), type, std::move(labels)),
        make_(std::move(make)) {}

  // The series with these label values, in the order the family declared its label names.
  // REQUIRES: values.size() == label_names().size().
  M& WithLabels(std::initializer_list<std::string_view> values) { return Find(values, false); }
  // The same for values the program vouches for, bounded in number by configuration (the models
  // this node serves): their series is made even when the family is full.
  M& WithKnownLabels(std::initializer_list<std::string_view> values) { return Find(values, true); }
  void RenderSamples(std::string& out) const override;

 private:
  M& Find(std::initializer_list<std::string_view> values, bool known);

  struct Series {
    std::vector<std::string> values;
    std::unique_ptr<M> metric;
  };
  const std::function<std::unique_ptr<M>()> make_;
  mutable absl::Mutex mu_;
  // By the label values joined with '\xff' (a byte that UTF-8 text never holds).
  std::map<std::string, Series, std::less<>> series_ ABSL_GUARDED_BY(mu_);
  // How many series WithLabels made: those kMaxSeriesPerFamily bounds.
  size_t capped_series_ ABSL_GUARDED_BY(mu_) = 0;
};

extern template class Family<Counter>;
extern template class Family<Gauge>;
extern template class Family<Histogram>;

// What a collector emits into at scrape time: samples of the one metric it was registered for.
class SampleSink {
 public:
  // REQUIRES: values.size() == the metric's label count; each set of values given once.
  void Add(std::initializer_list<std::string_view> values, double value);
  // REQUIRES: the metric is a histogram.
  void AddHistogram(std::initializer_list<std::string_view> values, const HistogramSnapshot& h);

 private:
  friend class Registry;
  SampleSink(std::string& out, const FamilyBase& family) : out_(out), family_(family) {}
  std::string& out_;
  const FamilyBase& family_;
};

using Collector = std::function<void(SampleSink&)>;

class Registry {
 public:
  Registry() = default;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Declare a metric. Names follow Prometheus conventions (snake_case, base units such as
  // seconds and bytes; counters end in `_total`). The references stay valid for the registry's
  // life.
  Family<Counter>& AddCounterFamily(std::string name, std::string help,
                                    std::vector<std::string> labels);
  Family<Gauge>& AddGaugeFamily(std::string name, std::string help,
                                std::vector<std::string> labels);
  Family<Histogram>& AddHistogramFamily(std::string name, std::string help,
                                        std::vector<std::string> labels,
                                        std::vector<double> bounds);
  Counter& AddCounter(std::string name, std::string help);
  Gauge& AddGauge(std::string name, std::string help);
  Histogram& AddHistogram(std::string name, std::string help, std::vector<double> bounds);

  // A metric whose samples `collect` emits at each scrape. `collect` is called under the
  // registry's mutex, on the scraping thread; what it reads must outlive the scrapes.
  void AddCollector(std::string name, std::string help, MetricType type,
                    std::vector<std::string> labels, Collector collect);

  // Every metric in the text format, in the order they were declared.
  std::string Render() const;

 private:
  struct Entry {
    std::unique_ptr<FamilyBase> family;
    Collector collect;  // set for collected metrics
  };
  FamilyBase& Add(std::unique_ptr<FamilyBase> family, Collector collect) ABSL_LOCKS_EXCLUDED(mu_);

  mutable absl::Mutex mu_;
  std::vector<Entry> entries_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hivemesh::telemetry
