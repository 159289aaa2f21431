// LocalBus: insights published here get ids and per-topic sequence numbers, reach exactly the
// subscribers whose filters match, a full subscriber drops (counted), and the bounds hold.
#include "bus/local_bus.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

namespace hivemesh::bus {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

LocalBus MakeBus(size_t max_subscribers = 128) {
  return LocalBus("node-a", "line1", InsightIds("node-a", 4096), max_subscribers);
}

TEST(LocalBusTest, PublishedInsightsReachMatchingSubscribersInOrder) {
  LocalBus bus = MakeBus();
  std::vector<std::string> alerts, everything, docs;
  ASSERT_TRUE(bus.Subscribe({"site/+/alerts/#"},
                            [&](const Insight& in, const std::string& doc) {
                              alerts.push_back(in.topic + "#" + std::to_string(in.seq));
                              docs.push_back(doc);
                              return true;
                            })
                  .ok());
  ASSERT_TRUE(bus.Subscribe({"#", "site/line1/people"},  // overlapping filters: delivered once
                            [&](const Insight& in, const std::string&) {
                              everything.push_back(in.topic + "#" + std::to_string(in.seq));
                              return true;
                            })
                  .ok());
  absl::StatusOr<Insight> a =
      bus.Publish("site/line1/alerts/vibration", R"({"score":0.9})", 1000, "vibration-anomaly", "3",
                  "4bf92f3577b34da6a3ce929d0e0e4736");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->id, "node-a.1000.000000000001");
  EXPECT_EQ(a->seq, 1u);
  EXPECT_EQ(a->zone, "line1");
  ASSERT_TRUE(bus.Publish("site/line1/people", R"({"count":3})", 1001).ok());
  ASSERT_TRUE(bus.Publish("site/line1/alerts/vibration", R"({"score":0.7})", 1002).ok());
  EXPECT_THAT(alerts,
              ElementsAre("site/line1/alerts/vibration#1", "site/line1/alerts/vibration#2"));
  EXPECT_THAT(everything, ElementsAre("site/line1/alerts/vibration#1", "site/line1/people#1",
                                      "site/line1/alerts/vibration#2"));
  // The document is the insight's, and reads back as it.
  absl::StatusOr<Insight> back = Decode(docs[0]);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->id, a->id);
  EXPECT_EQ(back->model, "vibration-anomaly");
  EXPECT_EQ(bus.stats().published, 3u);
  EXPECT_EQ(bus.stats().delivered, 5u);
  EXPECT_THAT(bus.Filters(), ElementsAre("#", "site/+/alerts/#", "site/line1/people"));
}

TEST(LocalBusTest, BadInputIsRefusedByNameAndNothingIsPublished) {
  LocalBus bus = MakeBus(2);
  EXPECT_THAT(bus.Publish("site/+/x", "{}", 1).status().message(), HasSubstr("wildcard"));
  EXPECT_THAT(bus.Publish("a//b", "{}", 1).status().message(), HasSubstr("empty level"));
  EXPECT_THAT(bus.Publish(std::string(64 * 1024, 't'), "{}", 1).status().message(),
              HasSubstr("at most 512 bytes"));
  EXPECT_THAT(bus.Publish("a", "[1]", 1).status().message(), HasSubstr("JSON object"));
  EXPECT_THAT(bus.Publish("a", std::string(20000, ' '), 1).status().message(),
              HasSubstr("at most"));
  EXPECT_EQ(bus.stats().published, 0u);
  const auto sink = [](const Insight&, const std::string&) { return true; };
  EXPECT_THAT(bus.Subscribe({}, sink).status().message(), HasSubstr("names a topic filter"));
  EXPECT_THAT(bus.Subscribe({"a/#/b"}, sink).status().message(), HasSubstr("'#' must be"));
  EXPECT_THAT(bus.Subscribe(std::vector<std::string>(17, "a"), sink).status().message(),
              HasSubstr("at most 16 topic filters"));
  ASSERT_TRUE(bus.Subscribe({"a"}, sink).ok());
  absl::StatusOr<uint64_t> second = bus.Subscribe({"b"}, sink);
  ASSERT_TRUE(second.ok());
  absl::StatusOr<uint64_t> third = bus.Subscribe({"c"}, sink);
  EXPECT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted);
  bus.Unsubscribe(*second);
  EXPECT_TRUE(bus.Subscribe({"c"}, sink).ok()) << "room again once one left";
  EXPECT_EQ(bus.stats().subscribers, 2u);
}

TEST(LocalBusTest, AFullSubscriberDropsAndIsCountedWhileOthersGetEverything) {
  LocalBus bus = MakeBus();
  int full_took = 0, other_took = 0;
  ASSERT_TRUE(bus.Subscribe({"t"},
                            [&](const Insight&, const std::string&) {
                              return ++full_took <= 2;  // takes two, then its queue is full
                            })
                  .ok());
  ASSERT_TRUE(bus.Subscribe({"t"},
                            [&](const Insight&, const std::string&) {
                              ++other_took;
                              return true;
                            })
                  .ok());
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(bus.Publish("t", "{}", i).ok());
  EXPECT_EQ(other_took, 5);
  EXPECT_EQ(bus.stats().delivered, 7u);
  EXPECT_EQ(bus.stats().dropped, 3u);
}

TEST(LocalBusTest, SequencesCountPerTopicWithinABoundedMemory) {
  LocalBus bus = MakeBus();
  // One topic kept busy stays remembered while kMaxSequencedTopics others come and go.
  EXPECT_EQ(bus.Publish("hot", "{}", 0)->seq, 1u);
  for (size_t i = 0; i < kMaxSequencedTopics + 10; ++i) {
    ASSERT_EQ(bus.Publish("cold/" + std::to_string(i), "{}", 0)->seq, 1u);
    if (i % 1000 == 0) {
      ASSERT_TRUE(bus.Publish("hot", "{}", 0).ok());
    }
  }
  EXPECT_EQ(bus.Publish("hot", "{}", 0)->seq, 13u);
  // The least recently published were forgotten: they start again.
  EXPECT_EQ(bus.Publish("cold/0", "{}", 0)->seq, 1u);
  EXPECT_EQ(bus.Publish("cold/10009", "{}", 0)->seq, 2u);
}

TEST(LocalBusTest, ObserversSeeWhatIsPublishedHereAndEachChangeOfFilters) {
  LocalBus bus = MakeBus();
  std::vector<std::string> published;
  std::vector<std::vector<std::string>> filters;
  bus.SetObservers(
      [&](const Insight& in, const std::string& doc) {
        EXPECT_EQ(Decode(doc)->id, in.id);
        published.push_back(in.topic);
      },
      [&] { filters.push_back(bus.Filters()); });
  absl::StatusOr<uint64_t> a =
      bus.Subscribe({"x/#", "y"}, [](const Insight&, const std::string&) { return true; });
  ASSERT_TRUE(a.ok());
  absl::StatusOr<uint64_t> b =
      bus.Subscribe({"y"}, [](const Insight&, const std::string&) { return true; });
  ASSERT_TRUE(b.ok());
  ASSERT_TRUE(bus.Publish("x/1", "{}", 1).ok());
  ASSERT_TRUE(bus.Publish("nobody/listens", "{}", 1).ok());
  Insight received = *bus.Publish("z", "{}", 1);
  bus.Deliver(received);  // received from a peer: not published here, not sent on
  bus.Unsubscribe(*a);
  EXPECT_THAT(published, ElementsAre("x/1", "nobody/listens", "z"));
  EXPECT_THAT(filters,
              ElementsAre(ElementsAre("x/#", "y"), ElementsAre("x/#", "y"), ElementsAre("y")));
}

TEST(LocalBusTest, ObserversSeeEachTopicInSequenceOrderWhateverThreadsPublish) {
  LocalBus bus = MakeBus();
  std::vector<uint64_t> stored, sent;  // each under the bus's order: no lock of their own
  bus.SetStore([&](const Insight& in, const std::string&) {
    stored.push_back(in.seq);
    return absl::OkStatus();
  });
  bus.SetObservers([&](const Insight& in, const std::string&) { sent.push_back(in.seq); }, nullptr);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&bus] {
      for (int i = 0; i < 2000; ++i) ASSERT_TRUE(bus.Publish("one/topic", "{}", 1).ok());
    });
  }
  for (std::thread& t : threads) t.join();
  ASSERT_EQ(sent.size(), 8000u);
  for (size_t i = 0; i < sent.size(); ++i) {
    ASSERT_EQ(stored[i], i + 1) << "the store saw seq " << stored[i] << " at " << i;
    ASSERT_EQ(sent[i], i + 1) << "the mesh was handed seq " << sent[i] << " at " << i;
  }
}

TEST(LocalBusTest, AStoreThatFailsPublishesNothing) {
  LocalBus bus = MakeBus();
  int told = 0, subscriber = 0;
  bus.SetStore([](const Insight&, const std::string&) {
    return absl::ResourceExhaustedError("the outbox is full");
  });
  bus.SetObservers([&](const Insight&, const std::string&) { ++told; }, nullptr);
  ASSERT_TRUE(bus.Subscribe({"#"},
                            [&](const Insight&, const std::string&) {
                              ++subscriber;
                              return true;
                            })
                  .ok());
  absl::StatusOr<Insight> in = bus.Publish("t", "{}", 1);
  EXPECT_EQ(in.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(told, 0);
  EXPECT_EQ(subscriber, 0);
}

}  // namespace
}  // namespace hivemesh::bus
