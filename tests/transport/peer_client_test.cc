// PeerClient in process against an HttpServer "peer": pooling, failures, shutdown, and I/O
// threads shared with an HTTP server (a forwarded request never changes threads).
#include "transport/peer_client.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <malloc.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/strings.h"
#include "support/http_client.h"
#include "support/parking_server.h"
#include "transport/http_server.h"
#include "transport/io_threads.h"

namespace hivemesh::routing {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

bool WaitFor(const std::function<bool()>& done) {
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

// A peer that echoes the request's target and body, on its own threads.
// With `accept_links` false the peer takes no mesh link, so the client uses plain pooled HTTP/1.1.
std::unique_ptr<HttpServer> EchoPeer(HttpHandler handler = nullptr, bool accept_links = true,
                                     uint16_t port = 0) {
  HttpServerOptions o;
  o.port = port;
  o.accept_links = accept_links;
  if (!handler) {
    handler = [](const HttpRequest& req, HttpResponder done) {
      HttpResponse r;
      r.content_type = "text/plain";
      r.headers.emplace_back("X-Target", std::string(req.target()));
      r.body = *req.body();
      done(std::move(r));
    };
  }
  auto server = HttpServer::Create(o, std::move(handler));
  EXPECT_TRUE(server.ok()) << server.status();
  (*server)->Start();
  return std::move(*server);
}

PeerRequest To(const HttpServer& peer, std::string target, std::string body = "") {
  PeerRequest r;
  r.address = StrCat("127.0.0.1:", peer.port());
  r.target = std::move(target);
  r.body = std::move(body);
  return r;
}

// Sends and waits for the answer.
absl::StatusOr<PeerResponse> Call(PeerClient& client, PeerRequest request) {
  std::promise<absl::StatusOr<PeerResponse>> answer;
  client.Send(std::move(request),
              [&](absl::StatusOr<PeerResponse> r) { answer.set_value(std::move(r)); });
  auto future = answer.get_future();
  if (future.wait_for(10s) != std::future_status::ready) {
    return absl::DeadlineExceededError("test: no callback");
  }
  return future.get();
}

TEST(PeerHeadersTest, NamesAreLowerCaseAndALaterFieldReplacesTheEarlier) {
  PeerHeaders h;
  h.reserve(2, 16);  // less room than needed: the table grows and earlier views move
  h.Add("Content-Type", "application/json");
  h.Add("Hivemesh-Load", "1 2 3 4 5");
  h.Add("content-TYPE", "application/x-hivemesh-tensors");
  h.Add("X-Empty", "");
  EXPECT_EQ(h.size(), 3u);
  EXPECT_EQ(h.Get("content-type"), "application/x-hivemesh-tensors");
  EXPECT_EQ(h.Get("hivemesh-load"), "1 2 3 4 5");
  EXPECT_EQ(h.Get("x-empty"), "");
  EXPECT_EQ(h.Get("Content-Type"), std::nullopt) << "looked up by the lower-case name";
  EXPECT_EQ(h.Get("content"), std::nullopt);
  EXPECT_TRUE(PeerHeaders().empty());
}

TEST(PeerClientTest, OwnThreadSendsAndPools) {
  for (bool links : {true, false}) {
    SCOPED_TRACE(links ? "mesh link" : "plain HTTP");
    auto peer = EchoPeer(nullptr, links);
    std::unique_ptr<PeerClient> client = PeerClient::Create();
    for (int i = 0; i < 5; ++i) {
      absl::StatusOr<PeerResponse> r = Call(*client, To(*peer, "/a", "body" + std::to_string(i)));
      ASSERT_TRUE(r.ok()) << r.status();
      EXPECT_EQ(r->status, 200);
      EXPECT_EQ(*r->body, "body" + std::to_string(i));
      EXPECT_EQ(r->headers.Get("x-target"), "/a");
    }
    EXPECT_EQ(client->open_connections(), 1);  // one connection, reused
    EXPECT_EQ(client->open_links(), links ? 1 : 0);
    client->Stop();
    client->Stop();  // idempotent
    EXPECT_EQ(client->open_connections(), 0);
  }
}

TEST(PeerClientTest, SharedLoopsKeepTheCallersThreadAndPoolPerLoop) {
  auto peer = EchoPeer();
  auto io = IoThreads::Create(2);
  std::unique_ptr<PeerClient> client = PeerClient::Create(io);
  for (int loop = 0; loop < 2; ++loop) {
    for (int i = 0; i < 3; ++i) {
      std::promise<std::pair<int, std::thread::id>> callback;
      std::thread::id sender;
      io->RunOn(loop, [&] {
        sender = std::this_thread::get_id();
        client->Send(To(*peer, "/x"), [&](absl::StatusOr<PeerResponse> r) {
          EXPECT_TRUE(r.ok()) << r.status();
          callback.set_value({io->CurrentLoop(), std::this_thread::get_id()});
        });
      });
      auto f = callback.get_future();
      ASSERT_EQ(f.wait_for(10s), std::future_status::ready);
      auto [seen_loop, seen_thread] = f.get();
      EXPECT_EQ(seen_loop, loop);
      EXPECT_EQ(seen_thread, sender);
    }
  }
  EXPECT_EQ(client->open_connections(), 2);  // one per loop
  // From a thread that runs no loop: a loop is picked; the callback runs on it.
  std::promise<int> from_outside;
  client->Send(To(*peer, "/y"),
               [&](absl::StatusOr<PeerResponse>) { from_outside.set_value(io->CurrentLoop()); });
  auto f = from_outside.get_future();
  ASSERT_EQ(f.wait_for(10s), std::future_status::ready);
  EXPECT_GE(f.get(), 0);
  client->Stop();
  EXPECT_EQ(client->open_connections(), 0);
  EXPECT_FALSE(io->stopped());  // the shared loops are not the client's to stop
  io->Stop();
}

TEST(PeerClientTest, ForwardingServerAnswersOnTheThreadThatReadTheRequest) {
  // The agent's wiring in small: an HTTP server and a peer client on the same loops; each
  // request is forwarded to an echo peer and the peer's answer written back. Every step of one
  // request runs on one thread.
  auto peer = EchoPeer();
  auto io = IoThreads::Create(2);
  std::unique_ptr<PeerClient> client = PeerClient::Create(io);
  std::atomic<int> thread_changes{0}, forwarded{0};
  HttpServerOptions o;
  o.port = 0;
  const std::string peer_address = StrCat("127.0.0.1:", peer->port());
  auto front = HttpServer::Create(
      o,
      [&](const HttpRequest& req, HttpResponder done) {
        const std::thread::id reader = std::this_thread::get_id();
        PeerRequest pr;
        pr.address = peer_address;
        pr.target = std::string(req.target());
        pr.body = *req.body();
        client->Send(std::move(pr),
                     [&, reader, done = std::move(done)](absl::StatusOr<PeerResponse> r) {
                       if (std::this_thread::get_id() != reader) ++thread_changes;
                       ++forwarded;
                       HttpResponse out;
                       out.content_type = "text/plain";
                       out.status = r.ok() ? r->status : 502;
                       out.body = r.ok() ? *r->body : std::string(MessageOf(r.status()));
                       done(std::move(out));
                     });
      },
      io);
  ASSERT_TRUE(front.ok());
  (*front)->Start();
  std::vector<std::thread> clients;
  std::atomic<int> ok{0};
  for (int t = 0; t < 6; ++t) {
    clients.emplace_back([&, t] {
      test::HttpConnection conn((*front)->port());
      for (int i = 0; i < 40; ++i) {
        const std::string body = StrCat("req ", t, " ", i);
        test::HttpResult r = conn.Request("POST", "/v2/echo", body);
        if (r.status == 200 && r.body == body) ++ok;
      }
    });
  }
  for (std::thread& t : clients) t.join();
  EXPECT_EQ(ok.load(), 6 * 40);
  EXPECT_EQ(forwarded.load(), 6 * 40);
  EXPECT_EQ(thread_changes.load(), 0);
  EXPECT_LE(client->open_connections(), 6);
  // The agent's shutdown order: the client first, then the server, then the loops.
  client->Stop();
  (*front)->Stop();
  io->Stop();
}

TEST(PeerClientTest, RefusedAndBadAddressesFailWithoutCallingBackInsideSend) {
  auto io = IoThreads::Create(1);
  std::unique_ptr<PeerClient> client = PeerClient::Create(io);
  // A port nobody listens on: bind one, then close it.
  uint16_t closed_port = 0;
  {
    HttpServerOptions o;
    o.port = 0;
    auto s = HttpServer::Create(o, [](const HttpRequest&, HttpResponder) {});
    ASSERT_TRUE(s.ok());
    closed_port = (*s)->port();
  }
  PeerRequest refused;
  refused.address = StrCat("127.0.0.1:", closed_port);
  refused.target = "/";
  absl::StatusOr<PeerResponse> r = Call(*client, refused);
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(IsConnectionRefused(r.status())) << r.status();

  PeerRequest bad;
  bad.address = "not-an-address";
  bad.target = "/";
  std::promise<absl::Status> failed;
  bool inside_send = true;
  bool called_inside = false;
  io->RunOn(0, [&] {
    client->Send(bad, [&](absl::StatusOr<PeerResponse> r) {
      called_inside = inside_send;
      failed.set_value(r.status());
    });
    inside_send = false;
  });
  auto f = failed.get_future();
  ASSERT_EQ(f.wait_for(10s), std::future_status::ready);
  EXPECT_EQ(f.get().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(called_inside);
  client->Stop();
  io->Stop();
}

TEST(PeerClientTest, PooledConnectionClosedByThePeerIsReplaced) {
  for (bool links : {true, false}) {
    SCOPED_TRACE(links ? "mesh link" : "plain HTTP");
    auto peer = EchoPeer(nullptr, links);
    auto io = IoThreads::Create(1);
    std::unique_ptr<PeerClient> client = PeerClient::Create(io);
    ASSERT_TRUE(Call(*client, To(*peer, "/1")).ok());
    EXPECT_EQ(client->open_connections(), 1);
    // The peer goes away and comes back on the same port; the idle connection is dead.
    const uint16_t port = peer->port();
    peer->Stop();
    peer.reset();
    auto again = EchoPeer(
        [](const HttpRequest&, HttpResponder done) {
          HttpResponse r;
          r.body = "again";
          done(std::move(r));
        },
        links, port);
    PeerRequest req;
    req.address = StrCat("127.0.0.1:", port);
    req.target = "/2";
    absl::StatusOr<PeerResponse> r = Call(*client, req);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(*r->body, "again");
    client->Stop();
    io->Stop();
  }
}

TEST(PeerClientTest, ACallOpenOnALinkWhenThePeerGoesAwayIsAnswered) {
  // The peer stops with a call open on the link: the call is tried once more on a new link
  // (the peer may just have closed the old one), finds nobody listening and fails as a refused
  // connection, which the forwarder retries elsewhere. It is not lost, and the peer, once back,
  // gets the next call.
  auto peer = std::make_unique<test::ParkingServer>(
      test::ParkingServer::Options{.hold = "/held", .other_body = "first"});
  auto io = IoThreads::Create(1);
  std::unique_ptr<PeerClient> client = PeerClient::Create(io);
  ASSERT_TRUE(Call(*client, To(peer->server(), "/open")).ok());  // the link is open
  std::promise<absl::StatusOr<PeerResponse>> held;
  client->Send(To(peer->server(), "/held"),
               [&](absl::StatusOr<PeerResponse> r) { held.set_value(std::move(r)); });
  ASSERT_TRUE(WaitFor([&] { return peer->count() == 1; }));
  const uint16_t port = peer->port();
  peer->server().Stop();  // closes the link with the call open on it
  auto f = held.get_future();
  ASSERT_EQ(f.wait_for(10s), std::future_status::ready);
  absl::StatusOr<PeerResponse> r = f.get();
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(IsConnectionRefused(r.status())) << r.status();
  EXPECT_EQ(client->open_links(), 0);
  peer->Forget();
  peer.reset();
  auto again = EchoPeer(nullptr, true, port);
  absl::StatusOr<PeerResponse> next = Call(*client, To(*again, "/next", "n"));
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(*next->body, "n");
  EXPECT_EQ(client->open_links(), 1);
  client->Stop();
  io->Stop();
}

TEST(PeerClientTest, StopAbandonsRequestsInFlight) {
  for (bool shared : {false, true}) {
    SCOPED_TRACE(shared ? "shared loops" : "own thread");
    std::mutex mu;
    std::vector<HttpResponder> parked;
    auto peer = EchoPeer([&](const HttpRequest&, HttpResponder done) {
      std::lock_guard<std::mutex> lock(mu);
      parked.push_back(std::move(done));
    });
    std::shared_ptr<IoThreads> io = shared ? IoThreads::Create(2) : nullptr;
    std::unique_ptr<PeerClient> client = PeerClient::Create(io);
    std::atomic<int> callbacks{0};
    for (int i = 0; i < 4; ++i) {
      client->Send(To(*peer, "/slow"), [&](absl::StatusOr<PeerResponse>) { ++callbacks; });
    }
    ASSERT_TRUE(WaitFor([&] {
      std::lock_guard<std::mutex> lock(mu);
      return parked.size() == 4;
    }));
    client->Stop();  // returns although 4 requests wait for answers
    // Answers arriving now, and sends after Stop, call nobody back.
    {
      std::lock_guard<std::mutex> lock(mu);
      for (HttpResponder& done : parked) {
        HttpResponse r;
        r.body = "late";
        done(std::move(r));
      }
      parked.clear();
    }
    client->Send(To(*peer, "/after"), [&](absl::StatusOr<PeerResponse>) { ++callbacks; });
    ASSERT_TRUE(WaitFor([&] { return peer->busy_connections() == 0; }));  // answers written
    if (io) {
      // Let the loops run what the late answers cause before looking.
      for (int round = 0; round < 3; ++round) {
        for (int i = 0; i < io->size(); ++i) io->RunOn(i, [] {});
        std::this_thread::sleep_for(20ms);
      }
    }
    EXPECT_EQ(callbacks.load(), 0);
    client.reset();
    peer->Stop();
    if (io) io->Stop();
  }
}

TEST(PeerClientTest, TimeoutIsDeadlineExceededAndThePlainConnectionIsNotReused) {
  test::ParkingServer parking({.accept_links = false, .hold = "/slow", .other_body = "fast"});
  HttpServer* peer = &parking.server();
  auto io = IoThreads::Create(1);
  std::unique_ptr<PeerClient> client = PeerClient::Create(io);
  // Fast requests with a long timeout first: the connection's timer is armed far out...
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(Call(*client, To(*peer, "/fast")).ok());
  EXPECT_EQ(client->open_connections(), 1);
  // ...and a short timeout on the same pooled connection still holds.
  PeerRequest slow = To(*peer, "/slow");
  slow.timeout = 200ms;
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<PeerResponse> r = Call(*client, slow);
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded) << r.status();
  EXPECT_GE(took, 150ms);
  EXPECT_LT(took, 5s);
  EXPECT_EQ(client->open_connections(), 0);  // closed, not pooled
  // A request after the timeout works on a new connection.
  absl::StatusOr<PeerResponse> after = Call(*client, To(*peer, "/fast"));
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(*after->body, "fast");
  EXPECT_EQ(client->open_connections(), 1);
  client->Stop();
  io->Stop();
  parking.Forget();
}

TEST(PeerClientTest, BusyPooledConnectionOutlivesItsTimeout) {
  // Many requests over a span longer than each one's timeout: moving deadlines never fire.
  for (bool links : {true, false}) {
    SCOPED_TRACE(links ? "mesh link" : "plain HTTP");
    auto peer = EchoPeer(nullptr, links);
    auto io = IoThreads::Create(1);
    std::unique_ptr<PeerClient> client = PeerClient::Create(io);
    const auto start = std::chrono::steady_clock::now();
    int n = 0;
    while (std::chrono::steady_clock::now() - start < 700ms) {
      PeerRequest req = To(*peer, "/", "x");
      req.timeout = 200ms;
      absl::StatusOr<PeerResponse> r = Call(*client, req);
      ASSERT_TRUE(r.ok()) << r.status();
      ++n;
      std::this_thread::sleep_for(20ms);  // pacing
    }
    EXPECT_GT(n, 5);
    EXPECT_EQ(client->open_connections(), 1);
    client->Stop();
    io->Stop();
  }
}

TEST(PeerClientTest, ConcurrentCallsShareOneLinkAndEachGetsItsOwnAnswer) {
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

TEST(PeerClientTest, APeerThatDeclinesLinksIsSentPlainHttp) {
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

TEST(PeerClientTest, TheLinkUpgradeAndEachPlainRequestCarryACredentialForThePeer) {
  // A peer that takes no links: the upgrade is answered as a plain health check, so the handler
  // sees it, with every plain request after it.
  std::mutex mu;
  std::vector<std::pair<std::string, std::string>> seen;  // target, credential
  std::unique_ptr<HttpServer> peer = EchoPeer(
      [&](const HttpRequest& req, HttpResponder done) {
        {
          std::lock_guard<std::mutex> lock(mu);
          seen.emplace_back(std::string(req.target()),
                            std::string(req.header("Hivemesh-Credential")));
        }
        HttpResponse r;
        r.body = "ok";
        done(std::move(r));
      },
      /*accept_links=*/false);
  std::atomic<int> made{0};
  std::unique_ptr<PeerClient> client =
      PeerClient::Create(nullptr, [&](std::string_view node, std::string_view purpose) {
        return StrCat(node, "/", purpose, "/", ++made);
      });
  for (const char* target : {"/one", "/two"}) {
    PeerRequest r = To(*peer, target);
    r.peer_node = "b";
    ASSERT_TRUE(Call(*client, std::move(r)).ok());
  }
  ASSERT_TRUE(Call(*client, To(*peer, "/anonymous")).ok());  // no peer_node: no credential
  client->Stop();
  peer->Stop();
  std::lock_guard<std::mutex> lock(mu);
  ASSERT_EQ(seen.size(), 4u);
  EXPECT_EQ(seen[0], std::make_pair(std::string("/v2/health/live"), std::string("b/link/1")));
  EXPECT_EQ(seen[1], std::make_pair(std::string("/one"), std::string("b/request/2")));
  EXPECT_EQ(seen[2], std::make_pair(std::string("/two"), std::string("b/request/3")));
  EXPECT_EQ(seen[3], std::make_pair(std::string("/anonymous"), std::string()));
}

TEST(PeerClientTest, TheDeadlineSentIsWhatIsLeftWhenTheRequestIsWritten) {
  // The peer declines the link only after a while: the call then goes over plain HTTP and tells
  // the peer the time it has left, not the time it had when it was made.
  test::ParkingServer peer({.accept_links = false, .record_header = "Inference-Timeout-Ms"});
  auto io = IoThreads::Create(1);
  std::unique_ptr<PeerClient> client = PeerClient::Create(io);
  PeerRequest request = To(peer.server(), "/late", "x");
  request.timeout = std::chrono::milliseconds(5000);
  request.send_time_left = true;
  std::promise<absl::StatusOr<PeerResponse>> answered;
  client->Send(std::move(request),
               [&](absl::StatusOr<PeerResponse> r) { answered.set_value(std::move(r)); });
  ASSERT_TRUE(WaitFor([&] { return peer.count() == 1; }));  // the upgrade, parked
  std::this_thread::sleep_for(500ms);
  peer.AnswerAllReversed();  // declined: a plain health check's answer
  ASSERT_TRUE(WaitFor([&] { return peer.count() == 2; }));
  peer.AnswerAllReversed();
  auto f = answered.get_future();
  ASSERT_EQ(f.wait_for(10s), std::future_status::ready);
  ASSERT_TRUE(f.get().ok());
  const std::vector<std::string> sent = peer.Recorded();
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_EQ(sent[0], "") << "the upgrade carries no deadline";
  const int left = std::stoi(sent[1]);
  EXPECT_GT(left, 3000);
  EXPECT_LE(left, 4500) << "500 ms went by before the request was written";
  client->Stop();
  io->Stop();
  peer.server().Stop();
}

TEST(PeerClientTest, ACallThatTimesOutOnABusyLinkLeavesTheLinkOpen) {
  test::ParkingServer parking({.hold = "/slow", .other_body = "fast"});
  HttpServer* peer = &parking.server();
  auto io = IoThreads::Create(1);
  std::unique_ptr<PeerClient> client = PeerClient::Create(io);
  PeerRequest slow = To(*peer, "/slow");
  slow.timeout = 300ms;
  std::promise<absl::StatusOr<PeerResponse>> slow_answer;
  client->Send(slow, [&](absl::StatusOr<PeerResponse> r) { slow_answer.set_value(std::move(r)); });
  // Answers keep arriving on the link while the slow call waits.
  auto slow_done = slow_answer.get_future();
  int fast = 0;
  while (slow_done.wait_for(0s) != std::future_status::ready) {
    absl::StatusOr<PeerResponse> r = Call(*client, To(*peer, "/fast"));
    ASSERT_TRUE(r.ok()) << r.status();
    ++fast;
    std::this_thread::sleep_for(20ms);
  }
  absl::StatusOr<PeerResponse> r = slow_done.get();
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded) << r.status();
  EXPECT_GT(fast, 3);
  EXPECT_EQ(client->open_connections(), 1);  // the link was not stuck: it stays
  // The late answer is dropped; the link goes on serving.
  ASSERT_EQ(parking.count(), 1u);
  parking.Answer("/slow");
  absl::StatusOr<PeerResponse> after = Call(*client, To(*peer, "/fast"));
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(*after->body, "fast");
  EXPECT_EQ(client->open_connections(), 1);
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

TEST(PeerClientTest, AnsweredCallsLeaveNothingBehindOnTheLink) {
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
}  // namespace hivemesh::routing
