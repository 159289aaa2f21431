// MeshDelivery (bus/mesh_delivery.h) with a peer client that holds each request until the test
// answers it, on a manual clock: who gets what, order and batches, one request in flight per
// peer, retries after failures, refusals dropped, the queue's bound, peers that leave.
#include "bus/mesh_delivery.h"

#include <gtest/gtest.h>

#include <deque>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "base/clock.h"
#include "bus/insight.h"
#include "transport/peer_client.h"

namespace hivemesh::bus {
namespace {

using namespace std::chrono_literals;

// Keeps every request with its callback; the test answers them in any order.
class HeldClient final : public PeerClient {
 public:
  struct Held {
    PeerRequest request;
    PeerCallback done;
  };
  void Send(PeerRequest request, PeerCallback done) override {
    absl::MutexLock lock(&mu_);
    held_.push_back({std::move(request), std::move(done)});
  }
  void CloseConnectionsTo(const std::string&) override {}
  int open_connections() const override { return 0; }
  int open_links() const override { return 0; }
  void Stop() override {}

  size_t size() {
    absl::MutexLock lock(&mu_);
    return held_.size();
  }
  // Takes the oldest request held.
  Held Take() {
    absl::MutexLock lock(&mu_);
    Held h = std::move(held_.front());
    held_.pop_front();
    return h;
  }

 private:
  absl::Mutex mu_;
  std::deque<Held> held_ ABSL_GUARDED_BY(mu_);
};

PeerResponse Status(int status) {
  PeerResponse r;
  r.status = status;
  return r;
}

Insight Make(const std::string& topic, uint64_t seq) {
  Insight in;
  in.id = "a.5f3c2a10." + std::string(12 - std::to_string(seq).size(), '0') + std::to_string(seq);
  in.topic = topic;
  in.node = "a";
  in.time_ms = 1796650802125;
  in.seq = seq;
  in.values = "{\"n\":" + std::to_string(seq) + "}";
  return in;
}

// The topics and sequence numbers a batch carries, as "topic#seq".
std::vector<std::string> Carried(const PeerRequest& r) {
  absl::StatusOr<std::vector<Insight>> batch = DecodeBatch(r.body, "a");
  EXPECT_TRUE(batch.ok()) << batch.status();
  std::vector<std::string> out;
  if (batch.ok()) {
    for (const Insight& in : *batch) out.push_back(in.topic + "#" + std::to_string(in.seq));
  }
  return out;
}

struct Fixture {
  explicit Fixture(MeshDeliveryOptions o = {}) : delivery(&client, clock, o) {}
  void Publish(const std::string& topic, uint64_t seq) {
    const Insight in = Make(topic, seq);
    delivery.Send(in, Encode(in));
  }
  HeldClient client;
  ManualClock clock;
  MeshDelivery delivery;
};

TEST(MeshDeliveryTest, EachPeerGetsWhatItsFiltersMatchInOrder) {
  Fixture f;
  f.delivery.SetPeers({{"b", "127.0.0.1:1", {"site/+/alerts/#"}},
                       {"c", "127.0.0.1:2", {"site/line1/people", "bad/#/filter"}},
                       {"d", "127.0.0.1:3", {"only/bad/#/filters"}}});
  EXPECT_EQ(f.delivery.PeersFor("site/line1/alerts/vibration"), std::vector<std::string>{"b"});
  EXPECT_EQ(f.delivery.PeersFor("site/line1/people"), std::vector<std::string>{"c"});
  f.Publish("site/line1/alerts/vibration", 1);
  f.Publish("site/line1/people", 1);
  f.Publish("elsewhere", 1);
  ASSERT_EQ(f.client.size(), 2u);
  HeldClient::Held to_b = f.client.Take();
  EXPECT_EQ(to_b.request.peer_node, "b");
  EXPECT_EQ(to_b.request.address, "127.0.0.1:1");
  EXPECT_EQ(to_b.request.target, kDeliverPath);
  EXPECT_EQ(Carried(to_b.request), std::vector<std::string>{"site/line1/alerts/vibration#1"});
  HeldClient::Held to_c = f.client.Take();
  EXPECT_EQ(to_c.request.peer_node, "c");
  // While b's request is out, b's next insights wait and then go together, in order.
  f.Publish("site/line2/alerts/fire", 1);
  f.Publish("site/line1/alerts/vibration", 2);
  EXPECT_EQ(f.client.size(), 0u) << "one request in flight per peer";
  to_b.done(Status(200));
  ASSERT_EQ(f.client.size(), 1u);
  EXPECT_EQ(
      Carried(f.client.Take().request),
      (std::vector<std::string>{"site/line2/alerts/fire#1", "site/line1/alerts/vibration#2"}));
  to_c.done(Status(200));
  EXPECT_EQ(f.delivery.stats().sent, 2u);
}

TEST(MeshDeliveryTest, AFailedBatchGoesAgainAfterThePauseAndARefusedOneIsDropped) {
  Fixture f(MeshDeliveryOptions{.retry_after = 500ms});
  f.delivery.SetPeers({{"b", "127.0.0.1:1", {"#"}}});
  f.Publish("t", 1);
  f.client.Take().done(absl::UnavailableError("connection refused"));
  f.Publish("t", 2);
  f.delivery.Retry();
  EXPECT_EQ(f.client.size(), 0u) << "not before the pause is over";
  f.clock.Advance(500ms);
  f.delivery.Retry();
  ASSERT_EQ(f.client.size(), 1u);
  HeldClient::Held again = f.client.Take();
  EXPECT_EQ(Carried(again.request), (std::vector<std::string>{"t#1", "t#2"}));
  // 503 and 403 (the peer has not learnt this member yet) are tried again; 400 is final.
  again.done(Status(503));
  f.clock.Advance(500ms);
  f.delivery.Retry();
  f.client.Take().done(Status(403));
  f.clock.Advance(500ms);
  f.Publish("t", 3);  // a send after the pause goes, with what waits
  HeldClient::Held last = f.client.Take();
  EXPECT_EQ(Carried(last.request), (std::vector<std::string>{"t#1", "t#2", "t#3"}));
  last.done(Status(400));
  const MeshDelivery::Stats s = f.delivery.stats();
  EXPECT_EQ(s.failures, 3u);
  EXPECT_EQ(s.dropped, 3u);
  EXPECT_EQ(s.sent, 0u);
  EXPECT_EQ(s.queued, 0u);
}

TEST(MeshDeliveryTest, BatchesAndQueuesAreBounded) {
  Fixture f(MeshDeliveryOptions{.max_queue = 8, .max_batch = 3});
  f.delivery.SetPeers({{"b", "127.0.0.1:1", {"#"}}});
  f.Publish("t", 1);
  HeldClient::Held first = f.client.Take();  // t#1 in flight
  for (uint64_t i = 2; i <= 12; ++i) f.Publish("t", i);
  // 8 at most: the oldest waiting (2, 3, 4, 5) made room; the one in flight stayed.
  MeshDelivery::Stats s = f.delivery.stats();
  EXPECT_EQ(s.queued, 8u);
  EXPECT_EQ(s.dropped, 4u);
  first.done(Status(200));
  std::vector<std::string> got;
  while (f.client.size() > 0) {
    HeldClient::Held h = f.client.Take();
    const std::vector<std::string> batch = Carried(h.request);
    EXPECT_LE(batch.size(), 3u);
    got.insert(got.end(), batch.begin(), batch.end());
    h.done(Status(200));
  }
  EXPECT_EQ(got, (std::vector<std::string>{"t#6", "t#7", "t#8", "t#9", "t#10", "t#11", "t#12"}));
  EXPECT_EQ(f.delivery.stats().sent, 8u);
}

TEST(MeshDeliveryTest, QueuesAreBoundedInBytesToo) {
  const size_t one = Encode(Make("t", 1)).size();
  Fixture f(MeshDeliveryOptions{.max_queue_bytes = 3 * one + one / 2});
  f.delivery.SetPeers({{"b", "127.0.0.1:1", {"#"}}});
  f.Publish("t", 1);
  HeldClient::Held first = f.client.Take();  // t#1 in flight
  for (uint64_t i = 2; i <= 6; ++i) f.Publish("t", i);
  MeshDelivery::Stats s = f.delivery.stats();
  EXPECT_EQ(s.queued, 3u);  // t#1 (in flight), then the newest two that fit: t#5, t#6
  EXPECT_EQ(s.dropped, 3u);
  first.done(Status(200));
  EXPECT_EQ(Carried(f.client.Take().request), (std::vector<std::string>{"t#5", "t#6"}));
}

TEST(MeshDeliveryTest, APeerThatLeavesTakesItsQueueAndLateAnswersAreIgnored) {
  Fixture f;
  f.delivery.SetPeers({{"b", "127.0.0.1:1", {"#"}}});
  f.Publish("t", 1);
  HeldClient::Held in_flight = f.client.Take();
  f.Publish("t", 2);
  f.delivery.SetPeers({});
  EXPECT_EQ(f.delivery.stats().dropped, 2u);
  in_flight.done(Status(200));  // the answer of a peer that left changes nothing
  EXPECT_EQ(f.client.size(), 0u);
  // Back at another address (restarted): a new generation starts from what it is sent now.
  f.delivery.SetPeers({{"b", "127.0.0.1:9", {"#"}}});
  f.Publish("t", 3);
  HeldClient::Held h = f.client.Take();
  EXPECT_EQ(h.request.address, "127.0.0.1:9");
  EXPECT_EQ(Carried(h.request), std::vector<std::string>{"t#3"});
  f.delivery.Stop();
  h.done(Status(200));
  f.Publish("t", 4);
  EXPECT_EQ(f.client.size(), 0u) << "nothing is sent after Stop";
}

TEST(MeshDeliveryTest, APeerThatTakesSmallerBodiesGetsTheSameInsightsInHalves) {
  Fixture f;
  f.delivery.SetPeers({{"b", "127.0.0.1:1", {"#"}}});
  f.Publish("t", 1);
  HeldClient::Held first = f.client.Take();
  for (uint64_t i = 2; i <= 5; ++i) f.Publish("t", i);
  first.done(Status(200));
  HeldClient::Held four = f.client.Take();
  EXPECT_EQ(Carried(four.request).size(), 4u);
  four.done(Status(413));
  HeldClient::Held two = f.client.Take();  // at once, no pause
  EXPECT_EQ(Carried(two.request), (std::vector<std::string>{"t#2", "t#3"}));
  two.done(Status(413));
  HeldClient::Held one = f.client.Take();
  EXPECT_EQ(Carried(one.request), std::vector<std::string>{"t#2"});
  one.done(Status(413));  // one insight too large for the peer: dropped
  HeldClient::Held next = f.client.Take();
  EXPECT_EQ(Carried(next.request), std::vector<std::string>{"t#3"});
  next.done(Status(200));
  while (f.client.size() > 0) f.client.Take().done(Status(200));
  const MeshDelivery::Stats s = f.delivery.stats();
  EXPECT_EQ(s.sent, 4u);
  EXPECT_EQ(s.dropped, 1u);
  EXPECT_EQ(s.failures, 0u);
}

TEST(MeshDeliveryTest, AnswersAfterTheDeliveryIsGoneChangeNothing) {
  HeldClient client;
  ManualClock clock;
  HeldClient::Held held;
  {
    MeshDelivery delivery(&client, clock);
    delivery.SetPeers({{"b", "127.0.0.1:1", {"#"}}});
    const Insight in = Make("t", 1);
    delivery.Send(in, Encode(in));
    held = client.Take();
  }
  held.done(Status(200));  // the state is gone: the callback finds nothing (ASan would tell)
  EXPECT_EQ(client.size(), 0u);
}

TEST(InsightBatchTest, ABatchIsTheSendersOwnInsightsWithinTheLimits) {
  std::string batch;
  AppendToBatch(batch, Encode(Make("t", 1)));
  AppendToBatch(batch, Encode(Make("u/v", 2)));
  absl::StatusOr<std::vector<Insight>> got = DecodeBatch(batch, "a");
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 2u);
  EXPECT_EQ((*got)[1].topic, "u/v");
  EXPECT_TRUE(DecodeBatch("", "a").ok());
  // Forged: another node's insight sent by "b"; the refusal quotes a long sender only in part.
  EXPECT_NE(std::string(DecodeBatch(batch, "b").status().message()).find("line 1"),
            std::string::npos);
  EXPECT_LT(DecodeBatch(batch, std::string(4096, 'b')).status().message().size(), 512u);
  // Malformed: a broken second line, no final newline, an oversized batch, too many lines.
  std::string broken = batch;
  broken.insert(broken.find('\n') + 1, "{\"id\":1}\n");
  EXPECT_NE(std::string(DecodeBatch(broken, "a").status().message()).find("line 2"),
            std::string::npos);
  EXPECT_FALSE(DecodeBatch(batch.substr(0, batch.size() - 1), "a").ok());
  EXPECT_EQ(DecodeBatch(std::string(kMaxBatchBytes + 1, '\n'), "a").status().code(),
            absl::StatusCode::kOutOfRange);
  std::string many;
  for (size_t i = 0; i <= kMaxBatchInsights; ++i) AppendToBatch(many, Encode(Make("t", i + 1)));
  EXPECT_EQ(DecodeBatch(many, "a").status().code(), absl::StatusCode::kOutOfRange);
}

}  // namespace
}  // namespace hivemesh::bus
