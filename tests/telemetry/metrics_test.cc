// The metrics registry and its Prometheus text: exact rendering of counters, gauges, histograms
// and collected metrics, escaping, number forms, the cardinality cap, concurrent updates, refused
// declarations, and promtool's verdict on the output.
#include "telemetry/metrics.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <thread>

#include "telemetry/prometheus_text.h"
#include "telemetry/promtool.h"

namespace hivemesh::telemetry {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string Value(double v) {
  std::string out;
  AppendValue(out, v);
  return out;
}

TEST(PrometheusTextTest, Names) {
  EXPECT_TRUE(IsValidMetricName("hivemesh_inference_requests_total"));
  EXPECT_TRUE(IsValidMetricName("a:b_c9"));
  EXPECT_FALSE(IsValidMetricName(""));
  EXPECT_FALSE(IsValidMetricName("9lives"));
  EXPECT_FALSE(IsValidMetricName("with-dash"));
  EXPECT_FALSE(IsValidMetricName("with space"));
  EXPECT_TRUE(IsValidLabelName("model"));
  EXPECT_TRUE(IsValidLabelName("_x1"));
  EXPECT_FALSE(IsValidLabelName("__name__"));
  EXPECT_FALSE(IsValidLabelName("a:b"));
  EXPECT_FALSE(IsValidLabelName("1a"));
  EXPECT_FALSE(IsValidLabelName(""));
}

TEST(PrometheusTextTest, EscapesLabelValuesAndHelp) {
  std::string label;
  AppendEscapedLabelValue(label, "a\\b\"c\nd\te");
  EXPECT_EQ(label, "a\\\\b\\\"c\\nd\te");
  std::string help;
  AppendEscapedHelp(help, "say \"hi\"\\\nbye");
  EXPECT_EQ(help, "say \"hi\"\\\\\\nbye");  // quotes stay in HELP
}

TEST(PrometheusTextTest, NumberForms) {
  EXPECT_EQ(Value(3), "3");
  EXPECT_EQ(Value(0), "0");
  EXPECT_EQ(Value(-2.5), "-2.5");
  EXPECT_EQ(Value(0.25), "0.25");
  EXPECT_EQ(Value(1e-6), "1e-06");
  EXPECT_EQ(Value(0.0001), "0.0001");
  EXPECT_EQ(Value(0.0005), "0.0005");
  EXPECT_EQ(Value(1e20), "1e+20");
  EXPECT_EQ(Value(1234567), "1234567");
  EXPECT_EQ(Value(123456789012), "123456789012");
  EXPECT_EQ(Value(-7), "-7");
  EXPECT_EQ(Value(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(Value(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(Value(std::nan("")), "NaN");
  std::string big;
  AppendValue(big, std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(big, "18446744073709551615");
}

TEST(RegistryTest, CounterFamilyRendersHelpTypeAndSortedSeries) {
  Registry r;
  Family<Counter>& requests =
      r.AddCounterFamily("test_requests_total", "Requests.", {"model", "outcome"});
  requests.WithLabels({"m2", "success"}).Increment(3);
  requests.WithLabels({"m1", "error"}).Increment();
  requests.WithLabels({"m1", "error"}).Increment();
  EXPECT_EQ(requests.WithLabels({"m1", "error"}).Value(), 2u);
  EXPECT_EQ(r.Render(),
            "# HELP test_requests_total Requests.\n"
            "# TYPE test_requests_total counter\n"
            "test_requests_total{model=\"m1\",outcome=\"error\"} 2\n"
            "test_requests_total{model=\"m2\",outcome=\"success\"} 3\n");
}

TEST(RegistryTest, UnlabelledGaugeAndEscapedValues) {
  Registry r;
  Gauge& g = r.AddGauge("test_temperature_celsius", "Line one\nline two \\ end.");
  g.Set(21.5);
  g.Add(-1);
  EXPECT_EQ(g.Value(), 20.5);
  r.AddGaugeFamily("test_info", "Labels.", {"v"}).WithLabels({"a\"b\\c\nd"}).Set(1);
  EXPECT_EQ(r.Render(),
            "# HELP test_temperature_celsius Line one\\nline two \\\\ end.\n"
            "# TYPE test_temperature_celsius gauge\n"
            "test_temperature_celsius 20.5\n"
            "# HELP test_info Labels.\n"
            "# TYPE test_info gauge\n"
            "test_info{v=\"a\\\"b\\\\c\\nd\"} 1\n");
}

TEST(RegistryTest, HistogramBucketsAreCumulativeWithInfSumAndCount) {
  Registry r;
  Family<Histogram>& h =
      r.AddHistogramFamily("test_duration_seconds", "Durations.", {"route"}, {0.1, 0.5, 1});
  Histogram& local = h.WithLabels({"local"});
  for (double v : {0.05, 0.1, 0.3, 0.7, 2.0, 3.0}) local.Observe(v);  // 0.1 falls in le="0.1"
  local.Observe(std::nan(""));                                        // ignored
  const HistogramSnapshot s = local.Snapshot();
  EXPECT_EQ(s.cumulative, (std::vector<uint64_t>{2, 3, 4}));
  EXPECT_EQ(s.count, 6u);
  EXPECT_DOUBLE_EQ(s.sum, 6.15);
  EXPECT_EQ(r.Render(),
            "# HELP test_duration_seconds Durations.\n"
            "# TYPE test_duration_seconds histogram\n"
            "test_duration_seconds_bucket{route=\"local\",le=\"0.1\"} 2\n"
            "test_duration_seconds_bucket{route=\"local\",le=\"0.5\"} 3\n"
            "test_duration_seconds_bucket{route=\"local\",le=\"1\"} 4\n"
            "test_duration_seconds_bucket{route=\"local\",le=\"+Inf\"} 6\n"
            "test_duration_seconds_sum{route=\"local\"} 6.15\n"
            "test_duration_seconds_count{route=\"local\"} 6\n");
}

TEST(RegistryTest, UnlabelledHistogramHasOnlyLe) {
  Registry r;
  r.AddHistogram("test_size_bytes", "Sizes.", {1024}).Observe(10);
  EXPECT_THAT(r.Render(), HasSubstr("test_size_bytes_bucket{le=\"1024\"} 1\n"
                                    "test_size_bytes_bucket{le=\"+Inf\"} 1\n"
                                    "test_size_bytes_sum 10\n"
                                    "test_size_bytes_count 1\n"));
}

TEST(RegistryTest, CollectorsEmitAtScrapeTime) {
  Registry r;
  int queue = 4;
  r.AddCollector("test_queue_depth", "Queued.", MetricType::kGauge, {"model"},
                 [&queue](SampleSink& sink) {
                   sink.Add({"a"}, queue);
                   sink.Add({"b"}, 0);
                 });
  r.AddCollector("test_batch_size", "Batches.", MetricType::kHistogram, {"model"},
                 [](SampleSink& sink) {
                   HistogramSnapshot h;
                   h.bounds = {1, 2};
                   h.cumulative = {5, 7};
                   h.count = 8;
                   h.sum = 12;
                   sink.AddHistogram({"a"}, h);
                 });
  EXPECT_THAT(r.Render(), HasSubstr("test_queue_depth{model=\"a\"} 4\n"));
  queue = 9;
  const std::string text = r.Render();
  EXPECT_THAT(text, HasSubstr("# TYPE test_queue_depth gauge\ntest_queue_depth{model=\"a\"} 9\n"
                              "test_queue_depth{model=\"b\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("# TYPE test_batch_size histogram\n"
                              "test_batch_size_bucket{model=\"a\",le=\"1\"} 5\n"
                              "test_batch_size_bucket{model=\"a\",le=\"2\"} 7\n"
                              "test_batch_size_bucket{model=\"a\",le=\"+Inf\"} 8\n"
                              "test_batch_size_sum{model=\"a\"} 12\n"
                              "test_batch_size_count{model=\"a\"} 8\n"));
}

TEST(RegistryTest, ReferencesStayValidAndSeriesAreShared) {
  Registry r;
  Family<Counter>& f = r.AddCounterFamily("test_events_total", "Events.", {"kind"});
  Counter& first = f.WithLabels({"x"});
  for (int i = 0; i < 100; ++i) f.WithLabels({std::to_string(i)}).Increment();
  EXPECT_EQ(&first, &f.WithLabels({"x"}));
  // Label values are not confused by where one ends and the next begins.
  Family<Counter>& two = r.AddCounterFamily("test_pairs_total", "Pairs.", {"a", "b"});
  two.WithLabels({"ab", "c"}).Increment();
  two.WithLabels({"a", "bc"}).Increment(5);
  EXPECT_EQ(two.WithLabels({"ab", "c"}).Value(), 1u);
  EXPECT_EQ(two.WithLabels({"a", "bc"}).Value(), 5u);
}

TEST(RegistryTest, TooManyLabelSetsShareOneOverflowSeries) {
  Registry r;
  Family<Counter>& f = r.AddCounterFamily("test_models_total", "By model.", {"model", "route"});
  for (size_t i = 0; i < kMaxSeriesPerFamily; ++i) f.WithLabels({std::to_string(i), "x"});
  Counter& extra1 = f.WithLabels({"made-up-1", "x"});
  Counter& extra2 = f.WithLabels({"made-up-2", "y"});
  EXPECT_EQ(&extra1, &extra2);
  extra1.Increment(2);
  extra2.Increment();
  const std::string text = r.Render();
  EXPECT_THAT(text, HasSubstr("test_models_total{model=\"_overflow\",route=\"_overflow\"} 3\n"));
  EXPECT_THAT(text, Not(HasSubstr("made-up")));
  // Label sets that existed before the cap keep their own series.
  f.WithLabels({"7", "x"}).Increment();
  EXPECT_THAT(r.Render(), HasSubstr("test_models_total{model=\"7\",route=\"x\"} 1\n"));
}

TEST(RegistryTest, KnownLabelSetsKeepTheirSeriesWhenTheFamilyIsFull) {
  Registry r;
  Family<Counter>& f = r.AddCounterFamily("test_models_total", "By model.", {"model"});
  for (size_t i = 0; i < kMaxSeriesPerFamily + 5; ++i) f.WithLabels({std::to_string(i)});
  f.WithKnownLabels({"served-here"}).Increment(4);
  EXPECT_EQ(&f.WithLabels({"served-here"}), &f.WithKnownLabels({"served-here"}));
  const std::string text = r.Render();
  EXPECT_THAT(text, HasSubstr("test_models_total{model=\"served-here\"} 4\n"));
  // Known series do not use up the bounded set: it still overflows where it did.
  EXPECT_EQ(&f.WithLabels({"another"}), &f.WithLabels({"_overflow"}));
}

TEST(RegistryTest, LabelValuesAreBoundedInLength) {
  Registry r;
  Family<Counter>& f = r.AddCounterFamily("test_names_total", "By name.", {"name"});
  const std::string long_a = std::string(60 * 1024, 'a');
  f.WithLabels({long_a}).Increment();
  f.WithLabels({long_a + "b"}).Increment();  // the same first 128 bytes: the same series
  // A multi-byte character at the cut is not split.
  const std::string accented = std::string(kMaxLabelValueBytes - 1, 'e') + "\xc3\xa9tail";
  f.WithLabels({accented}).Increment();
  r.AddCollector("test_collected", "Collected.", MetricType::kGauge, {"peer"},
                 [&](SampleSink& sink) { sink.Add({std::string(5000, 'p')}, 1); });
  const std::string text = r.Render();
  EXPECT_THAT(text, HasSubstr("test_names_total{name=\"" + std::string(128, 'a') + "\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("{name=\"" + std::string(127, 'e') + "\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("test_collected{peer=\"" + std::string(128, 'p') + "\"} 1\n"));
  EXPECT_LT(text.size(), 2048u);
  EXPECT_EQ(BoundedLabelValue("short"), "short");
}

TEST(RegistryTest, ConcurrentUpdatesAreAllCounted) {
  Registry r;
  Family<Counter>& c = r.AddCounterFamily("test_hits_total", "Hits.", {"t"});
  Family<Histogram>& h = r.AddHistogramFamily("test_lat_seconds", "Latency.", {"t"}, {0.5});
  Gauge& g = r.AddGauge("test_level", "Level.");
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 10000; ++i) {
        c.WithLabels({i % 2 == 0 ? "even" : "odd"}).Increment();
        h.WithLabels({"all"}).Observe(t % 2 == 0 ? 0.25 : 1.0);
        g.Add(1);
        if (i % 1000 == 0) (void)r.Render();  // scrapes while updating
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(c.WithLabels({"even"}).Value(), 20000u);
  EXPECT_EQ(c.WithLabels({"odd"}).Value(), 20000u);
  const HistogramSnapshot s = h.WithLabels({"all"}).Snapshot();
  EXPECT_EQ(s.count, 40000u);
  EXPECT_EQ(s.cumulative[0], 20000u);
  EXPECT_DOUBLE_EQ(s.sum, 20000 * 0.25 + 20000 * 1.0);
  EXPECT_EQ(g.Value(), 40000);
}

TEST(RegistryTest, BucketHelpers) {
  EXPECT_EQ(ExponentialBuckets(1, 2, 4), (std::vector<double>{1, 2, 4, 8}));
  const std::vector<double> latency = LatencyBuckets();
  EXPECT_TRUE(std::is_sorted(latency.begin(), latency.end()));
  EXPECT_EQ(latency.front(), 0.0001);
  EXPECT_EQ(latency.back(), 10);
}

using RegistryDeathTest = ::testing::Test;

TEST_F(RegistryDeathTest, MisuseIsRefusedWithTheMetricsName) {
  EXPECT_DEATH(
      {
        Registry r;
        r.AddCounter("test_requests", "No suffix.");
      },
      "test_requests': a counter ends in _total");
  EXPECT_DEATH(
      {
        Registry r;
        r.AddGauge("test_level_total", "Suffix.");
      },
      "only counters end in _total");
  EXPECT_DEATH(
      {
        Registry r;
        r.AddGauge("test_level", "One.");
        r.AddGauge("test_level", "Two.");
      },
      "declared twice");
  EXPECT_DEATH(
      {
        Registry r;
        r.AddGaugeFamily("test_level", "Bad label.", {"bad-label"});
      },
      "not a valid label name");
  EXPECT_DEATH(
      {
        Registry r;
        r.AddHistogramFamily("test_h", "Le.", {"le"}, {1});
      },
      "cannot include le");
  EXPECT_DEATH(
      {
        Registry r;
        r.AddHistogram("test_h", "Unsorted.", {2, 1});
      },
      "strictly increasing");
  EXPECT_DEATH(
      {
        Registry r;
        r.AddGauge("test_level", "");
      },
      "help text is required");
  EXPECT_DEATH(
      {
        Registry r;
        r.AddCounterFamily("test_x_total", "Two labels.", {"a", "b"}).WithLabels({"only-one"});
      },
      "given 1 label values for 2 labels");
}

TEST(RegistryTest, PromtoolAcceptsTheOutput) {
  Registry r;
  Family<Counter>& c =
      r.AddCounterFamily("test_requests_total", "Requests \"quoted\" and \\ escaped.", {"model"});
  c.WithLabels({"plain"}).Increment();
  c.WithLabels({"tricky \"quoted\" \\ back\nslash"}).Increment(2);
  c.WithLabels({"ünïcødé"}).Increment();
  r.AddHistogramFamily("test_duration_seconds", "Durations.", {"model"}, LatencyBuckets())
      .WithLabels({"plain"})
      .Observe(0.003);
  r.AddGauge("test_empty_level", "Declared, never set.");
  r.AddGaugeFamily("test_unused", "A family without series.", {"x"});
  r.AddCollector("test_collected_total", "Collected.", MetricType::kCounter, {"peer"},
                 [](SampleSink& sink) { sink.Add({"node-b"}, 1e15); });
  const std::string text = r.Render();
  const test::PromtoolResult check = test::CheckMetrics(text);
  ASSERT_TRUE(check.ran) << check.output;
  EXPECT_EQ(check.exit_code, 0) << check.output << "\n" << text;
  EXPECT_EQ(check.output, "") << text;
}

TEST(RegistryTest, PromtoolCatchesWhatItShould) {
  // The check itself can fail: a counter without _total and a metric without help.
  const test::PromtoolResult check =
      test::CheckMetrics("# TYPE bad_count counter\nbad_count 1\nno_help 2\n");
  ASSERT_TRUE(check.ran) << check.output;
  EXPECT_NE(check.exit_code, 0);
  EXPECT_THAT(check.output, HasSubstr("_total"));
}

}  // namespace
}  // namespace hivemesh::telemetry
