// Topics and filters: MQTT's matching rules (the examples of MQTT 5.0 section 4.7), and every rule
// a topic or a filter can break, each with a message that names it.
#include "bus/topic.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

namespace hivemesh::bus {
namespace {

using ::testing::HasSubstr;

std::string Why(const absl::Status& s) { return std::string(s.message()); }

TEST(TopicTest, FiltersMatchAsMqttSays) {
  // Multi-level wildcard: the parent level and any number below.
  EXPECT_TRUE(Matches("sport/tennis/player1/#", "sport/tennis/player1"));
  EXPECT_TRUE(Matches("sport/tennis/player1/#", "sport/tennis/player1/ranking"));
  EXPECT_TRUE(Matches("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon"));
  EXPECT_TRUE(Matches("sport/#", "sport"));
  EXPECT_TRUE(Matches("#", "sport/tennis"));
  EXPECT_FALSE(Matches("sport/tennis/player1/#", "sport/tennis/player2"));
  EXPECT_FALSE(Matches("sport/tennis/#", "sport"));
  // Single-level wildcard: exactly one level.
  EXPECT_TRUE(Matches("sport/tennis/+", "sport/tennis/player1"));
  EXPECT_FALSE(Matches("sport/tennis/+", "sport/tennis/player1/ranking"));
  EXPECT_FALSE(Matches("sport/+", "sport"));
  EXPECT_TRUE(Matches("+/tennis/#", "sport/tennis/player1"));
  EXPECT_TRUE(Matches("+/+", "a/b"));
  EXPECT_FALSE(Matches("+/+", "a"));
  EXPECT_TRUE(Matches("+", "a"));
  EXPECT_TRUE(Matches("site/+/alerts/#", "site/line1/alerts/vibration/motor3"));
  EXPECT_FALSE(Matches("site/+/alerts/#", "site/line1/people/cam2"));
  // Exact levels, and prefixes that are not levels.
  EXPECT_TRUE(Matches("a/b", "a/b"));
  EXPECT_FALSE(Matches("a/b", "a/bc"));
  EXPECT_FALSE(Matches("a/bc", "a/b"));
  EXPECT_FALSE(Matches("a/b", "a/b/c"));
  EXPECT_FALSE(Matches("a/b/c", "a/b"));
  EXPECT_FALSE(Matches("a/b/#", "a/bc"));
  // Topics starting with '$' are not matched by a leading wildcard, only by name.
  EXPECT_FALSE(Matches("#", "$SYS/monitor/clients"));
  EXPECT_FALSE(Matches("+/monitor/clients", "$SYS/monitor/clients"));
  EXPECT_TRUE(Matches("$SYS/#", "$SYS/monitor/clients"));
  EXPECT_TRUE(Matches("$SYS/monitor/+", "$SYS/monitor/clients"));
  // Levels are compared as bytes: case and UTF-8 count.
  EXPECT_FALSE(Matches("Site/a", "site/a"));
  EXPECT_TRUE(Matches("zone/Zürich/+", "zone/Zürich/temp"));
}

TEST(TopicTest, GoodTopicsAndFiltersPass) {
  for (const char* t : {"a", "site/line1/alerts/vibration", "zone/Zürich/temp", "a b/c d",
                        "people-count/cam_2.local"}) {
    EXPECT_TRUE(CheckTopic(t).ok()) << t << ": " << CheckTopic(t);
    EXPECT_TRUE(CheckFilter(t).ok()) << t << ": " << CheckFilter(t);
  }
  for (const char* f : {"#", "+", "a/#", "+/+/#", "site/+/alerts/#", "$SYS/#"}) {
    EXPECT_TRUE(CheckFilter(f).ok()) << f << ": " << CheckFilter(f);
  }
  const std::string longest = std::string(kMaxTopicBytes - 2 * (kMaxTopicLevels - 1), 'x') + [] {
    std::string s;
    for (size_t i = 1; i < kMaxTopicLevels; ++i) s += "/y";
    return s;
  }();
  ASSERT_EQ(longest.size(), kMaxTopicBytes);
  EXPECT_TRUE(CheckTopic(longest).ok()) << CheckTopic(longest);
}

TEST(TopicTest, EveryBrokenRuleIsNamed) {
  EXPECT_THAT(Why(CheckTopic("")), HasSubstr("may not be empty"));
  EXPECT_THAT(Why(CheckFilter("")), HasSubstr("may not be empty"));
  // A 64 KiB topic is refused by its size, and the message does not quote it whole.
  const std::string huge(64 * 1024, 'a');
  const absl::Status big = CheckTopic(huge);
  EXPECT_EQ(big.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Why(big), HasSubstr("at most 512 bytes; this one has 65536"));
  EXPECT_LT(Why(big).size(), 200u);
  EXPECT_THAT(Why(CheckFilter(huge + "/#")), HasSubstr("at most 512 bytes"));
  std::string deep = "a";
  for (size_t i = 0; i < kMaxTopicLevels; ++i) deep += "/a";
  EXPECT_THAT(Why(CheckTopic(deep)), HasSubstr("at most 32 levels"));
  // Empty levels.
  for (const char* t : {"a//b", "/a", "a/", "/", "//"}) {
    EXPECT_THAT(Why(CheckTopic(t)), HasSubstr("empty level")) << t;
    EXPECT_THAT(Why(CheckFilter(t)), HasSubstr("empty level")) << t;
  }
  EXPECT_THAT(Why(CheckFilter("a//#")), HasSubstr("empty level"));
  // Wildcards in a topic, '$' at its start.
  EXPECT_THAT(Why(CheckTopic("a/+/c")), HasSubstr("wildcard"));
  EXPECT_THAT(Why(CheckTopic("a/#")), HasSubstr("wildcard"));
  EXPECT_THAT(Why(CheckTopic("a/b#")), HasSubstr("wildcard"));
  EXPECT_THAT(Why(CheckTopic("$SYS/x")), HasSubstr("starts with '$'"));
  // '#' anywhere but alone in the last level; '+' sharing a level.
  for (const char* f : {"a/#/b", "#/a", "a#", "a/b#", "a/#b", "##"}) {
    EXPECT_THAT(Why(CheckFilter(f)), HasSubstr("'#' must be the whole last level")) << f;
  }
  for (const char* f : {"a/b+/c", "+a", "a/++", "a/+b/#"}) {
    EXPECT_THAT(Why(CheckFilter(f)), HasSubstr("'+' must be a whole level")) << f;
  }
  // Not UTF-8 (a lone continuation byte, an overlong '/', a surrogate), control characters.
  for (const std::string& t : {std::string("a/\x80"),
                               std::string("a\xc0\xaf"
                                           "b"),
                               std::string("a/\xed\xa0\x80")}) {
    EXPECT_THAT(Why(CheckTopic(t)), HasSubstr("is not UTF-8"));
  }
  for (const std::string& t : {std::string("a\0b", 3), std::string("a\nb"), std::string("a\x7f"),
                               std::string("a\xc2\x85")}) {
    EXPECT_THAT(Why(CheckTopic(t)), HasSubstr("control character"));
    EXPECT_THAT(Why(CheckFilter(t)), HasSubstr("control character"));
  }
  // The message quotes the topic as JSON: a client's bytes cannot break the answer.
  EXPECT_THAT(Why(CheckTopic("a/\"b\"/+")), HasSubstr(R"("a/\"b\"/+")"));
}

}  // namespace
}  // namespace hivemesh::bus
