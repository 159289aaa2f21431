// Logs of real agents: with --log-format json every line is a JSON object with ts, level, node
// and msg; each inference is logged at debug level with its trace id, and a request forwarded
// from node-a to node-b carries the same trace id into both nodes' logs and back in the
// response. The default text format carries the node name on every line.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <simdjson.h>

#include <map>
#include <memory>
#include <regex>
#include <sstream>

#include "support/agent_process.h"
#include "support/http_client.h"
#include "support/mesh_util.h"

namespace hivemesh::test {
namespace {

using ::testing::HasSubstr;

constexpr const char* kBody =
    R"({"inputs":[{"name":"INPUT0","shape":[2],"datatype":"FP32","data":[1,2]}]})";

// One parsed log line: its string fields and its number fields.
struct LogLine {
  std::map<std::string, std::string> text;
  std::map<std::string, double> numbers;
  std::string field(const std::string& key) const {
    auto it = text.find(key);
    return it == text.end() ? "" : it->second;
  }
};

// Every line of `log` as JSON; a line that does not parse fails the test (and is skipped).
std::vector<LogLine> ParseJsonLines(const std::string& log) {
  std::vector<LogLine> out;
  simdjson::dom::parser parser;
  std::istringstream in(log);
  for (std::string line; std::getline(in, line);) {
    simdjson::dom::object obj;
    if (parser.parse(line).get(obj) != simdjson::SUCCESS) {
      ADD_FAILURE() << "not a JSON object: " << line;
      continue;
    }
    LogLine l;
    for (auto [key, value] : obj) {
      std::string_view s;
      double d;
      int64_t i;
      if (value.get(s) == simdjson::SUCCESS) {
        l.text[std::string(key)] = std::string(s);
      } else if (value.get(d) == simdjson::SUCCESS) {
        l.numbers[std::string(key)] = d;
      } else if (value.get(i) == simdjson::SUCCESS) {
        l.numbers[std::string(key)] = static_cast<double>(i);
      }
    }
    out.push_back(std::move(l));
  }
  return out;
}

// The inference lines of `log` with this trace id.
std::vector<LogLine> InferenceLines(const std::string& log, const std::string& trace) {
  std::vector<LogLine> out;
  for (LogLine& l : ParseJsonLines(log)) {
    if (l.field("msg") == "inference" && l.field("trace_id") == trace) out.push_back(l);
  }
  return out;
}

class JsonLogsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_.Write("a/.keep", "");
    dir_.Write("b/identity/config.yaml", IdentityModelConfig());
    dir_.Write("b/identity/1/.keep", "");
    const std::vector<std::string> common = {"--log-format", "json", "--log-level", "debug"};
    std::vector<std::string> b = {"--node-name", "node-b", "--model-repository",
                                  dir_.path() + "/b"};
    b.insert(b.end(), common.begin(), common.end());
    b_ = std::make_unique<AgentProcess>(b);
    ASSERT_TRUE(b_->ok()) << b_->log();
    std::vector<std::string> a = {"--node-name",      "node-a", "--model-repository",
                                  dir_.path() + "/a", "--join", GossipAddress(b_->port())};
    a.insert(a.end(), common.begin(), common.end());
    a_ = std::make_unique<AgentProcess>(a);
    ASSERT_TRUE(a_->ok()) << a_->log();
    ASSERT_TRUE(WaitFor([&] { return PeersHosting(a_->port(), "identity") == 1; },
                        std::chrono::seconds(10)))
        << a_->log();
  }

  TempDir dir_;
  std::unique_ptr<AgentProcess> b_, a_;  // stopped (SIGKILL) when destroyed
};

TEST_F(JsonLogsTest, EveryLineIsJsonWithTheNodeName) {
  for (const auto& [agent, node] : {std::pair{a_.get(), "node-a"}, std::pair{b_.get(), "node-b"}}) {
    const std::vector<LogLine> lines = ParseJsonLines(agent->log());
    ASSERT_GE(lines.size(), 3u) << agent->log();  // loaded, gossip, ready, started...
    for (const LogLine& l : lines) {
      EXPECT_EQ(l.field("node"), node);
      EXPECT_TRUE(
          std::regex_match(l.field("ts"), std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)")))
          << l.field("ts");
      EXPECT_THAT((std::vector<std::string>{"trace", "debug", "info", "warning", "error"}),
                  ::testing::Contains(l.field("level")));
      EXPECT_FALSE(l.field("msg").empty());
    }
  }
  EXPECT_THAT(a_->log(), HasSubstr(R"("msg":"ready: KServe v2 REST on http://)"));
}

TEST_F(JsonLogsTest, AForwardedRequestsTraceIdIsInBothNodesLogsAndTheResponse) {
  const std::string trace = "4bf92f3577b34da6a3ce929d0e0e4736";
  HttpResult r = HttpRequestOnce(a_->port(), "POST", "/v2/models/identity/infer", kBody,
                                 {{"traceparent", "00-" + trace + "-00f067aa0ba902b7-01"}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.header("hivemesh-served-by"), "node-b");
  EXPECT_EQ(r.header("hivemesh-trace"), trace);

  ASSERT_TRUE(WaitFor(
      [&] {
        return InferenceLines(a_->log(), trace).size() == 1 &&
               InferenceLines(b_->log(), trace).size() == 1;
      },
      std::chrono::seconds(5)))
      << "node-a:\n"
      << a_->log() << "\nnode-b:\n"
      << b_->log();
  const LogLine at_a = InferenceLines(a_->log(), trace)[0];
  EXPECT_EQ(at_a.field("node"), "node-a");
  EXPECT_EQ(at_a.field("level"), "debug");
  EXPECT_EQ(at_a.field("model"), "identity");
  EXPECT_EQ(at_a.field("route"), "offloaded");
  EXPECT_EQ(at_a.field("served_by"), "node-b");
  EXPECT_EQ(at_a.numbers.at("status"), 200);
  EXPECT_GT(at_a.numbers.at("duration_ms"), 0);
  const LogLine at_b = InferenceLines(b_->log(), trace)[0];
  EXPECT_EQ(at_b.field("node"), "node-b");
  EXPECT_EQ(at_b.field("route"), "forwarded_in");
  EXPECT_EQ(at_b.numbers.at("status"), 200);
  EXPECT_LE(at_b.numbers.at("duration_ms"), at_a.numbers.at("duration_ms"));
}

TEST_F(JsonLogsTest, RequestsWithoutATraceGetOneAndAHivemeshTraceHeaderIsKept) {
  HttpResult fresh = HttpRequestOnce(a_->port(), "POST", "/v2/models/identity/infer", kBody);
  ASSERT_EQ(fresh.status, 200) << fresh.body;
  const std::string made = fresh.header("hivemesh-trace");
  EXPECT_TRUE(std::regex_match(made, std::regex("[0-9a-f]{32}"))) << made;
  HttpResult kept = HttpRequestOnce(a_->port(), "POST", "/v2/models/identity/infer", kBody,
                                    {{"Hivemesh-Trace", "client-chosen-7"}});
  ASSERT_EQ(kept.status, 200) << kept.body;
  EXPECT_EQ(kept.header("hivemesh-trace"), "client-chosen-7");
  // An error is traced and logged too: no node hosts this model (404 once the view settled).
  ASSERT_TRUE(WaitSettled(a_->port()));
  HttpResult missing = HttpRequestOnce(a_->port(), "POST", "/v2/models/nowhere/infer", kBody,
                                       {{"Hivemesh-Trace", "missing-1"}});
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(missing.header("hivemesh-trace"), "missing-1");
  for (const std::string& trace : {made, std::string("client-chosen-7")}) {
    EXPECT_TRUE(WaitFor(
        [&] {
          return InferenceLines(a_->log(), trace).size() == 1 &&
                 InferenceLines(b_->log(), trace).size() == 1;
        },
        std::chrono::seconds(5)))
        << trace << "\n"
        << a_->log() << b_->log();
  }
  ASSERT_TRUE(WaitFor([&] { return InferenceLines(a_->log(), "missing-1").size() == 1; },
                      std::chrono::seconds(5)))
      << a_->log();
  const LogLine m = InferenceLines(a_->log(), "missing-1")[0];
  EXPECT_EQ(m.field("route"), "local");
  EXPECT_EQ(m.numbers.at("status"), 404);
  EXPECT_TRUE(InferenceLines(b_->log(), "missing-1").empty());
}

TEST(TextLogsTest, EveryLineCarriesTimeLevelAndNodeName) {
  TempDir dir;
  dir.Write("m/identity/config.yaml", IdentityModelConfig());
  dir.Write("m/identity/1/.keep", "");
  AgentProcess agent(
      {"--node-name", "node-t", "--model-repository", dir.path() + "/m", "--log-level", "debug"});
  ASSERT_TRUE(agent.ok()) << agent.log();
  ASSERT_EQ(HttpRequestOnce(agent.port(), "POST", "/v2/models/identity/infer", kBody,
                            {{"Hivemesh-Trace", "text-trace-1"}})
                .status,
            200);
  ASSERT_TRUE(WaitFor([&] { return agent.log().find("text-trace-1") != std::string::npos; },
                      std::chrono::seconds(5)))
      << agent.log();
  const std::regex line_re(
      R"(\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\] \[(trace|debug|info|warning|error)\] \[node-t\] .+)");
  std::istringstream in(agent.log());
  int lines = 0;
  for (std::string line; std::getline(in, line); ++lines) {
    EXPECT_TRUE(std::regex_match(line, line_re)) << line;
  }
  EXPECT_GE(lines, 4);
  EXPECT_THAT(agent.log(), HasSubstr("[debug] [node-t] inference model=identity route=local "
                                     "status=200 duration_ms="));
  EXPECT_THAT(agent.log(), HasSubstr(" trace_id=text-trace-1 served_by=node-t"));
}

TEST(TextLogsTest, AnUnknownLogFormatIsRefusedByName) {
  AgentProcess agent({"--log-format", "xml"});
  EXPECT_FALSE(agent.ok());
  EXPECT_THAT(agent.log(), HasSubstr("log_format: 'xml' is not one of text, json"));
}

}  // namespace
}  // namespace hivemesh::test
