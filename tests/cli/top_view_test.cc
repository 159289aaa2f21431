#include "cli/top_view.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <simdjson.h>

namespace hivemesh::cli {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;

TEST(ParseModelStatsTest, SumsOverModels) {
  absl::StatusOr<NodeCounters> c = ParseModelStats(
      R"({"model_stats":[{"name":"a","version":"1","inference_count":10,"queue_depth":2,"in_flight":1},)"
      R"({"name":"b","version":"1","inference_count":5,"queue_depth":0,"in_flight":-1}]})");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->inferences, 15u);
  EXPECT_EQ(c->queued, 2);
  EXPECT_EQ(c->running, 1) << "a transiently negative gauge counts as 0";
  EXPECT_FALSE(c->local.has_value());
  EXPECT_EQ(ParseModelStats("{}").status().code(), absl::StatusCode::kInternal);
}

TEST(ParseRoutesTest, LocalAndForwarded) {
  NodeCounters c;
  ASSERT_TRUE(
      ParseRoutes(R"({"local":7,"forwarded":3,"retries":0,"rejected":0,"peers":[]})", c).ok());
  EXPECT_EQ(c.local, 7u);
  EXPECT_EQ(c.forwarded, 3u);
  EXPECT_FALSE(ParseRoutes(R"({"error":"no such endpoint"})", c).ok());
}

TEST(RatePerSecondTest, DifferenceOverTime) {
  EXPECT_DOUBLE_EQ(*RatePerSecond(100, 150, 500ms), 100.0);
  EXPECT_DOUBLE_EQ(*RatePerSecond(5, 5, 1s), 0.0);
  EXPECT_FALSE(RatePerSecond(150, 100, 1s)) << "the node restarted";
  EXPECT_FALSE(RatePerSecond(1, 2, 0ms));
}

NodeSample Sample(std::string name, std::chrono::steady_clock::time_point at,
                  std::optional<NodeCounters> counters) {
  NodeSample s;
  s.member.name = std::move(name);
  s.member.state = "alive";
  s.member.labels["zone"] = "east";
  s.member.api_address = "127.0.0.1:1";
  s.member.models.push_back({"identity", {"1"}, true, "mesh", 1});
  s.member.load.push_back({"identity", 4, 2, 100});
  s.at = at;
  s.counters = counters;
  return s;
}

TEST(TopRowsTest, RatesFromThePreviousReadingOfTheSameNode) {
  const auto t0 = std::chrono::steady_clock::time_point() + 10s;
  NodeCounters before{100, 0, 0, 50, 10};
  NodeCounters after{130, 1, 2, 70, 20};
  std::map<std::string, NodeSample> previous = {{"b", Sample("b", t0, before)}};
  std::vector<NodeSample> now = {Sample("b", t0 + 2s, after), Sample("a", t0 + 2s, after)};
  NodeSample unreachable = Sample("c", t0 + 2s, std::nullopt);
  unreachable.error = "cannot connect";
  unreachable.member.draining = true;
  now.push_back(unreachable);
  const std::vector<TopRow> rows = TopRows(now, previous);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].name, "a");
  EXPECT_FALSE(rows[0].requests_per_s) << "no earlier reading of a";
  EXPECT_EQ(rows[1].name, "b");
  EXPECT_DOUBLE_EQ(*rows[1].requests_per_s, 15.0);
  EXPECT_DOUBLE_EQ(*rows[1].local_per_s, 10.0);
  EXPECT_DOUBLE_EQ(*rows[1].forwarded_per_s, 5.0);
  EXPECT_EQ(rows[1].queued, 1);
  EXPECT_EQ(rows[1].running, 2);
  EXPECT_EQ(rows[1].zone, "east");
  EXPECT_EQ(rows[2].name, "c");
  EXPECT_EQ(rows[2].queued, 4) << "the gossiped load report when the node cannot be read";
  EXPECT_EQ(rows[2].running, 2);

  const std::string table = FormatTopTable(rows);
  EXPECT_EQ(table,
            "NAME  STATE             ZONE  MODELS  QUEUED  RUNNING  REQ/S  LOCAL  FWD\n"
            "a     alive             east       1       1        2      -     70   20\n"
            "b     alive             east       1       1        2     15     70   20\n"
            "c     alive (draining)  east       1       4        2      -      -    -\n"
            "  ! c: cannot connect\n");

  const std::string json = TopJson(rows, 1234);
  EXPECT_EQ(json.find('\n'), std::string::npos) << "one line";
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  ASSERT_EQ(parser.parse(json).get(doc), simdjson::SUCCESS) << json;
  EXPECT_EQ(int64_t(doc["time_ms"]), 1234);
  EXPECT_TRUE(doc["nodes"].at(0)["requests_per_s"].is_null());
  EXPECT_DOUBLE_EQ(double(doc["nodes"].at(1)["requests_per_s"]), 15.0);
  EXPECT_EQ(std::string_view(doc["nodes"].at(2)["error"]), "cannot connect");
  EXPECT_EQ(std::string_view(doc["nodes"].at(2)["state"]), "alive");
  EXPECT_TRUE(bool(doc["nodes"].at(2)["draining"]));
  EXPECT_TRUE(doc["nodes"].at(2)["local"].is_null());
}

}  // namespace
}  // namespace hivemesh::cli
