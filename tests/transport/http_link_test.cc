// The server side of a mesh link, spoken over a raw socket: the upgrade, many requests open at
// once, answers in the order they finish matched by stream number, broken framing, draining
// and stopping; and its bounds: idle links close, upgrades can be refused, bodies are reserved
// from the memory budget. Last, the client side (PeerClient) against a server that closes idle
// links quickly.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <map>
#include <memory>

#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "base/memory_budget.h"
#include "base/rejections.h"
#include "base/strings.h"
#include "support/http_client.h"
#include "support/mesh_util.h"
#include "support/parking_server.h"
#include "transport/http_server.h"
#include "transport/peer_client.h"

namespace hivemesh {
namespace {

using namespace std::chrono_literals;

bool WaitFor(const std::function<bool()>& done) { return test::WaitFor(done, 10s); }

constexpr char kUpgrade[] =
    "GET /v2/health/live HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\n"
    "Upgrade: hivemesh-link/1\r\nContent-Length: 0\r\n\r\n";

// Turns the connection into a link: true if the server switched.
bool Upgraded(test::HttpConnection& conn) {
  return conn.SendRaw(kUpgrade) && conn.ReadResponse().status == 101;
}

std::string LinkRequest(int stream, const std::string& target, const std::string& body = "") {
  return StrCat("POST ", target, " HTTP/1.1\r\nHost: t\r\nContent-Length: ", body.size(),
                "\r\nHivemesh-Stream: ", stream, "\r\n\r\n", body);
}

using test::ParkingServer;

// Reads the next answer on a link: a 200 for `stream` with exactly `body`.
void ExpectAnswer(test::HttpConnection& conn, int stream, const std::string& body) {
  test::HttpResult r = conn.ReadResponse();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.header("hivemesh-stream"), std::to_string(stream));
  // Not EXPECT_EQ: a mismatch of megabytes would be printed whole.
  EXPECT_TRUE(r.body == body) << "stream " << stream << ": an answer of " << r.body.size()
                              << " bytes, not the " << body.size() << " expected";
}

TEST(HttpLinkTest, RequestsAreOpenTogetherAndAnsweredAsTheyFinish) {
  ParkingServer peer;
  test::HttpConnection conn(peer.server().port());
  ASSERT_TRUE(conn.SendRaw(kUpgrade));
  test::HttpResult up = conn.ReadResponse();
  ASSERT_EQ(up.status, 101);
  EXPECT_EQ(up.header("upgrade"), "hivemesh-link/1");
  // Three requests in one write; none is answered, yet the server has all three.
  ASSERT_TRUE(conn.SendRaw(LinkRequest(7, "/a", "first") + LinkRequest(8, "/b", "second") +
                           LinkRequest(9, "/c")));
  ASSERT_TRUE(WaitFor([&] { return peer.count() == 3; }));
  EXPECT_EQ(peer.server().busy_connections(), 3);
  // Answered last first: the answers come in that order, each with its request's number.
  peer.Answer("/c");
  test::HttpResult c = conn.ReadResponse();
  EXPECT_EQ(c.status, 200);
  EXPECT_EQ(c.header("hivemesh-stream"), "9");
  EXPECT_EQ(c.header("x-target"), "/c");
  EXPECT_EQ(c.body, "");
  peer.Answer("/a");
  test::HttpResult a = conn.ReadResponse();
  EXPECT_EQ(a.header("hivemesh-stream"), "7");
  EXPECT_EQ(a.body, "first");
  peer.Answer("/b");
  test::HttpResult b = conn.ReadResponse();
  EXPECT_EQ(b.header("hivemesh-stream"), "8");
  EXPECT_EQ(b.body, "second");
  ASSERT_TRUE(WaitFor([&] { return peer.server().busy_connections() == 0; }));
  // A request split across writes is put together.
  const std::string split = LinkRequest(10, "/d", "0123456789");
  ASSERT_TRUE(conn.SendRaw(split.substr(0, 20)));
  std::this_thread::sleep_for(20ms);
  ASSERT_TRUE(conn.SendRaw(split.substr(20)));
  ASSERT_TRUE(WaitFor([&] { return peer.count() == 4; }));
  peer.Answer("/d");
  test::HttpResult d = conn.ReadResponse();
  EXPECT_EQ(d.header("hivemesh-stream"), "10");
  EXPECT_EQ(d.body, "0123456789");
  peer.server().Stop();
}

TEST(HttpLinkTest, BrokenFramingOrAMissingStreamNumberClosesTheLink) {
  ParkingServer peer;
  for (const std::string& bad :
       {std::string("this is not HTTP\r\n\r\n"),
        std::string("POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n")}) {
    test::HttpConnection conn(peer.server().port());
    ASSERT_TRUE(Upgraded(conn));
    ASSERT_TRUE(conn.SendRaw(bad));
    EXPECT_TRUE(conn.WaitClosed(5s)) << bad;
  }
  EXPECT_EQ(peer.count(), 0u);
  EXPECT_EQ(peer.server().busy_connections(), 0);
  peer.server().Stop();
}

TEST(HttpLinkTest, ARequestOverTheBodyLimitIsRefusedAndTheLinkGoesOn) {
  ParkingServer peer({.max_body_bytes = 16});
  test::HttpConnection conn(peer.server().port());
  ASSERT_TRUE(Upgraded(conn));
  // The large body comes in pieces, and the next request right behind it.
  const std::string big = LinkRequest(1, "/big", std::string(5000, 'x'));
  ASSERT_TRUE(conn.SendRaw(big.substr(0, 1000)));
  test::HttpResult refused = conn.ReadResponse();
  EXPECT_EQ(refused.status, 413);
  EXPECT_EQ(refused.header("hivemesh-stream"), "1");
  EXPECT_NE(refused.body.find("limit of 16 bytes"), std::string::npos) << refused.body;
  ASSERT_TRUE(conn.SendRaw(big.substr(1000) + LinkRequest(2, "/small", "fits")));
  ASSERT_TRUE(WaitFor([&] { return peer.count() == 1; }));
  peer.Answer("/small");
  ExpectAnswer(conn, 2, "fits");
  ASSERT_TRUE(WaitFor([&] { return peer.server().busy_connections() == 0; }));
  peer.server().Stop();
}

TEST(HttpLinkTest, ARequestThatTricklesInClosesTheLinkButAnIdleLinkStays) {
  ParkingServer peer({.body_timeout = 300ms});
  test::HttpConnection slow(peer.server().port());
  ASSERT_TRUE(Upgraded(slow));
  test::HttpConnection idle(peer.server().port());
  ASSERT_TRUE(Upgraded(idle));
  // A head that never ends, sent a piece at a time, each well within the timeout.
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(slow.SendRaw("POST /slow HTTP/1.1\r\n"));
  for (int i = 0; i < 6 && !slow.WaitClosed(100ms); ++i) slow.SendRaw("X-Pad: 1\r\n");
  EXPECT_TRUE(slow.WaitClosed(5s));
  EXPECT_GE(std::chrono::steady_clock::now() - start, 300ms);
  EXPECT_EQ(peer.count(), 0u);
  // The idle link, quiet for longer than the timeout, still takes requests.
  ASSERT_TRUE(idle.SendRaw(LinkRequest(1, "/later", "ok")));
  ASSERT_TRUE(WaitFor([&] { return peer.count() == 1; }));
  peer.Answer("/later");
  test::HttpResult r = idle.ReadResponse();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "ok");
  peer.server().Stop();
}

TEST(HttpLinkTest, AnswersTheOtherSideDoesNotReadStopItsRequestsBeingTaken) {
  // Every request is answered at once with 1 MiB. The other side sends 64 requests and reads
  // nothing for a while: the server takes requests only until the answers waiting for it pass
  // its limit, then the rest once it reads.
  constexpr int kRequests = 64;
  const std::string big(1 << 20, 'a');
  ParkingServer peer({.hold = "/never", .other_body = big});
  test::HttpConnection conn(peer.server().port());
  ASSERT_TRUE(Upgraded(conn));
  std::string requests;
  for (int i = 1; i <= kRequests; ++i) requests += LinkRequest(i, "/big");
  ASSERT_TRUE(conn.SendRaw(requests));
  ASSERT_TRUE(WaitFor([&] { return peer.handled() > 0; }));
  std::this_thread::sleep_for(300ms);  // time enough to take all 64 were there no limit
  EXPECT_LT(peer.handled(), static_cast<size_t>(kRequests) / 2);
  for (int i = 1; i <= kRequests; ++i) {
    test::HttpResult r = conn.ReadResponse();
    ASSERT_EQ(r.status, 200) << i;
    EXPECT_EQ(r.header("hivemesh-stream"), std::to_string(i));
    EXPECT_EQ(r.body.size(), big.size());
  }
  EXPECT_EQ(peer.handled(), static_cast<size_t>(kRequests));
  peer.server().Stop();
}

TEST(HttpLinkTest, AnAnswerTheSocketTakesOnlyInPartGoesWholeBeforeTheNext) {
  // The link's one open request is answered from this thread (as a model's worker answers),
  // which writes to the socket itself. 6 MiB do not fit while the other side reads nothing:
  // the loop writes the rest, and an answer ready meanwhile waits for it. (Under the 8 MiB of
  // unsent answers past which the link takes no new request.)
  ParkingServer peer;
  test::HttpConnection conn(peer.server().port());
  ASSERT_TRUE(Upgraded(conn));
  ASSERT_TRUE(conn.SendRaw(LinkRequest(1, "/big")));
  ASSERT_TRUE(WaitFor([&] { return peer.count() == 1; }));
  std::string big(6 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + i % 23);
  peer.Answer("/big", &big);
  ASSERT_TRUE(conn.SendRaw(LinkRequest(2, "/next", "after")));
  ASSERT_TRUE(WaitFor([&] { return peer.count() == 2; }));
  peer.Answer("/next");
  ExpectAnswer(conn, 1, big);
  ExpectAnswer(conn, 2, "after");
  ASSERT_TRUE(WaitFor([&] { return peer.server().busy_connections() == 0; }));
  peer.server().Stop();
}

TEST(HttpLinkTest, AnswersGivenByManyThreadsAtOnceAllArriveIntact) {
  // Rounds of one to four requests, each answered by its own thread at the same moment: the
  // answers race each other for the socket (a thread writing itself when its request is the
  // only one open, the loop writing the others), with bodies up to 6 MiB so that some writes
  // are partial. Every answer arrives whole, with its own number.
  ParkingServer peer;
  test::HttpConnection conn(peer.server().port());
  ASSERT_TRUE(Upgraded(conn));
  std::mt19937 rng(7);
  int stream = 0;
  size_t parked = 0;
  for (int round = 0; round < 150; ++round) {
    const int n = 1 + static_cast<int>(rng() % 4);
    std::map<std::string, std::string> bodies;  // stream number -> body
    std::string requests;
    for (int i = 0; i < n; ++i) {
      ++stream;
      const uint32_t kind = rng() % 8;
      std::string body(kind == 0  ? rng() % (6 << 20)
                       : kind < 3 ? rng() % (1 << 20)
                                  : rng() % 64,
                       '\0');
      for (size_t j = 0; j < body.size(); ++j) body[j] = static_cast<char>('a' + (stream + j) % 26);
      requests += LinkRequest(stream, StrCat("/t", stream), body);
      bodies[std::to_string(stream)] = std::move(body);
    }
    ASSERT_TRUE(conn.SendRaw(requests));
    parked += static_cast<size_t>(n);
    ASSERT_TRUE(WaitFor([&] { return peer.count() == parked; }));
    std::vector<std::thread> answering;
    for (const auto& [number, body] : bodies) {
      answering.emplace_back([&peer, target = StrCat("/t", number)] { peer.Answer(target); });
    }
    // Every other round, the answers find a socket that nobody reads for a moment.
    if (round % 2 == 0) std::this_thread::sleep_for(3ms);
    for (int i = 0; i < n; ++i) {
      test::HttpResult r = conn.ReadResponse();
      ASSERT_EQ(r.status, 200) << "round " << round;
      auto it = bodies.find(r.header("hivemesh-stream"));
      ASSERT_NE(it, bodies.end()) << "an unknown or repeated stream in round " << round;
      EXPECT_TRUE(r.body == it->second) << "stream " << it->first << ": not intact";
      bodies.erase(it);
    }
    for (std::thread& t : answering) t.join();
  }
  ASSERT_TRUE(WaitFor([&] { return peer.server().busy_connections() == 0; }));
  peer.server().Stop();
}

TEST(HttpLinkTest, AnAnswerForALinkTheOtherSideClosedIsDropped) {
  // Answered at once after the close, or once the server has surely seen it: either way the
  // request stops counting as open and the server goes on taking links.
  ParkingServer peer;
  for (const auto pause : {0ms, 100ms}) {
    {
      test::HttpConnection conn(peer.server().port());
      ASSERT_TRUE(Upgraded(conn));
      ASSERT_TRUE(conn.SendRaw(LinkRequest(1, "/gone")));
      ASSERT_TRUE(WaitFor([&] { return peer.server().busy_connections() == 1; }));
    }
    std::this_thread::sleep_for(pause);
    peer.Answer("/gone");
    EXPECT_TRUE(WaitFor([&] { return peer.server().busy_connections() == 0; })) << pause.count();
  }
  test::HttpConnection conn(peer.server().port());
  ASSERT_TRUE(Upgraded(conn));
  ASSERT_TRUE(conn.SendRaw(LinkRequest(5, "/later", "still")));
  ASSERT_TRUE(WaitFor([&] { return peer.count() == 3; }));
  peer.Answer("/later");
  EXPECT_EQ(conn.ReadResponse().body, "still");
  peer.server().Stop();
}

TEST(HttpLinkTest, OnlyAGetUpgradesAndAServerCanDecline) {
  {
    ParkingServer peer;
    // A POST that asks for the upgrade is an ordinary request.
    test::HttpConnection conn(peer.server().port());
    ASSERT_TRUE(conn.SendRaw(
        "POST /p HTTP/1.1\r\nHost: t\r\nUpgrade: hivemesh-link/1\r\nContent-Length: 0\r\n\r\n"));
    ASSERT_TRUE(WaitFor([&] { return peer.count() == 1; }));
    peer.Answer("/p");
    test::HttpResult r = conn.ReadResponse();
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.header("x-target"), "/p");
    peer.server().Stop();
  }
  {
    ParkingServer peer({.accept_links = false});
    test::HttpConnection conn(peer.server().port());
    ASSERT_TRUE(conn.SendRaw(kUpgrade));
    ASSERT_TRUE(WaitFor([&] { return peer.count() == 1; }));
    peer.Answer("/v2/health/live");
    EXPECT_EQ(conn.ReadResponse().status, 200);  // served as a plain request
    peer.server().Stop();
  }
}

TEST(HttpLinkTest, ADrainingServerRefusesNewLinkRequestsAndClosesTheLinkOnceIdle) {
  ParkingServer peer;
  test::HttpConnection conn(peer.server().port());
  ASSERT_TRUE(Upgraded(conn));
  test::HttpConnection idle(peer.server().port());  // a link with nothing open on it
  ASSERT_TRUE(Upgraded(idle));
  test::HttpConnection plain(peer.server().port());  // connected before the drain, not upgraded
  ASSERT_TRUE(plain.connected());
  ASSERT_TRUE(conn.SendRaw(LinkRequest(1, "/open")));
  ASSERT_TRUE(WaitFor([&] { return peer.count() == 1; }));
  peer.server().StopAccepting();
  // No new link while draining: an upgrade on a connection opened before is served as a plain
  // request (its client wrote it before it could know; the drain waits for it), and its answer
  // closes the connection.
  ASSERT_TRUE(plain.SendRaw(kUpgrade));
  EXPECT_TRUE(idle.WaitClosed(5s)) << "an idle link ends as the drain begins";
  // A request after the drain began is refused at once, with its number...
  ASSERT_TRUE(conn.SendRaw(LinkRequest(2, "/late")));
  test::HttpResult late = conn.ReadResponse();
  EXPECT_EQ(late.status, 503);
  EXPECT_EQ(late.header("hivemesh-stream"), "2");
  EXPECT_NE(late.body.find("shutting down"), std::string::npos) << late.body;
  // ...the open one is still answered, and then the link closes.
  peer.Answer("/open");
  test::HttpResult open = conn.ReadResponse();
  EXPECT_EQ(open.status, 200);
  EXPECT_EQ(open.header("hivemesh-stream"), "1");
  EXPECT_TRUE(conn.WaitClosed(5s));
  ASSERT_TRUE(WaitFor([&] { return peer.count() == 2; }));
  EXPECT_EQ(peer.server().busy_connections(), 1) << "the plain connection's request";
  peer.Answer("/v2/health/live");
  test::HttpResult answer = plain.ReadResponse();
  EXPECT_EQ(answer.status, 200);
  EXPECT_EQ(answer.header("connection"), "close");
  EXPECT_TRUE(plain.WaitClosed(5s));
  EXPECT_TRUE(WaitFor([&] { return peer.server().busy_connections() == 0; }));
  peer.server().Stop();
}

TEST(HttpLinkTest, StopClosesLinksAndAnswersAfterwardsGoNowhere) {
  ParkingServer peer;
  test::HttpConnection conn(peer.server().port());
  ASSERT_TRUE(Upgraded(conn));
  ASSERT_TRUE(conn.SendRaw(LinkRequest(1, "/x") + LinkRequest(2, "/y")));
  ASSERT_TRUE(WaitFor([&] { return peer.count() == 2; }));
  peer.server().Stop();
  EXPECT_TRUE(conn.WaitClosed(5s));
  peer.Answer("/x");  // the responders outlive the link: nothing is written, nothing breaks
  peer.Answer("/y");
}

// A server whose handler answers at once with the target and body, except requests for
// `/hold`, which it keeps until Release(); it counts refusals in `rejections`.
struct LinkServer {
  explicit LinkServer(HttpServerOptions o) {
    o.port = 0;
    o.rejections = rejections;
    auto s = HttpServer::Create(o, [this](const HttpRequest& req, HttpResponder done) {
      ++handled;
      if (req.target() == "/hold") {
        absl::MutexLock lock(&mu);
        held.push_back(std::move(done));
        return;
      }
      HttpResponse r;
      r.content_type = "text/plain";
      r.body = StrCat(req.target(), " ", *req.body());
      if (!req.link_member().empty()) r.headers.emplace_back("X-Link-Member", req.link_member());
      done(std::move(r));
    });
    EXPECT_TRUE(s.ok()) << s.status();
    server = std::move(*s);
    server->Start();
  }
  ~LinkServer() { server->Stop(); }
  void Release() {
    std::vector<HttpResponder> answer;
    {
      absl::MutexLock lock(&mu);
      answer.swap(held);
    }
    for (HttpResponder& done : answer) {
      HttpResponse r;
      r.body = "released";
      done(std::move(r));
    }
  }
  size_t held_count() {
    absl::MutexLock lock(&mu);
    return held.size();
  }
  uint64_t count(Rejection r) const { return rejections->count(r); }

  std::shared_ptr<Rejections> rejections = std::make_shared<Rejections>();
  std::atomic<int> handled{0};
  absl::Mutex mu;
  std::vector<HttpResponder> held ABSL_GUARDED_BY(mu);
  std::unique_ptr<HttpServer> server;
};

TEST(HttpLinkBoundsTest, AnIdleLinkClosesButNotOneWithARequestOpen) {
  HttpServerOptions o;
  o.idle_link_timeout = 200ms;
  LinkServer peer(o);
  test::HttpConnection idle(peer.server->port());
  ASSERT_TRUE(Upgraded(idle));
  test::HttpConnection busy(peer.server->port());
  ASSERT_TRUE(Upgraded(busy));
  ASSERT_TRUE(busy.SendRaw(LinkRequest(1, "/hold")));
  ASSERT_TRUE(WaitFor([&] { return peer.held_count() == 1; }));
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(idle.WaitClosed(5s));
  EXPECT_GE(std::chrono::steady_clock::now() - start, 150ms);
  EXPECT_EQ(peer.count(Rejection::kIdleLinkClosed), 1u);
  // The busy link outlives several idle periods while its request is open...
  EXPECT_FALSE(busy.WaitClosed(700ms));
  peer.Release();
  test::HttpResult r = busy.ReadResponse();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.header("hivemesh-stream"), "1");
  // ...and keeps serving; once idle, it closes too.
  ASSERT_TRUE(busy.SendRaw(LinkRequest(2, "/more", "x")));
  ExpectAnswer(busy, 2, "/more x");
  EXPECT_TRUE(busy.WaitClosed(5s));
  EXPECT_EQ(peer.count(Rejection::kIdleLinkClosed), 2u);
  EXPECT_TRUE(WaitFor([&] { return peer.server->open_connections() == 0; }));
}

TEST(HttpLinkBoundsTest, AnUpgradeTheHookRefusesGets403AndOneItTakesNamesItsMember) {
  HttpServerOptions o;
  o.authorize_link = [](const HttpRequest& req) -> absl::StatusOr<std::string> {
    if (req.header("X-Member") == "yes") return std::string("node-7");
    return absl::PermissionDeniedError("mesh links are for members: no credential");
  };
  LinkServer peer(o);
  test::HttpConnection stranger(peer.server->port());
  ASSERT_TRUE(stranger.SendRaw(kUpgrade));
  test::HttpResult refused = stranger.ReadResponse();
  EXPECT_EQ(refused.status, 403);
  EXPECT_NE(refused.body.find("no credential"), std::string::npos) << refused.body;
  EXPECT_TRUE(stranger.WaitClosed(5s));
  EXPECT_EQ(peer.count(Rejection::kLinkUnauthenticated), 1u);
  test::HttpConnection member(peer.server->port());
  ASSERT_TRUE(member.SendRaw(
      "GET /v2/health/live HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nX-Member: yes\r\n"
      "Upgrade: hivemesh-link/1\r\nContent-Length: 0\r\n\r\n"));
  ASSERT_EQ(member.ReadResponse().status, 101);
  ASSERT_TRUE(member.SendRaw(LinkRequest(4, "/in", "ok")));
  test::HttpResult in = member.ReadResponse();
  EXPECT_EQ(in.body, "/in ok");
  EXPECT_EQ(in.header("x-link-member"), "node-7");  // every request on the link tells its member
  EXPECT_EQ(peer.handled.load(), 1);                // the refused upgrade reached no handler
  // A plain request names no member.
  test::HttpConnection plain(peer.server->port());
  ASSERT_TRUE(plain.SendRaw("GET /p HTTP/1.1\r\nHost: t\r\nX-Member: yes\r\n\r\n"));
  test::HttpResult p = plain.ReadResponse();
  EXPECT_EQ(p.status, 200);
  EXPECT_EQ(p.header("x-link-member"), "");
}

TEST(HttpLinkBoundsTest, ABodyTheBudgetCannotHoldGets503OnItsStreamAndTheLinkGoesOn) {
  std::shared_ptr<MemoryBudget> budget = MemoryBudget::Create(1 << 20);
  HttpServerOptions o;
  o.memory_budget = budget;
  LinkServer peer(o);
  test::HttpConnection conn(peer.server->port());
  ASSERT_TRUE(Upgraded(conn));
  ASSERT_TRUE(conn.SendRaw(LinkRequest(1, "/big", std::string(1 << 20, 'x')) +
                           LinkRequest(2, "/small", "fits")));
  test::HttpResult refused = conn.ReadResponse();
  EXPECT_EQ(refused.status, 503);
  EXPECT_EQ(refused.header("hivemesh-stream"), "1");
  EXPECT_EQ(refused.header("retry-after"), "1");
  EXPECT_NE(refused.body.find("memory budget"), std::string::npos) << refused.body;
  ExpectAnswer(conn, 2, "/small fits");
  EXPECT_EQ(peer.count(Rejection::kMemoryBudget), 1u);
  // A body that fits is reserved while it is handled, then given back.
  ASSERT_TRUE(conn.SendRaw(LinkRequest(3, "/hold", std::string(300000, 'y'))));
  ASSERT_TRUE(WaitFor([&] { return peer.held_count() == 1; }));
  EXPECT_GE(budget->used(), 300000u);
  peer.Release();
  EXPECT_EQ(conn.ReadResponse().status, 200);
  EXPECT_TRUE(WaitFor([&] { return budget->used() == 0; }));
}

TEST(HttpLinkBoundsTest, BrokenFramingIsCounted) {
  LinkServer peer(HttpServerOptions{});
  test::HttpConnection conn(peer.server->port());
  ASSERT_TRUE(Upgraded(conn));
  ASSERT_TRUE(conn.SendRaw("POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"));
  EXPECT_TRUE(conn.WaitClosed(5s));
  EXPECT_EQ(peer.count(Rejection::kMalformedHttp), 1u);
}

TEST(HttpLinkBoundsTest, ForwardedRequestsSurviveLinksTheServerClosesAsIdle) {
  // The server closes links idle for 30 ms; requests go out paced around that, so that some
  // find their link just closed (or closing as they are written). Every one must succeed: the
  // client opens a new link, or retries a request that met a link just closed.
  HttpServerOptions o;
  o.idle_link_timeout = 30ms;
  LinkServer peer(o);
  std::unique_ptr<PeerClient> client = PeerClient::Create();
  std::mt19937 rng(5);
  for (int i = 0; i < 200; ++i) {
    PeerRequest request;
    request.address = StrCat("127.0.0.1:", peer.server->port());
    request.target = StrCat("/r", i);
    request.body = "b";
    request.timeout = 10s;
    std::promise<absl::StatusOr<PeerResponse>> answered;
    client->Send(std::move(request),
                 [&](absl::StatusOr<PeerResponse> r) { answered.set_value(std::move(r)); });
    absl::StatusOr<PeerResponse> r = answered.get_future().get();
    ASSERT_TRUE(r.ok()) << "request " << i << ": " << r.status();
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(*r->body, StrCat("/r", i, " b"));
    // Pacing the client around the idle timeout, not waiting for the server.
    std::this_thread::sleep_for(std::chrono::microseconds(20000 + rng() % 20000));
  }
  EXPECT_GT(peer.count(Rejection::kIdleLinkClosed), 10u);
  client->Stop();
}

// A server that parks every request with its cancellation flag (HttpRequest::cancelled), for
// CANCEL's tests. The flag stays valid while the request is parked (unanswered).
class CancelServer {
 public:
  CancelServer() {
    auto s = HttpServer::Create(
        HttpServerOptions{.port = 0}, [this](const HttpRequest& req, HttpResponder done) {
          absl::MutexLock lock(&mu_);
          parked_.push_back({std::string(req.target()), req.cancelled(), std::move(done)});
        });
    EXPECT_TRUE(s.ok()) << s.status();
    server = std::move(*s);
    server->Start();
  }
  ~CancelServer() { server->Stop(); }
  size_t count() {
    absl::MutexLock lock(&mu_);
    return parked_.size();
  }
  // The flag of the parked request for `target` (null: none, or not cancellable).
  const std::atomic<bool>* flag(const std::string& target) {
    absl::MutexLock lock(&mu_);
    for (const Parked& p : parked_) {
      if (p.target == target) return p.flag;
    }
    return nullptr;
  }
  // Answers every parked request: 499 if it was cancelled, else 200 with its target.
  void AnswerAll() {
    std::vector<Parked> now;
    {
      absl::MutexLock lock(&mu_);
      now.swap(parked_);
    }
    for (Parked& p : now) {
      HttpResponse r;
      const bool cancelled = p.flag != nullptr && p.flag->load();
      r.status = cancelled ? 499 : 200;
      r.body = p.target;
      p.done(std::move(r));
    }
  }
  std::unique_ptr<HttpServer> server;

 private:
  struct Parked {
    std::string target;
    const std::atomic<bool>* flag;
    HttpResponder done;
  };
  absl::Mutex mu_;
  std::vector<Parked> parked_ ABSL_GUARDED_BY(mu_);
};

std::string Cancel(int stream, const std::string& body = "") {
  return StrCat("CANCEL * HTTP/1.1\r\nHivemesh-Stream: ", stream,
                "\r\nContent-Length: ", body.size(), "\r\n\r\n", body);
}

// CANCEL (transport/mesh_link.h): the forwarding node no longer needs a request's answer. The
// serving end marks that stream's request cancelled (the model's queue drops it if it has not
// started) and answers nothing for the CANCEL itself; a CANCEL for a stream not open is ignored;
// one with a body closes the link (it is not how a CANCEL looks, and framing could be lost).
TEST(HttpLinkTest, ACancelMarksItsStreamsRequestAndHasNoAnswerOfItsOwn) {
  CancelServer peer;
  test::HttpConnection conn(peer.server->port());
  ASSERT_TRUE(Upgraded(conn));
  ASSERT_TRUE(conn.SendRaw(LinkRequest(7, "/a") + LinkRequest(8, "/b")));
  ASSERT_TRUE(WaitFor([&] { return peer.count() == 2; }));
  ASSERT_NE(peer.flag("/a"), nullptr) << "a link request can be cancelled";
  ASSERT_TRUE(conn.SendRaw(Cancel(7) + Cancel(99)));
  ASSERT_TRUE(WaitFor([&] { return peer.flag("/a")->load(); }));
  EXPECT_FALSE(peer.flag("/b")->load());
  peer.AnswerAll();
  std::map<std::string, int> statuses;
  for (int i = 0; i < 2; ++i) {
    test::HttpResult r = conn.ReadResponse();
    statuses[r.header("hivemesh-stream")] = r.status;
  }
  EXPECT_EQ(statuses, (std::map<std::string, int>{{"7", 499}, {"8", 200}}));
  // The link goes on: the next request is served as usual.
  ASSERT_TRUE(conn.SendRaw(LinkRequest(9, "/c")));
  ASSERT_TRUE(WaitFor([&] { return peer.count() == 1; }));
  peer.AnswerAll();
  EXPECT_EQ(conn.ReadResponse().header("hivemesh-stream"), "9");
  // A CANCEL with a body closes the link.
  ASSERT_TRUE(conn.SendRaw(Cancel(9, "abc")));
  EXPECT_TRUE(conn.WaitClosed(5s));
  // A plain request cannot be cancelled.
  test::HttpConnection plain(peer.server->port());
  ASSERT_TRUE(plain.SendRaw("POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n"));
  ASSERT_TRUE(WaitFor([&] { return peer.count() == 1; }));
  EXPECT_EQ(peer.flag("/p"), nullptr);
  peer.AnswerAll();
}

// The client side: PeerCancel on a request waiting on a link sends the CANCEL; the request's
// answer (here the 499 the server gives a cancelled request) still comes to its callback, once.
// A request cancelled before it is on its way never reaches the server.
TEST(HttpLinkTest, PeerCancelSendsACancelForARequestOnALink) {
  CancelServer peer;
  std::unique_ptr<PeerClient> client = PeerClient::Create();
  auto send = [&](const std::string& target, std::shared_ptr<PeerCancel> cancel,
                  std::promise<absl::StatusOr<PeerResponse>>* answered) {
    PeerRequest request;
    request.address = StrCat("127.0.0.1:", peer.server->port());
    request.target = target;
    request.timeout = 10s;
    request.cancel = std::move(cancel);
    client->Send(std::move(request),
                 [answered](absl::StatusOr<PeerResponse> r) { answered->set_value(std::move(r)); });
  };
  auto token = std::make_shared<PeerCancel>();
  std::promise<absl::StatusOr<PeerResponse>> first, second;
  send("/x", token, &first);
  send("/y", std::make_shared<PeerCancel>(), &second);
  ASSERT_TRUE(WaitFor([&] { return peer.count() == 2; }));
  token->Cancel();
  token->Cancel();  // idempotent
  ASSERT_TRUE(WaitFor([&] { return peer.flag("/x")->load(); }));
  EXPECT_FALSE(peer.flag("/y")->load());
  peer.AnswerAll();
  absl::StatusOr<PeerResponse> x = first.get_future().get();
  ASSERT_TRUE(x.ok()) << x.status();
  EXPECT_EQ(x->status, 499);
  absl::StatusOr<PeerResponse> y = second.get_future().get();
  ASSERT_TRUE(y.ok()) << y.status();
  EXPECT_EQ(y->status, 200);
  // Cancelled before it was sent: answered CANCELLED by the client, or (if it left first)
  // cancelled at the server; either way not served as if needed.
  auto early = std::make_shared<PeerCancel>();
  early->Cancel();
  std::promise<absl::StatusOr<PeerResponse>> third;
  send("/z", early, &third);
  std::future<absl::StatusOr<PeerResponse>> z = third.get_future();
  while (z.wait_for(10ms) != std::future_status::ready) peer.AnswerAll();
  absl::StatusOr<PeerResponse> zr = z.get();
  EXPECT_TRUE((!zr.ok() && zr.status().code() == absl::StatusCode::kCancelled) ||
              (zr.ok() && zr->status == 499))
      << (zr.ok() ? std::to_string(zr->status) : zr.status().ToString());
  client->Stop();
}

}  // namespace
}  // namespace hivemesh
