#include "cli/demo/demo_report.h"

#include <gtest/gtest.h>

namespace hivemesh::demo {
namespace {

Outcome Frame(const std::string& node, const std::string& served_by, double latency_ms,
              int count = 1, double t_s = 0) {
  Outcome o;
  o.t_s = t_s;
  o.kind = ClientKind::kCamera;
  o.client = "cam-of-" + node;
  o.node = node;
  o.sent_to = node;
  o.model = "people-detector";
  o.served_by = served_by;
  o.status = 200;
  o.latency_ms = latency_ms;
  o.count = count;
  return o;
}

Outcome Failed(const std::string& node) {
  Outcome o = Frame(node, "", 5);
  o.status = 503;
  o.error = "HTTP 503: queue full";
  return o;
}

TEST(DemoReportTest, TotalsSplitLocalOffloadedFailoverAndFailed) {
  std::vector<Outcome> v = {Frame("a", "a", 10), Frame("a", "b", 20), Frame("b", "b", 30),
                            Failed("a")};
  Outcome failover = Frame("b", "c", 40);
  failover.sent_to = "c";  // b was down: the client sent it to its fallback c, which served it
  v.push_back(failover);
  const Totals t = Summarize(v);
  EXPECT_EQ(t.requests, 5u);
  EXPECT_EQ(t.local, 3u);  // a, b, and c (the fallback served what it was sent)
  EXPECT_EQ(t.offloaded, 1u);
  EXPECT_EQ(t.failover, 1u);
  EXPECT_EQ(t.failed, 1u);
  EXPECT_EQ(t.p50_ms, 20);  // of the successes: 10 20 30 40
  EXPECT_EQ(t.p99_ms, 40);
}

TEST(DemoReportTest, NodeTableCountsOffloadsOnBothSides) {
  std::vector<Outcome> v = {Frame("a", "a", 10), Frame("a", "b", 20), Frame("a", "b", 30),
                            Failed("a"), Frame("b", "b", 5)};
  const std::vector<NodeModelRow> rows = NodeModelTable(v);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].node, "a");
  EXPECT_EQ(rows[0].requests, 4u);
  EXPECT_EQ(rows[0].local, 1u);
  EXPECT_EQ(rows[0].offloaded_out, 2u);
  EXPECT_EQ(rows[0].offloaded_in, 0u);
  EXPECT_EQ(rows[0].errors, 1u);
  EXPECT_EQ(rows[0].p50_ms, 20);
  EXPECT_EQ(rows[1].node, "b");
  EXPECT_EQ(rows[1].requests, 1u);
  EXPECT_EQ(rows[1].local, 1u);
  EXPECT_EQ(rows[1].offloaded_in, 2u);
}

TEST(DemoReportTest, AFrameServedInAnotherZoneIsCounted) {
  const std::map<std::string, std::string> zones = {{"a", "z1"}, {"b", "z1"}, {"m", "z2"}};
  std::vector<Outcome> v = {Frame("a", "a", 1), Frame("a", "b", 1)};
  EXPECT_EQ(FramesOutsideZone(v, zones), 0u);
  v.push_back(Frame("a", "m", 1));
  EXPECT_EQ(FramesOutsideZone(v, zones), 1u);
  Outcome window = Frame("a", "m", 1);  // sensors' windows may go anywhere
  window.kind = ClientKind::kSensor;
  v.push_back(window);
  v.push_back(Failed("a"));
  EXPECT_EQ(FramesOutsideZone(v, zones), 1u);
}

TEST(DemoReportTest, PeopleOverTimeAveragesPerBucket) {
  std::vector<Outcome> v = {Frame("a", "a", 1, 2, 0.5), Frame("a", "a", 1, 4, 9.9),
                            Frame("a", "b", 1, 1, 10.0), Failed("a")};
  auto people = PeopleOverTime(v, "people-detector", 10, 30);
  ASSERT_EQ(people.size(), 1u);
  const auto& buckets = people["cam-of-a"];
  ASSERT_EQ(buckets.size(), 3u);
  EXPECT_EQ(buckets[0].frames, 2u);
  EXPECT_DOUBLE_EQ(buckets[0].mean, 3.0);
  EXPECT_EQ(buckets[0].max, 4);
  EXPECT_EQ(buckets[1].frames, 1u);
  EXPECT_EQ(buckets[1].start_s, 10);
  EXPECT_EQ(buckets[2].frames, 0u);
}

TEST(DemoReportTest, AnomaliesScoreAgainstTheInjectedFaults) {
  auto window = [](bool injected, double p_fault) {
    Outcome o = Frame("m", "m", 1);
    o.kind = ClientKind::kSensor;
    o.client = "press";
    o.model = "vibration-anomaly";
    o.injected = injected;
    o.p_fault = p_fault;
    return o;
  };
  std::vector<Outcome> v = {window(true, 0.9), window(true, 0.2), window(false, 0.7),
                            window(false, 0.1), window(false, 0.05)};
  const AnomalyScore s = Anomalies(v)["press"];
  EXPECT_EQ(s.windows, 5u);
  EXPECT_EQ(s.injected, 2u);
  EXPECT_EQ(s.flagged, 2u);
  EXPECT_EQ(s.caught, 1u);
  EXPECT_EQ(s.false_alarms, 1u);
}

TEST(DemoReportTest, LiveLineSaysWhatHappened) {
  std::vector<Outcome> v = {Frame("a", "a", 10), Frame("a", "b", 20), Failed("a")};
  const std::string line = LiveLine(v, 42, 90, "(cam-2 down)");
  EXPECT_NE(line.find("[ 42s/90s] 3 requests | local 1 | offloaded 1 | failed 1"),
            std::string::npos)
      << line;
  EXPECT_NE(line.find("(cam-2 down)"), std::string::npos);
  EXPECT_EQ(Thousands(1234567), "1,234,567");
  EXPECT_EQ(Thousands(12), "12");
}

TEST(DemoReportTest, TheInsightTablesComeFromWhatWasReceived) {
  Outcome a = Frame("a", "a", 1, /*count=*/2);
  a.trace = "t1";
  Outcome b = Frame("a", "b", 1, /*count=*/3);
  b.trace = "t2";
  Outcome alarm = Frame("m", "m", 1);
  alarm.kind = ClientKind::kSensor;
  alarm.model = "vibration-anomaly";
  alarm.trace = "t3";
  alarm.p_fault = 0.9;
  Outcome quiet = alarm;
  quiet.trace = "t4";
  quiet.p_fault = 0.1;
  const std::vector<Outcome> outcomes = {a, b, alarm, quiet};
  auto insight = [](std::string id, std::string trace, std::string model, std::string values) {
    ReceivedInsight r;
    r.id = std::move(id);
    r.node = "a";
    r.trace = std::move(trace);
    r.model = std::move(model);
    r.values = std::move(values);
    return r;
  };
  // t1's count came twice by id (QoS 1) and once more from a second node (a hedged request);
  // t2's never came; the alert came; a window and a probe came too.
  std::vector<ReceivedInsight> got = {
      insight("a.1", "t1", "people-detector", R"({"count":5})"),
      insight("a.1", "t1", "people-detector", R"({"count":5})"),
      insight("b.7", "t1", "people-detector", R"({"count":5})"),
      insight("m.1", "t3", "vibration-anomaly", R"({"scores":[0.1,0.9]})"),
      insight("a.2", "", "people-detector", R"({"output":"count","window_s":10,"count":1})"),
      insight("a.3", "", "", R"({"probe":"a"})")};
  const SinkSummary s = Summarize(outcomes, got);
  EXPECT_EQ(s.documents, 6u);
  EXPECT_EQ(s.duplicates, 1u);
  EXPECT_EQ(s.twice, 1u);
  EXPECT_EQ(s.people, 1u);
  EXPECT_EQ(s.alerts, 1u);
  EXPECT_EQ(s.windows, 1u);
  EXPECT_EQ(s.missing, (std::map<std::string, size_t>{{"b", 1}}));  // t2, served by b
  // The tables read the count from the insight (5, not the answer's 2) and flags from alerts.
  const std::vector<Outcome> from = ResultsFromInsights(outcomes, got);
  EXPECT_EQ(from[0].count, 5);
  EXPECT_EQ(from[1].count, -1);
  EXPECT_EQ(from[2].p_fault, 1);
  EXPECT_EQ(from[3].p_fault, 0);
}

}  // namespace
}  // namespace hivemesh::demo
