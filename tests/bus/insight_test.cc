// The insight document: what Encode writes Decode reads back, every field a peer could forge is
// checked, values are bounded JSON objects, and ids are unique across restarts.
#include "bus/insight.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>
#include <string>

namespace hivemesh::bus {
namespace {

using ::testing::HasSubstr;

Insight Sample() {
  Insight in;
  in.id = "node-a.5f3c2a10.000000000042";
  in.topic = "site/line1/alerts/vibration";
  in.node = "node-a";
  in.zone = "line1";
  in.model = "vibration-anomaly";
  in.version = "3";
  in.time_ms = 1796650802125;
  in.seq = 42;
  in.trace = "4bf92f3577b34da6a3ce929d0e0e4736";
  in.values = R"({"scores[1]":0.93,"label":"bearing \"B\""})";
  return in;
}

TEST(InsightTest, WhatIsEncodedDecodesToTheSame) {
  const Insight in = Sample();
  const std::string doc = Encode(in);
  EXPECT_THAT(doc, HasSubstr(R"("time":"2026-12-07T13:40:02.125Z")"));
  absl::StatusOr<Insight> out = Decode(doc);
  ASSERT_TRUE(out.ok()) << out.status() << "\n" << doc;
  EXPECT_EQ(out->id, in.id);
  EXPECT_EQ(out->topic, in.topic);
  EXPECT_EQ(out->node, in.node);
  EXPECT_EQ(out->zone, in.zone);
  EXPECT_EQ(out->model, in.model);
  EXPECT_EQ(out->version, in.version);
  EXPECT_EQ(out->time_ms, in.time_ms);
  EXPECT_EQ(out->seq, in.seq);
  EXPECT_EQ(out->trace, in.trace);
  EXPECT_EQ(out->values, in.values);
  EXPECT_EQ(Encode(*out), doc);
  // A client's insight: no model, no trace.
  Insight client = Sample();
  client.model = client.version = client.trace = "";
  ASSERT_TRUE(Decode(Encode(client)).ok());
}

TEST(InsightTest, ForgedOrBrokenFieldsAreRefusedByName) {
  const auto refused = [](const Insight& in) {
    return std::string(Decode(Encode(in)).status().message());
  };
  Insight in = Sample();
  in.topic = "site/+/alerts";
  EXPECT_THAT(refused(in), HasSubstr("wildcard"));
  in = Sample();
  in.id = "node-b.5f3c2a10.000000000042";  // another node's id
  EXPECT_THAT(refused(in), HasSubstr("id is not"));
  for (const char* id : {"node-a.5f3c2a10.42", "node-a..000000000042", "node-a.XYZ.000000000042",
                         "node-a.5f3c2a10.00000000004a", "node-a"}) {
    in.id = id;
    EXPECT_THAT(refused(in), HasSubstr("id is not")) << id;
  }
  in = Sample();
  in.node = std::string(200, 'n');
  in.id = in.node + ".1.000000000001";
  EXPECT_THAT(refused(in), HasSubstr("node is not UTF-8 of at most 128 bytes"));
  in = Sample();
  in.model = "a\nb";
  EXPECT_THAT(refused(in), HasSubstr("model holds a control character"));
  in = Sample();
  in.trace = "4BF92F3577B34DA6A3CE929D0E0E4736";
  EXPECT_THAT(refused(in), HasSubstr("trace is not"));
  in = Sample();
  in.seq = 0;
  EXPECT_THAT(refused(in), HasSubstr("seq"));
  in = Sample();
  in.time_ms = -5;
  EXPECT_THAT(refused(in), HasSubstr("time_ms"));
  // Not objects, missing fields, wrong types.
  EXPECT_THAT(Decode("[1]").status().message(), HasSubstr("not a JSON object"));
  EXPECT_THAT(Decode(R"({"id":"x"})").status().message(), HasSubstr("topic is missing"));
  std::string doc = Encode(Sample());
  doc.replace(doc.find("\"seq\":42"), 8, "\"seq\":\"42\"");
  EXPECT_THAT(Decode(doc).status().message(), HasSubstr("seq"));
  doc = Encode(Sample());
  doc.replace(doc.find("\"values\":{"), 10, "\"values\":[{");
  doc.insert(doc.size() - 1, "]");
  EXPECT_THAT(Decode(doc).status().message(), HasSubstr("values is missing or not a JSON object"));
  // Too large a document, whatever it holds.
  EXPECT_THAT(Decode(std::string(kMaxInsightBytes + 1, ' ')).status().message(),
              HasSubstr("at most 16384 bytes"));
}

TEST(InsightTest, ValuesAreABoundedJsonObject) {
  EXPECT_TRUE(CheckValues(R"({"count": 3})").ok());
  EXPECT_TRUE(CheckValues("{}").ok());
  EXPECT_THAT(CheckValues("[1,2]").message(), HasSubstr("not an array or a single value"));
  EXPECT_THAT(CheckValues("3").message(), HasSubstr("JSON object"));
  EXPECT_THAT(CheckValues(R"({"a":)").message(), HasSubstr("not valid JSON"));
  EXPECT_THAT(CheckValues("").message(), HasSubstr("not valid JSON"));
  const std::string big = R"({"a":")" + std::string(20000, 'x') + R"("})";
  EXPECT_THAT(CheckValues(big).message(), HasSubstr("at most 14336 bytes"));
  // The largest values accepted still make a document Decode takes.
  Insight in = Sample();
  in.values = R"({"a":")" + std::string(kMaxInsightBytes - 2048 - 8, 'x') + R"("})";
  ASSERT_TRUE(CheckValues(in.values).ok());
  EXPECT_TRUE(Decode(Encode(in)).ok()) << Encode(in).size();
}

TEST(InsightIdsTest, IdsAreUniqueAcrossRestartsEvenInTheSameSecond) {
  std::set<std::string> seen;
  InsightIds first("node-a", 1000);
  for (int i = 0; i < 100; ++i) EXPECT_TRUE(seen.insert(first.Next()).second);
  // Restarted in the same second, then with the clock set back: a later boot second each time.
  InsightIds second("node-a", 1000, first.boot_s());
  EXPECT_EQ(second.boot_s(), 1001);
  for (int i = 0; i < 100; ++i) EXPECT_TRUE(seen.insert(second.Next()).second);
  InsightIds third("node-a", 900, second.boot_s());
  EXPECT_EQ(third.boot_s(), 1002);
  const std::string id = third.Next();
  EXPECT_EQ(id, "node-a.3ea.000000000001");
  EXPECT_TRUE(seen.insert(id).second);
  // Every id is one Decode accepts for its node.
  Insight in = Sample();
  in.id = id;
  EXPECT_TRUE(Decode(Encode(in)).ok());
}

}  // namespace
}  // namespace hivemesh::bus
