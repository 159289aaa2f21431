// Trace ids: W3C traceparent parsing, what is accepted from a Hivemesh-Trace header, new ids,
// and which source wins.
#include "telemetry/trace.h"

#include <gtest/gtest.h>

#include <set>

namespace hivemesh::telemetry {
namespace {

constexpr const char* kValid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

TEST(TraceTest, TraceparentGivesItsTraceId) {
  EXPECT_EQ(TraceIdFromTraceparent(kValid), "4bf92f3577b34da6a3ce929d0e0e4736");
  // A later version may append fields after a dash.
  EXPECT_EQ(TraceIdFromTraceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-extra"),
            "4bf92f3577b34da6a3ce929d0e0e4736");
}

TEST(TraceTest, InvalidTraceparentsAreRefused) {
  for (const char* bad : {
           "",
           "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",       // no flags
           "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",  // v00 has no more
           "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",    // version ff
           "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",    // upper case
           "00-00000000000000000000000000000000-00f067aa0ba902b7-01",    // zero trace id
           "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",    // zero parent id
           "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",    // not hex
           "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",    // separator
           "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",   // longer without dash
       }) {
    EXPECT_EQ(TraceIdFromTraceparent(bad), "") << bad;
  }
}

TEST(TraceTest, AcceptableTraceIds) {
  EXPECT_TRUE(IsAcceptableTraceId("node-a-17"));
  EXPECT_TRUE(IsAcceptableTraceId("4bf92f3577b34da6a3ce929d0e0e4736"));
  EXPECT_TRUE(IsAcceptableTraceId(std::string(128, 'x')));
  EXPECT_FALSE(IsAcceptableTraceId(""));
  EXPECT_FALSE(IsAcceptableTraceId(std::string(129, 'x')));
  EXPECT_FALSE(IsAcceptableTraceId("has space"));
  EXPECT_FALSE(IsAcceptableTraceId("new\nline"));
  EXPECT_FALSE(IsAcceptableTraceId("quote\""));
  EXPECT_FALSE(IsAcceptableTraceId("back\\slash"));
  EXPECT_FALSE(IsAcceptableTraceId("caf\xc3\xa9"));
}

TEST(TraceTest, NewIdsAreValidW3cTraceIdsAndDistinct) {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    const std::string id = NewTraceId();
    ASSERT_EQ(id.size(), 32u);
    // It round-trips through a traceparent.
    ASSERT_EQ(TraceIdFromTraceparent("00-" + id + "-00f067aa0ba902b7-01"), id);
    seen.insert(id);
  }
  EXPECT_EQ(seen.size(), 1000u);
}

TEST(TraceTest, TraceparentWinsThenHeaderThenANewOne) {
  EXPECT_EQ(TraceIdFor(kValid, "from-header"), "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_EQ(TraceIdFor("garbage", "from-header"), "from-header");
  EXPECT_EQ(TraceIdFor("", "from-header"), "from-header");
  const std::string fresh = TraceIdFor("garbage", "bad header");
  EXPECT_EQ(fresh.size(), 32u);
  EXPECT_NE(TraceIdFor("", ""), TraceIdFor("", ""));
}

}  // namespace
}  // namespace hivemesh::telemetry
