// PeerClient in process against an HttpServer "peer": pooling, failures, shutdown, timeouts,
// credentials, and I/O threads shared with an HTTP server (a forwarded request never changes
// threads). peer_link_test.cc has the mesh link's own cases. What depends on time (timeouts, the
// time left a request tells its peer) runs on a ManualClock; waits for real I/O poll with
// generous deadlines.

#include "transport/peer_client.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

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
#include "identity/member_credential.h"
#include "support/http_client.h"
#include "support/parking_server.h"
#include "transport/http_server.h"
#include "transport/io_threads.h"
#include "transport/mesh_link.h"
#include "transport/peer_client_test_util.h"

namespace hivemesh {
namespace {

using namespace std::chrono_literals;
using namespace test_util;

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
      ASSERT_TRUE(ReadySoon(f));
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
  ASSERT_TRUE(ReadySoon(f));
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
  ASSERT_TRUE(ReadySoon(f));
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
  ASSERT_TRUE(ReadySoon(f));
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
    absl::Mutex mu;
    std::vector<HttpResponder> parked;  // guarded by mu
    auto peer = EchoPeer([&](const HttpRequest&, HttpResponder done) {
      absl::MutexLock lock(&mu);
      parked.push_back(std::move(done));
    });
    std::shared_ptr<IoThreads> io = shared ? IoThreads::Create(2) : nullptr;
    std::unique_ptr<PeerClient> client = PeerClient::Create(io);
    std::atomic<int> callbacks{0};
    for (int i = 0; i < 4; ++i) {
      client->Send(To(*peer, "/slow"), [&](absl::StatusOr<PeerResponse>) { ++callbacks; });
    }
    ASSERT_TRUE(WaitFor([&] {
      absl::MutexLock lock(&mu);
      return parked.size() == 4;
    }));
    client->Stop();  // returns although 4 requests wait for answers
    // Answers arriving now, and sends after Stop, call nobody back.
    {
      absl::MutexLock lock(&mu);
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
  ManualClock clock;
  auto io = IoThreads::Create(1);
  std::unique_ptr<PeerClient> client = PeerClient::Create(io, nullptr, clock);
  // Fast requests with a long timeout first: the connection's timer is armed far out...
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(Call(*client, To(*peer, "/fast")).ok());
  EXPECT_EQ(client->open_connections(), 1);
  // ...and a short timeout on the same pooled connection still holds. It runs on the client's
  // clock: however long the peer takes in real time, the call waits until the clock passes it.
  PeerRequest slow = To(*peer, "/slow");
  slow.timeout = 50ms;
  std::promise<absl::StatusOr<PeerResponse>> slow_answer;
  client->Send(slow, [&](absl::StatusOr<PeerResponse> r) { slow_answer.set_value(std::move(r)); });
  auto slow_done = slow_answer.get_future();
  ASSERT_TRUE(WaitFor([&] { return parking.count() == 1; }));
  // The timer behind the deadline fires on real time (after 50 ms) and again later: each time
  // it finds the clock short of the deadline.
  EXPECT_EQ(slow_done.wait_for(300ms), std::future_status::timeout) << "timed out early";
  clock.Advance(49ms);
  EXPECT_EQ(slow_done.wait_for(150ms), std::future_status::timeout) << "timed out early";
  clock.Advance(1ms);
  ASSERT_TRUE(ReadySoon(slow_done));
  absl::StatusOr<PeerResponse> r = slow_done.get();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded) << r.status();
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
  // Many requests over a span of the clock much longer than each one's timeout: the deadline of
  // each moves on with the next, and an earlier one never fires on the connection.
  for (bool links : {true, false}) {
    SCOPED_TRACE(links ? "mesh link" : "plain HTTP");
    auto peer = EchoPeer(nullptr, links);
    ManualClock clock;
    auto io = IoThreads::Create(1);
    std::unique_ptr<PeerClient> client = PeerClient::Create(io, nullptr, clock);
    for (int i = 0; i < 20; ++i) {
      PeerRequest req = To(*peer, "/", StrCat("x", i));
      req.timeout = 20ms;
      absl::StatusOr<PeerResponse> r = Call(*client, req);
      ASSERT_TRUE(r.ok()) << i << ": " << r.status();
      EXPECT_EQ(*r->body, StrCat("x", i));
      clock.Advance(15ms);  // 300 ms of the clock in all, 15 timeouts
    }
    // The timers armed on the way fire on real time (20 ms each) and find nothing due.
    std::this_thread::sleep_for(100ms);
    EXPECT_EQ(client->open_connections(), 1);  // the first connection, never closed
    EXPECT_EQ(client->open_links(), links ? 1 : 0);
    ASSERT_TRUE(Call(*client, To(*peer, "/", "last")).ok());
    EXPECT_EQ(client->open_connections(), 1);
    client->Stop();
    io->Stop();
  }
}

TEST(PeerClientTest, TheLinkUpgradeAndEachPlainRequestCarryACredentialForThePeer) {
  // A peer that takes no links: the upgrade is answered as a plain health check, so the handler
  // sees it, with every plain request after it.
  // The names the client writes are the ones identity makes and member_check checks.
  static_assert(kCredentialField == identity::kCredentialHeader);
  static_assert(kCredentialForLink == identity::kPurposeLink);
  static_assert(kCredentialForRequest == identity::kPurposeRequest);
  absl::Mutex mu;
  std::vector<std::pair<std::string, std::string>> seen;  // target, credential; guarded by mu
  std::unique_ptr<HttpServer> peer = EchoPeer(
      [&](const HttpRequest& req, HttpResponder done) {
        {
          absl::MutexLock lock(&mu);
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
  absl::MutexLock lock(&mu);
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
  ManualClock clock;
  auto io = IoThreads::Create(1);
  std::unique_ptr<PeerClient> client = PeerClient::Create(io, nullptr, clock);
  PeerRequest request = To(peer.server(), "/late", "x");
  request.timeout = std::chrono::milliseconds(5000);
  request.send_time_left = true;
  std::promise<absl::StatusOr<PeerResponse>> answered;
  client->Send(std::move(request),
               [&](absl::StatusOr<PeerResponse> r) { answered.set_value(std::move(r)); });
  ASSERT_TRUE(WaitFor([&] { return peer.count() == 1; }));  // the upgrade, parked
  clock.Advance(1500ms);
  peer.AnswerAllReversed();  // declined: a plain health check's answer
  ASSERT_TRUE(WaitFor([&] { return peer.count() == 2; }));
  peer.AnswerAllReversed();
  auto f = answered.get_future();
  ASSERT_TRUE(ReadySoon(f));
  ASSERT_TRUE(f.get().ok());
  const std::vector<std::string> sent = peer.Recorded();
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_EQ(sent[0], "") << "the upgrade carries no deadline";
  EXPECT_EQ(sent[1], "3500") << "1.5 s of the 5 s went by before the request was written";
  client->Stop();
  io->Stop();
  peer.server().Stop();
}

TEST(PeerClientTest, AHostTheCallerGivesIsTheOnlyOne) {
  // A raw server that records the request's head: nginx answers 400 to two Host fields.
  const int listener = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(listener, 4), 0);
  socklen_t len = sizeof(addr);
  getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len);
  const uint16_t port = ntohs(addr.sin_port);
  std::vector<std::string> heads;
  // The client may try a mesh link first (declined here: a plain answer), then sends plainly.
  std::thread server([&] {
    for (int i = 0;
         i < 6 && (heads.empty() || heads.back().find("edge-camera-ai") == std::string::npos);
         ++i) {
      const int c = accept(listener, nullptr, nullptr);
      std::string head;
      char buf[512];
      while (head.find("\r\n\r\n") == std::string::npos) {
        const ssize_t n = read(c, buf, sizeof(buf));
        if (n <= 0) break;
        head.append(buf, static_cast<size_t>(n));
      }
      heads.push_back(head);
      const std::string answer =
          "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
      (void)!write(c, answer.data(), answer.size());
      close(c);
    }
  });
  std::unique_ptr<PeerClient> client = PeerClient::Create();
  PeerRequest plain;
  plain.address = StrCat("127.0.0.1:", port);
  plain.method = "GET";
  plain.target = "/";
  PeerRequest named = plain;
  named.headers.emplace_back("host", "edge-camera-ai");
  const absl::StatusOr<PeerResponse> first = Call(*client, std::move(plain));
  const absl::StatusOr<PeerResponse> second = Call(*client, std::move(named));
  EXPECT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(second.ok()) << second.status();
  server.join();
  close(listener);
  client->Stop();
  ASSERT_GE(heads.size(), 2u);
  EXPECT_NE(heads[0].find(StrCat("Host: 127.0.0.1:", port, "\r\n")), std::string::npos) << heads[0];
  EXPECT_NE(heads.back().find("host: edge-camera-ai\r\n"), std::string::npos) << heads.back();
  EXPECT_EQ(heads.back().find("Host: 127.0.0.1"), std::string::npos)
      << "one Host only: " << heads.back();
}

}  // namespace
}  // namespace hivemesh
