// Log formats: text lines and JSON lines carry the node name, the level, the message and the
// thread's LogFields; JSON lines stay valid JSON whatever the message holds.
#include "telemetry/log.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <simdjson.h>
#include <spdlog/logger.h>
#include <spdlog/sinks/ostream_sink.h>

#include <regex>
#include <sstream>

namespace hivemesh::telemetry {
namespace {

using ::testing::HasSubstr;

class LogTest : public ::testing::Test {
 protected:
  // One logger writing into `out_` with the given format.
  spdlog::logger& Logger(const std::string& node, LogFormat format) {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_st>(out_);
    logger_ = std::make_unique<spdlog::logger>("test", sink);
    logger_->set_formatter(MakeLogFormatter(node, format));
    logger_->set_level(spdlog::level::trace);
    return *logger_;
  }
  std::vector<std::string> Lines() const {
    std::vector<std::string> lines;
    std::istringstream in(out_.str());
    for (std::string l; std::getline(in, l);) lines.push_back(l);
    return lines;
  }

  std::ostringstream out_;
  std::unique_ptr<spdlog::logger> logger_;
};

TEST_F(LogTest, ParsesFormatNames) {
  EXPECT_EQ(*ParseLogFormat("text"), LogFormat::kText);
  EXPECT_EQ(*ParseLogFormat("json"), LogFormat::kJson);
  EXPECT_FALSE(ParseLogFormat("xml").ok());
  EXPECT_FALSE(ParseLogFormat("JSON").ok());
}

TEST_F(LogTest, TextLinesCarryTimeLevelNodeAndFields) {
  spdlog::logger& log = Logger("node-a", LogFormat::kText);
  log.info("model '{}' loaded", "identity");
  {
    LogFields fields;
    fields.Add("model", "identity").Add("status", int64_t{200}).Add("duration_ms", 1.23456);
    fields.Add("note", "two words");
    log.debug("inference");
  }
  log.warn("after");  // the fields are gone with their scope
  const std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 3u) << out_.str();
  const std::regex first(
      R"(\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\] \[info\] \[node-a\] model 'identity' loaded)");
  EXPECT_TRUE(std::regex_match(lines[0], first)) << lines[0];
  EXPECT_THAT(lines[1], HasSubstr("[debug] [node-a] inference model=identity status=200 "
                                  "duration_ms=1.235 note=\"two words\""));
  EXPECT_THAT(lines[2], ::testing::EndsWith("[warning] [node-a] after"));
}

TEST_F(LogTest, TextNodeNameWithPercentIsNotAPatternFlag) {
  spdlog::logger& log = Logger("cam%v-1", LogFormat::kText);
  log.info("hello");
  EXPECT_THAT(out_.str(), HasSubstr("[cam%v-1] hello"));
}

TEST_F(LogTest, JsonLinesParseAndCarryNodeLevelMessageAndFields) {
  spdlog::logger& log = Logger("node \"b\"", LogFormat::kJson);
  log.info("plain");
  {
    LogFields outer;
    outer.Add("trace_id", "abc123");
    LogFields inner;
    inner.Add("model", "identity").Add("status", int64_t{503}).Add("duration_ms", 0.5);
    log.debug("quote \" backslash \\ newline \n tab \t bell \x07 bad utf8 \xff\xfe ok é");
  }
  log.error("last");
  simdjson::dom::parser parser;
  const std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 3u) << out_.str();
  std::vector<simdjson::dom::element> docs;
  for (const std::string& line : lines) {
    simdjson::dom::element doc;
    ASSERT_EQ(parser.parse(line).get(doc), simdjson::SUCCESS) << line;
    std::string_view ts, level, node;
    ASSERT_EQ(doc["ts"].get(ts), simdjson::SUCCESS) << line;
    ASSERT_EQ(doc["level"].get(level), simdjson::SUCCESS) << line;
    ASSERT_EQ(doc["node"].get(node), simdjson::SUCCESS) << line;
    EXPECT_EQ(node, "node \"b\"");
    EXPECT_TRUE(
        std::regex_match(std::string(ts), std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)")))
        << ts;
  }
  simdjson::dom::element second;
  ASSERT_EQ(parser.parse(lines[1]).get(second), simdjson::SUCCESS);
  EXPECT_EQ(std::string_view(second["level"]), "debug");
  EXPECT_EQ(std::string_view(second["msg"]),
            // Each byte that is not UTF-8 comes back as the code point of its number.
            "quote \" backslash \\ newline \n tab \t bell \x07 bad utf8 \xc3\xbf\xc3\xbe "
            "ok é");
  EXPECT_EQ(std::string_view(second["trace_id"]), "abc123");
  EXPECT_EQ(std::string_view(second["model"]), "identity");
  EXPECT_EQ(int64_t(second["status"]), 503);  // a JSON number
  EXPECT_DOUBLE_EQ(double(second["duration_ms"]), 0.5);
  // Keys in order: ts, level, node, msg, then the fields outermost first.
  EXPECT_EQ(lines[1].find("{\"ts\":"), 0u);
  EXPECT_LT(lines[1].find("\"msg\""), lines[1].find("\"trace_id\""));
  EXPECT_LT(lines[1].find("\"trace_id\""), lines[1].find("\"model\""));
  simdjson::dom::element third;
  ASSERT_EQ(parser.parse(lines[2]).get(third), simdjson::SUCCESS);
  EXPECT_EQ(std::string_view(third["level"]), "error");
  EXPECT_EQ(third["trace_id"].error(), simdjson::NO_SUCH_FIELD);
}

TEST_F(LogTest, NonFiniteNumbersStayValidJson) {
  spdlog::logger& log = Logger("n", LogFormat::kJson);
  LogFields f;
  f.Add("x", std::numeric_limits<double>::infinity());
  log.info("m");
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  ASSERT_EQ(parser.parse(out_.str()).get(doc), simdjson::SUCCESS) << out_.str();
  EXPECT_EQ(std::string_view(doc["x"]), "inf");
}

TEST_F(LogTest, SetupLoggingRefusesUnknownLevels) {
  EXPECT_FALSE(SetupLogging("n", "loud", LogFormat::kText).ok());
  EXPECT_TRUE(SetupLogging("n", "warn", LogFormat::kJson).ok());
  EXPECT_TRUE(SetupLogging("n", "info", LogFormat::kText).ok());
}

}  // namespace
}  // namespace hivemesh::telemetry
