// The peer client's mesh links in process against an HttpServer "peer": many calls open on one
// link, answers out of order, a peer that declines links (and is asked again 30 s of the
// client's clock later), a call that times out on a busy link, and what an answered call leaves
// behind. Time runs on a ManualClock; waits for real I/O poll with generous deadlines.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <malloc.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "base/clock.h"
#include "base/strings.h"
#include "support/parking_server.h"
#include "transport/http_server.h"
#include "transport/io_threads.h"
#include "transport/peer_client.h"
#include "transport/peer_client_test_util.h"

namespace hivemesh {
namespace {

using namespace std::chrono_literals;
using namespace test_util;

TEST(PeerLinkTest, ConcurrentCallsShareOneLinkAndEachGetsItsOwnAnswer) {
  test::ParkingServer peer;
  auto io = IoThreads::Create(1);
  std::unique_ptr<PeerClient> client = PeerClient::Create(io);
  constexpr int kCalls = 20;
  std::atomic<int> matched{0}, answered{0};
  io->RunOn(0, [&] {
    for (int i = 0; i < kCalls; ++i) {
      PeerRequest r;
      r.address = StrCat("127.0.0.1:", peer.port());
      r.target = "/x";
      r.body = StrCat("call ", i);
      client->Send(std::move(r), [&, i](absl::StatusOr<PeerResponse> resp) {
        if (resp.ok() && *resp->body == StrCat("call ", i)) ++matched;
        ++answered;
      });
    }
  });
  // All of them reach the peer while none is answered: they are open on the link together.
  ASSERT_TRUE(WaitFor([&] { return peer.count() == kCalls; }));
  EXPECT_EQ(client->open_connections(), 1);
  EXPECT_EQ(client->open_links(), 1);
  EXPECT_EQ(peer.server().busy_connections(), kCalls);
  peer.AnswerAllReversed();
  ASSERT_TRUE(WaitFor([&] { return answered.load() == kCalls; }));
  EXPECT_EQ(matched.load(), kCalls);
  EXPECT_EQ(client->open_connections(), 1);
  client->Stop();
  io->Stop();
  peer.server().Stop();
}

TEST(PeerLinkTest, APeerThatDeclinesLinksIsSentPlainHttp) {
  test::ParkingServer peer({.accept_links = false});
  auto io = IoThreads::Create(1);
  std::unique_ptr<PeerClient> client = PeerClient::Create(io);
  std::atomic<int> ok{0};
  // The first call asks for a link, is declined, and goes over plain HTTP...
  client->Send(To(peer.server(), "/first", "one"), [&](absl::StatusOr<PeerResponse> r) {
    if (r.ok() && *r->body == "one") ++ok;
  });
  // (the declined upgrade is itself answered by the handler, as a plain health check)
  ASSERT_TRUE(WaitFor([&] { return peer.count() == 1; }));
  peer.AnswerAllReversed();
  ASSERT_TRUE(WaitFor([&] { return peer.count() == 2; }));
  peer.AnswerAllReversed();
  ASSERT_TRUE(WaitFor([&] { return ok.load() == 1; }));
  // ...and so do the next ones: one plain connection per request open at once.
  for (int i = 0; i < 3; ++i) {
    client->Send(To(peer.server(), "/next", "n"), [&](absl::StatusOr<PeerResponse> r) {
      if (r.ok() && *r->body == "n") ++ok;
    });
  }
  ASSERT_TRUE(WaitFor([&] { return peer.count() == 5; }));
  EXPECT_EQ(client->open_connections(), 3);
  EXPECT_EQ(client->open_links(), 0);
  peer.AnswerAllReversed();
  ASSERT_TRUE(WaitFor([&] { return ok.load() == 4; }));
  client->Stop();
  io->Stop();
  peer.server().Stop();
}

TEST(PeerLinkTest, APeerThatDeclinedALinkIsAskedAgainAfter30Seconds) {
  absl::Mutex mu;
  std::vector<std::string> seen;  // the targets the peer was sent, in order; guarded by mu
  std::unique_ptr<HttpServer> peer = EchoPeer(
      [&](const HttpRequest& req, HttpResponder done) {
        {
          absl::MutexLock lock(&mu);
          seen.emplace_back(req.target());
        }
        HttpResponse r;
        r.body = "ok";
        done(std::move(r));
      },
      /*accept_links=*/false);
  ManualClock clock;
  auto io = IoThreads::Create(1);
  std::unique_ptr<PeerClient> client = PeerClient::Create(io, nullptr, clock);
  ASSERT_TRUE(Call(*client, To(*peer, "/one")).ok());  // asks for a link: declined
  ASSERT_TRUE(Call(*client, To(*peer, "/two")).ok());  // plain, without asking
  clock.Advance(29s);
  ASSERT_TRUE(Call(*client, To(*peer, "/three")).ok());  // still plain
  clock.Advance(1s);
  ASSERT_TRUE(Call(*client, To(*peer, "/four")).ok());  // 30 s on: asks again
  ASSERT_TRUE(Call(*client, To(*peer, "/five")).ok());  // declined again: plain
  client->Stop();
  io->Stop();
  peer->Stop();
  absl::MutexLock lock(&mu);
  EXPECT_THAT(seen, ::testing::ElementsAre("/v2/health/live", "/one", "/two", "/three",
                                           "/v2/health/live", "/four", "/five"));
}

TEST(PeerLinkTest, ACallThatTimesOutOnABusyLinkLeavesTheLinkOpen) {
  test::ParkingServer parking({.hold = "/slow", .other_body = "fast"});
  HttpServer* peer = &parking.server();
  ManualClock clock;
  auto io = IoThreads::Create(1);
  std::unique_ptr<PeerClient> client = PeerClient::Create(io, nullptr, clock);
  PeerRequest slow = To(*peer, "/slow");
  slow.timeout = 100ms;
  std::promise<absl::StatusOr<PeerResponse>> slow_answer;
  client->Send(slow, [&](absl::StatusOr<PeerResponse> r) { slow_answer.set_value(std::move(r)); });
  auto slow_done = slow_answer.get_future();
  ASSERT_TRUE(WaitFor([&] { return parking.count() == 1; }));
  // Answers keep arriving on the link while the slow call waits: each fast call is answered,
  // in the order sent, and the slow one is still open after all of them (the clock has not
  // moved, however long they took).
  for (int i = 0; i < 5; ++i) {
    absl::StatusOr<PeerResponse> r = Call(*client, To(*peer, "/fast", StrCat("f", i)));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(*r->body, "fast");
    EXPECT_EQ(slow_done.wait_for(0s), std::future_status::timeout) << "after fast call " << i;
  }
  EXPECT_EQ(client->open_links(), 1);
  clock.Advance(100ms);
  ASSERT_TRUE(ReadySoon(slow_done));
  absl::StatusOr<PeerResponse> r = slow_done.get();
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded) << r.status();
  EXPECT_EQ(client->open_connections(), 1);  // the link was not stuck: it stays
  EXPECT_EQ(client->open_links(), 1);
  // The late answer is dropped; the link goes on serving.
  ASSERT_EQ(parking.count(), 1u);
  parking.Answer("/slow");
  absl::StatusOr<PeerResponse> after = Call(*client, To(*peer, "/fast"));
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(*after->body, "fast");
  EXPECT_EQ(client->open_connections(), 1);
  EXPECT_EQ(parking.handled(), 7u) << "the slow call was sent once: not retried";
  client->Stop();
  io->Stop();
}

// Calls sent in waves of `wave` at once, `total` in all, from the client's loop; returns how many
// succeeded.
int SendWaves(IoThreads& io, PeerClient& client, const HttpServer& peer, int total, int wave) {
  std::atomic<int> ok{0}, done{0};
  for (int sent = 0; sent < total; sent += wave) {
    const int target = done.load() + wave;
    io.RunOn(0, [&] {
      for (int i = 0; i < wave; ++i) {
        PeerRequest r = To(peer, "/w", "x");
        r.timeout = 60s;
        client.Send(std::move(r), [&](absl::StatusOr<PeerResponse> resp) {
          if (resp.ok()) ++ok;
          ++done;
        });
      }
    });
    if (!WaitFor([&] { return done.load() >= target; })) break;
  }
  return ok.load();
}

TEST(PeerLinkTest, AnsweredCallsLeaveNothingBehindOnTheLink) {
  // Each call on a link has a timeout; once it is answered, nothing of it may stay (e.g. its
  // deadline waiting in a timer queue until it passes), or a busy link grows by every request
  // of the last timeout period.
  auto peer = EchoPeer();
  auto io = IoThreads::Create(1);
  std::unique_ptr<PeerClient> client = PeerClient::Create(io);
  ASSERT_EQ(SendWaves(*io, *client, *peer, 4000, 100), 4000);  // warm up
  // Heap in use, large (mmapped) blocks included.
  auto in_use = [] {
    const struct mallinfo2 m = mallinfo2();
    return m.uordblks + m.hblkhd;
  };
  const size_t before = in_use();
  ASSERT_EQ(SendWaves(*io, *client, *peer, 40000, 100), 40000);
  const size_t after = in_use();
  EXPECT_LT(after, before + 256 * 1024) << "grew by " << (after - before) << " bytes";
  EXPECT_EQ(client->open_links(), 1);
  client->Stop();
  io->Stop();
}

}  // namespace
}  // namespace hivemesh
