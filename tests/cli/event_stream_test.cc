// EventStream (what `hivemesh sub` reads): chunked framing split anywhere, Server-Sent Events
// with comments and multi-line data, the bounds; and the topic encoding and line format of
// `hivemesh pub` and `sub`.
#include "cli/event_stream.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "cli/insights_command.h"

namespace hivemesh::cli {
namespace {

std::string Chunk(const std::string& data) {
  char size[16];
  std::snprintf(size, sizeof size, "%zx", data.size());
  return std::string(size) + "\r\n" + data + "\r\n";
}

TEST(EventStreamTest, EventsComeOutWhereverTheBytesAreSplit) {
  const std::string wire =
      Chunk(": subscribed to a/#\n\n") + Chunk("id: 1\nevent: insight\ndata: {\"n\":1}\n\n") +
      Chunk("data: {\"n\":2}\n") + Chunk("\ndata: line one\ndata: two\n\n") + "0\r\n\r\n";
  for (size_t step = 1; step <= wire.size(); ++step) {
    EventStream stream;
    std::vector<std::string> events;
    for (size_t at = 0; at < wire.size(); at += step) {
      ASSERT_TRUE(stream.Feed(wire.substr(at, step), events).ok()) << step;
    }
    EXPECT_EQ(events, (std::vector<std::string>{"{\"n\":1}", "{\"n\":2}", "line one\ntwo"}))
        << step;
    EXPECT_TRUE(stream.ended());
  }
}

TEST(EventStreamTest, BrokenFramingIsAnErrorForGood) {
  for (const std::string& bad : {std::string("zz\r\n"), std::string(40, '1') + "\r\n",
                                 std::string("200000\r\n"), Chunk("ab").replace(5, 2, "xy")}) {
    EventStream stream;
    std::vector<std::string> events;
    absl::Status s = stream.Feed(bad, events);
    EXPECT_FALSE(s.ok()) << bad;
    EXPECT_FALSE(stream.Feed(Chunk("data: x\n\n"), events).ok()) << "stays broken";
    EXPECT_TRUE(events.empty());
  }
  // An event that never ends is bounded.
  EventStream stream;
  std::vector<std::string> events;
  absl::Status s;
  for (int i = 0; i < 40 && s.ok(); ++i)
    s = stream.Feed(Chunk("data: " + std::string(60000, 'x') + "\n"), events);
  EXPECT_FALSE(s.ok());
}

TEST(InsightsCommandTest, TopicsAreEncodedAndDocumentsPrintedOnALine) {
  EXPECT_EQ(UrlEncodeTopic("site/+/alerts/#"), "site/+/alerts/%23");
  EXPECT_EQ(UrlEncodeTopic("a b&c=d%"), "a%20b%26c%3Dd%25");
  EXPECT_EQ(FormatInsightLine(R"({"id":"a.1.000000000001","topic":"t/1","node":"a","seq":7,)"
                              R"("values":{"n": 1}})"),
            "t/1 {\"n\":1} (a #7)");
  EXPECT_EQ(FormatInsightLine("not json"), "not json");
}

}  // namespace
}  // namespace hivemesh::cli
