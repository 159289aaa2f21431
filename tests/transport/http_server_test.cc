// HttpServer and IoThreads in process: the server on its own threads and on shared ones, who runs
// what on which thread, shutdown with requests still open, and the bounds on hostile input
// (connection limits, request framing, the memory budget, slow clients).
#include "transport/http_server.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>

#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "base/memory_budget.h"
#include "base/rejections.h"
#include "base/strings.h"
#include "support/http_client.h"
#include "transport/io_threads.h"

namespace hivemesh {
namespace {

using namespace std::chrono_literals;

// Polls `done` until it holds or 10 s pass.
bool WaitFor(const std::function<bool()>& done) {
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

HttpServerOptions LocalOptions(int threads = 2) {
  HttpServerOptions o;
  o.port = 0;
  o.threads = threads;
  return o;
}

HttpResponse Text(std::string body) {
  HttpResponse r;
  r.content_type = "text/plain";
  r.body = std::move(body);
  return r;
}

TEST(IoThreadsTest, LoopsKnowTheirThreads) {
  auto io = IoThreads::Create(3);
  ASSERT_EQ(io->size(), 3);
  EXPECT_EQ(io->CurrentLoop(), -1);
  for (int i = 0; i < 3; ++i) {
    int seen = -2;
    std::thread::id tid;
    io->RunOn(i, [&] {
      seen = io->CurrentLoop();
      tid = std::this_thread::get_id();
    });
    EXPECT_EQ(seen, i);
    EXPECT_NE(tid, std::this_thread::get_id());
  }
  // Round robin over the loops.
  std::vector<int> picks;
  for (int i = 0; i < 6; ++i) picks.push_back(io->NextLoop());
  for (int i = 0; i < 3; ++i) EXPECT_EQ(std::count(picks.begin(), picks.end(), i), 2);
}

TEST(IoThreadsTest, AnotherSetsThreadsAreNotItsOwn) {
  auto a = IoThreads::Create(1);
  auto b = IoThreads::Create(1);
  int seen = -2;
  a->RunOn(0, [&] { seen = b->CurrentLoop(); });
  EXPECT_EQ(seen, -1);
}

TEST(IoThreadsTest, RunOnAfterStopRunsOnTheCaller) {
  auto io = IoThreads::Create(2);
  io->Stop();
  io->Stop();  // idempotent
  EXPECT_TRUE(io->stopped());
  std::thread::id tid;
  io->RunOn(1, [&] { tid = std::this_thread::get_id(); });
  EXPECT_EQ(tid, std::this_thread::get_id());
}

TEST(HttpServerTest, OwnThreadsServeAndStop) {
  auto server = HttpServer::Create(LocalOptions(), [](const HttpRequest& req, HttpResponder done) {
    done(Text(std::string(req.target())));
  });
  ASSERT_TRUE(server.ok()) << server.status();
  (*server)->Start();
  test::HttpConnection conn((*server)->port());
  for (int i = 0; i < 3; ++i) {
    test::HttpResult r = conn.Request("GET", "/x" + std::to_string(i));
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, "/x" + std::to_string(i));
  }
  (*server)->Stop();
  (*server)->Stop();  // idempotent
  EXPECT_TRUE(conn.WaitClosed(5s));
}

TEST(HttpServerTest, StopBeforeStart) {
  auto server = HttpServer::Create(LocalOptions(), [](const HttpRequest&, HttpResponder) {});
  ASSERT_TRUE(server.ok());
  (*server)->StopAccepting();
  (*server)->Stop();
}

TEST(HttpServerTest, SharedThreadsRunTheHandlerAndOutliveStop) {
  auto io = IoThreads::Create(2);
  std::atomic<int> handler_loop{-2};
  auto server = HttpServer::Create(
      LocalOptions(99),  // `threads` is ignored on shared loops
      [&](const HttpRequest&, HttpResponder done) {
        handler_loop = io->CurrentLoop();
        done(Text("ok"));
      },
      io);
  ASSERT_TRUE(server.ok());
  (*server)->Start();
  // Connections are spread over the loops; each is served on one of them.
  std::vector<std::unique_ptr<test::HttpConnection>> conns;
  for (int i = 0; i < 4; ++i) {
    conns.push_back(std::make_unique<test::HttpConnection>((*server)->port()));
    EXPECT_EQ(conns.back()->Request("GET", "/").status, 200);
    EXPECT_GE(handler_loop.load(), 0);
    EXPECT_LT(handler_loop.load(), 2);
  }
  (*server)->Stop();
  for (auto& c : conns) EXPECT_TRUE(c->WaitClosed(5s));
  // The shared loops keep running for their other users.
  EXPECT_FALSE(io->stopped());
  int seen = -1;
  io->RunOn(1, [&] { seen = io->CurrentLoop(); });
  EXPECT_EQ(seen, 1);
}

TEST(HttpServerTest, ResponderOnTheConnectionsLoopOrElsewhere) {
  // A responder called on the connection's own loop (as a peer client's callback on shared loops
  // is) and one called from another thread both answer, in order.
  auto io = IoThreads::Create(2);
  absl::Mutex mu;
  std::vector<std::pair<int, HttpResponder>> parked;  // loop, responder
  auto server = HttpServer::Create(
      LocalOptions(),
      [&](const HttpRequest&, HttpResponder done) {
        absl::MutexLock lock(&mu);
        parked.emplace_back(io->CurrentLoop(), std::move(done));
      },
      io);
  ASSERT_TRUE(server.ok());
  (*server)->Start();
  auto wait_parked = [&] {
    return WaitFor([&] {
      absl::MutexLock lock(&mu);
      return parked.size() == 1;
    });
  };
  auto take = [&] {
    absl::MutexLock lock(&mu);
    auto p = std::move(parked[0]);
    parked.clear();
    return p;
  };
  test::HttpConnection conn((*server)->port());
  for (int i = 0; i < 4; ++i) {
    const bool on_loop = i % 2 == 0;
    ASSERT_TRUE(conn.SendRaw("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    ASSERT_TRUE(wait_parked());
    EXPECT_EQ((*server)->busy_connections(), 1);
    auto parked_one = take();
    const int loop = parked_one.first;
    HttpResponder done = std::move(parked_one.second);
    ASSERT_GE(loop, 0);
    if (on_loop) {
      io->RunOn(loop, [&] {
        ASSERT_EQ(io->CurrentLoop(), loop);
        done(Text("same loop"));
      });
    } else {
      done(Text("elsewhere"));
    }
    EXPECT_EQ(conn.ReadResponse().body, on_loop ? "same loop" : "elsewhere");
    EXPECT_TRUE(WaitFor([&] { return (*server)->busy_connections() == 0; }));
  }
  (*server)->Stop();
  io->Stop();
}

TEST(HttpServerTest, StopWithARequestOpenAndAnAnswerAfterwards) {
  for (bool shared : {false, true}) {
    SCOPED_TRACE(shared ? "shared loops" : "own threads");
    std::shared_ptr<IoThreads> io = shared ? IoThreads::Create(2) : nullptr;
    absl::Mutex mu;
    std::vector<HttpResponder> parked;
    std::atomic<int> sent{0};
    auto server = HttpServer::Create(
        LocalOptions(),
        [&](const HttpRequest&, HttpResponder done) {
          absl::MutexLock lock(&mu);
          parked.push_back(std::move(done));
        },
        io);
    ASSERT_TRUE(server.ok());
    (*server)->Start();
    test::HttpConnection conn((*server)->port());
    ASSERT_TRUE(conn.SendRaw("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    ASSERT_TRUE(WaitFor([&] {
      absl::MutexLock lock(&mu);
      return parked.size() == 1;
    }));
    (*server)->Stop();  // must not wait for the open request
    EXPECT_TRUE(conn.WaitClosed(5s));
    // The answer arrives after Stop: dropped, without touching the stopped server's callbacks.
    HttpResponse r = Text("late");
    r.on_sent = [&](SteadyTime) { ++sent; };
    parked[0](std::move(r));
    parked.clear();
    server->reset();
    if (io) io->Stop();
    EXPECT_EQ(sent.load(), 0);
  }
}

// Connections the kernel completed while the node's loop was busy, whose clients have written a
// request, are served when the node stops accepting, not reset with the listener.
TEST(HttpServerTest, StopAcceptingServesConnectionsStillQueuedOnTheListener) {
  auto io = IoThreads::Create(1);
  auto server = HttpServer::Create(
      LocalOptions(), [&](const HttpRequest&, HttpResponder done) { done(Text("ok")); }, io);
  ASSERT_TRUE(server.ok());
  (*server)->Start();
  // Hold the only loop, so that nothing is accepted while the clients connect and write.
  absl::Notification held, release;
  std::thread blocker([&] {
    io->RunOn(0, [&] {
      held.Notify();
      release.WaitForNotification();
    });
  });
  held.WaitForNotification();
  constexpr int kClients = 20;
  std::vector<std::unique_ptr<test::HttpConnection>> conns;
  for (int i = 0; i < kClients; ++i) {
    conns.push_back(std::make_unique<test::HttpConnection>((*server)->port()));
    ASSERT_TRUE(conns.back()->connected());
    ASSERT_TRUE(conns.back()->SendRaw("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  }
  // StopAccepting runs on the held loop: queue it, then let the loop go.
  std::thread stopper([&] { (*server)->StopAccepting(); });
  std::this_thread::sleep_for(50ms);
  release.Notify();
  blocker.join();
  stopper.join();
  int served = 0;
  for (auto& c : conns) {
    const test::HttpResult r = c->ReadResponse();
    served += r.status == 200 && r.body == "ok" ? 1 : 0;
    EXPECT_EQ(r.header("connection"), "close");
  }
  EXPECT_EQ(served, kClients);
  // New clients find nothing listening.
  EXPECT_FALSE(test::HttpConnection((*server)->port(), 1s).connected());
  (*server)->Stop();
  io->Stop();
}

// A client that connected just before the node stopped accepting (taken from the listener's
// queue, or between two keep-alive requests) may be writing its request right now: the drain
// waits for it (the node stops once no connection is busy) instead of closing the connection
// under it. One that sends nothing is waited for a second at most.
TEST(HttpServerTest, ADrainWaitsForTheRequestOfAConnectionAlreadyOpen) {
  auto server = HttpServer::Create(
      LocalOptions(), [&](const HttpRequest&, HttpResponder done) { done(Text("ok")); });
  ASSERT_TRUE(server.ok());
  (*server)->Start();
  test::HttpConnection writer((*server)->port());
  test::HttpConnection silent((*server)->port());
  ASSERT_TRUE(writer.connected() && silent.connected());
  ASSERT_TRUE(WaitFor([&] { return (*server)->open_connections() == 2; }));
  (*server)->StopAccepting();
  // What the agent's drain does: wait while connections are busy, then stop.
  std::atomic<bool> stopped{false};
  std::thread drain([&] {
    while ((*server)->busy_connections() > 0) std::this_thread::sleep_for(2ms);
    (*server)->Stop();
    stopped = true;
  });
  std::this_thread::sleep_for(200ms);  // the client writes a moment later
  EXPECT_FALSE(stopped.load()) << "the drain did not wait for the connection's request";
  ASSERT_TRUE(writer.SendRaw("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  const test::HttpResult r = writer.ReadResponse();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "ok");
  EXPECT_EQ(r.header("connection"), "close");
  // The silent one holds the drain for its grace only.
  EXPECT_TRUE(silent.WaitClosed(10s));
  drain.join();
  EXPECT_TRUE(stopped.load());
}

TEST(HttpServerTest, ManyConnectionsOnSharedLoops) {
  auto io = IoThreads::Create(2);
  auto server = HttpServer::Create(
      LocalOptions(),
      [](const HttpRequest& req, HttpResponder done) { done(Text(std::string(req.target()))); },
      io);
  ASSERT_TRUE(server.ok());
  (*server)->Start();
  std::vector<std::thread> clients;
  std::atomic<int> ok{0};
  for (int t = 0; t < 8; ++t) {
    clients.emplace_back([&, t] {
      test::HttpConnection conn((*server)->port());
      for (int i = 0; i < 50; ++i) {
        const std::string path = "/" + std::to_string(t) + "/" + std::to_string(i);
        test::HttpResult r = conn.Request("GET", path);
        if (r.status == 200 && r.body == path) ++ok;
      }
    });
  }
  for (std::thread& t : clients) t.join();
  EXPECT_EQ(ok.load(), 8 * 50);
  (*server)->Stop();
  io->Stop();
}

TEST(HttpServerTest, HeaderTimeoutClosesIdleConnectionsButNotBusyOnes) {
  for (bool shared : {false, true}) {
    SCOPED_TRACE(shared ? "shared loops" : "own threads");
    std::shared_ptr<IoThreads> io = shared ? IoThreads::Create(2) : nullptr;
    HttpServerOptions o = LocalOptions();
    o.header_timeout = 300ms;
    auto server = HttpServer::Create(
        o, [](const HttpRequest&, HttpResponder done) { done(Text("ok")); }, io);
    ASSERT_TRUE(server.ok());
    (*server)->Start();
    // Requests every 50 ms for well past the timeout: each one moves the deadline on.
    test::HttpConnection busy((*server)->port());
    const auto start = std::chrono::steady_clock::now();
    auto idle_from = start;
    while (std::chrono::steady_clock::now() - start < 900ms) {
      std::this_thread::sleep_for(50ms);  // pacing the client, not waiting for the server
      ASSERT_EQ(busy.Request("GET", "/").status, 200);
      idle_from = std::chrono::steady_clock::now();
    }
    // Then idle: closed after about the timeout.
    EXPECT_TRUE(busy.WaitClosed(5s));
    const auto idle_for = std::chrono::steady_clock::now() - idle_from;
    EXPECT_GE(idle_for, 200ms);
    EXPECT_LT(idle_for, 3s);
    // Half a request's headers count as idle too.
    test::HttpConnection slow((*server)->port());
    ASSERT_TRUE(slow.SendRaw("GET / HTTP/1.1\r\nHost"));
    EXPECT_TRUE(slow.WaitClosed(5s));
    (*server)->Stop();
    if (io) io->Stop();
  }
}

// A raw connection to the server on loopback from address `source` (any 127.x.y.z): another
// source than the tests' usual 127.0.0.1.
class RawConnection {
 public:
  RawConnection(int port, const char* source) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in from{};
    from.sin_family = AF_INET;
    ::inet_pton(AF_INET, source, &from.sin_addr);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(static_cast<uint16_t>(port));
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&from), sizeof from) != 0 ||
        ::connect(fd_, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }
  ~RawConnection() {
    if (fd_ >= 0) ::close(fd_);
  }
  bool Send(const std::string& bytes) {
    return fd_ >= 0 && ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) ==
                           static_cast<ssize_t>(bytes.size());
  }
  // What arrives until `marker` has (or 5 s pass, or the server closes).
  std::string ReadUntil(std::string_view marker) {
    std::string out;
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (fd_ >= 0 && out.find(marker) == std::string::npos &&
           std::chrono::steady_clock::now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      char buf[4096];
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) break;
      out.append(buf, static_cast<size_t>(n));
    }
    return out;
  }
  // Everything until the server closes (or 5 s pass: then "<open>" is appended).
  std::string ReadToClose() {
    std::string out;
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (fd_ >= 0 && std::chrono::steady_clock::now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      char buf[4096];
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) return out;
      out.append(buf, static_cast<size_t>(n));
    }
    return out + "<open>";
  }

 private:
  int fd_ = -1;
};

// A server that answers every request with its target, counting them and its refusals.
struct EchoServer {
  explicit EchoServer(HttpServerOptions o = LocalOptions()) {
    o.rejections = rejections;
    auto s = HttpServer::Create(o, [this](const HttpRequest& req, HttpResponder done) {
      ++handled;
      done(Text(StrCat(req.target(), " ", req.body()->size())));
    });
    EXPECT_TRUE(s.ok()) << s.status();
    server = std::move(*s);
    server->Start();
  }
  ~EchoServer() { server->Stop(); }
  int port() const { return server->port(); }
  uint64_t count(Rejection r) const { return rejections->count(r); }

  std::shared_ptr<Rejections> rejections = std::make_shared<Rejections>();
  std::atomic<int> handled{0};
  std::unique_ptr<HttpServer> server;
};

TEST(HttpServerLimitsTest, ConnectionsOverTheLimitsAreClosedAtOnceWithA503) {
  HttpServerOptions o = LocalOptions();
  o.max_connections = 3;
  o.max_connections_per_source = 2;
  EchoServer echo(o);
  test::HttpConnection a(echo.port()), b(echo.port());
  ASSERT_EQ(a.Request("GET", "/a").status, 200);
  ASSERT_EQ(b.Request("GET", "/b").status, 200);
  // A third from 127.0.0.1: over the per-source limit.
  RawConnection c(echo.port(), "127.0.0.1");
  const std::string refused = c.ReadToClose();
  EXPECT_THAT(refused, ::testing::HasSubstr("503 Service Unavailable"));
  EXPECT_THAT(refused, ::testing::HasSubstr("max_connections_per_source"));
  EXPECT_THAT(refused, ::testing::Not(::testing::HasSubstr("<open>")));
  EXPECT_EQ(echo.count(Rejection::kSourceConnectionLimit), 1u);
  // Another source gets in, up to the total.
  RawConnection d(echo.port(), "127.0.0.2");
  RawConnection e(echo.port(), "127.0.0.3");
  EXPECT_THAT(e.ReadToClose(), ::testing::HasSubstr("(max_connections)"));
  EXPECT_EQ(echo.count(Rejection::kConnectionLimit), 1u);
  EXPECT_EQ(echo.server->open_connections(), 3);
  ASSERT_TRUE(d.Send("GET /d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
  EXPECT_THAT(d.ReadToClose(), ::testing::HasSubstr("/d 0"));
  // Places given back are taken again.
  ASSERT_TRUE(a.SendRaw("GET /bye HTTP/1.1\r\nConnection: close\r\n\r\n"));
  EXPECT_TRUE(a.WaitClosed(5s));
  ASSERT_TRUE(WaitFor([&] { return echo.server->open_connections() == 1; }));
  test::HttpConnection g(echo.port());
  EXPECT_EQ(g.Request("GET", "/g").status, 200);
}

TEST(HttpServerLimitsTest, FramingThatCouldBeReadTwoWaysGets400AndTheBodyIsNeverARequest) {
  EchoServer echo;
  for (const std::string te : {"chunked, identity", "identity", "gzip, chunked", "chunked;q=1"}) {
    SCOPED_TRACE(te);
    RawConnection c(echo.port(), "127.0.0.1");
    ASSERT_TRUE(c.Send("GET /first HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: " + te +
                       "\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"));
    const std::string answer = c.ReadToClose();
    EXPECT_THAT(answer, ::testing::StartsWith("HTTP/1.1 400 "));
    EXPECT_THAT(answer, ::testing::HasSubstr("Connection: close"));
    EXPECT_THAT(answer, ::testing::Not(::testing::HasSubstr("smuggled")));
  }
  EXPECT_EQ(echo.handled.load(), 0);
  EXPECT_EQ(echo.count(Rejection::kBadTransferEncoding), 4u);
  // Chunked as it should be, then another request on the same connection.
  test::HttpConnection ok(echo.port());
  ASSERT_TRUE(
      ok.SendRaw("POST /chunked HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\n"
                 "X-Trailer: t\r\n\r\n"));
  EXPECT_EQ(ok.ReadResponse().body, "/chunked 3");
  EXPECT_EQ(ok.Request("GET", "/next").body, "/next 0");
}

TEST(HttpServerLimitsTest, ChunkLinesAndTrailersAreBoundedAsTheyArrive) {
  EchoServer echo;
  RawConnection c(echo.port(), "127.0.0.1");
  ASSERT_TRUE(c.Send("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;e="));
  // Pieces until the server answers: it must, long before the megabytes run out.
  for (int i = 0; i < 64 && c.Send(std::string(16384, 'e')); ++i) {
  }
  const std::string answer = c.ReadToClose();
  EXPECT_THAT(answer, ::testing::StartsWith("HTTP/1.1 400 "));
  EXPECT_THAT(answer, ::testing::HasSubstr("4096 bytes"));
  EXPECT_EQ(echo.count(Rejection::kChunkHeaderTooLarge), 1u);
  EXPECT_EQ(echo.handled.load(), 0);
}

TEST(HttpServerLimitsTest, BodiesTheBudgetCannotHoldGet503BeforeTheyAreRead) {
  std::shared_ptr<MemoryBudget> budget = MemoryBudget::Create(1 << 20);
  HttpServerOptions o = LocalOptions();
  o.memory_budget = budget;
  EchoServer echo(o);
  // Too large for the budget: refused on its head, with Retry-After, before any body is sent
  // (no 100 Continue).
  RawConnection c(echo.port(), "127.0.0.1");
  ASSERT_TRUE(
      c.Send("POST /big HTTP/1.1\r\nContent-Length: 2000000\r\nExpect: 100-continue\r\n\r\n"));
  const std::string answer = c.ReadToClose();
  EXPECT_THAT(answer, ::testing::StartsWith("HTTP/1.1 503 "));
  EXPECT_THAT(answer, ::testing::HasSubstr("Retry-After: 1"));
  EXPECT_THAT(answer, ::testing::HasSubstr("memory budget"));
  EXPECT_THAT(answer, ::testing::Not(::testing::HasSubstr("100 Continue")));
  EXPECT_EQ(echo.count(Rejection::kMemoryBudget), 1u);
  // One that fits is served, and its reservation given back once the answer is written.
  test::HttpConnection ok(echo.port());
  EXPECT_EQ(ok.Request("POST", "/fits", std::string(500000, 'b')).body, "/fits 500000");
  EXPECT_TRUE(WaitFor([&] { return budget->used() == 0; }));
}

TEST(HttpServerLimitsTest, ASlowRequestIsCountedAnIdleConnectionIsNot) {
  HttpServerOptions o = LocalOptions();
  o.header_timeout = 200ms;
  EchoServer echo(o);
  test::HttpConnection idle(echo.port());
  test::HttpConnection slow(echo.port());
  ASSERT_TRUE(slow.SendRaw("GET / HTTP/1.1\r\nHost"));
  EXPECT_TRUE(idle.WaitClosed(5s));
  EXPECT_TRUE(slow.WaitClosed(5s));
  EXPECT_EQ(echo.count(Rejection::kSlowClient), 1u);
}

// A server whose every answer is a stream (": hello" first), handed to the test.
struct StreamingServer {
  explicit StreamingServer(HttpServerOptions o = LocalOptions(), size_t max_queued = 1 << 20) {
    o.rejections = rejections;
    auto s = HttpServer::Create(o, [this, max_queued](const HttpRequest&, HttpResponder done) {
      auto stream = std::make_shared<AnswerStream>(max_queued);
      stream->SetOnClose([this] { ++closed; });
      {
        absl::MutexLock lock(&mu);
        streams.push_back(stream);
      }
      HttpResponse r;
      r.content_type = "text/event-stream";
      r.body = ": hello\n\n";
      r.stream = std::move(stream);
      done(std::move(r));
    });
    EXPECT_TRUE(s.ok()) << s.status();
    server = std::move(*s);
    server->Start();
  }
  ~StreamingServer() { server->Stop(); }
  int port() const { return server->port(); }
  // The i-th stream answered (waits for it).
  std::shared_ptr<AnswerStream> Stream(size_t i) {
    EXPECT_TRUE(WaitFor([&] {
      absl::MutexLock lock(&mu);
      return streams.size() > i;
    }));
    absl::MutexLock lock(&mu);
    return streams.size() > i ? streams[i] : nullptr;
  }

  std::shared_ptr<Rejections> rejections = std::make_shared<Rejections>();
  std::atomic<int> closed{0};
  absl::Mutex mu;
  std::vector<std::shared_ptr<AnswerStream>> streams ABSL_GUARDED_BY(mu);
  std::unique_ptr<HttpServer> server;
};

TEST(HttpServerStreamTest, PiecesArriveAsTheyArePushedAndEndClosesTheConnection) {
  StreamingServer s;
  RawConnection c(s.port(), "127.0.0.1");
  ASSERT_TRUE(c.Send("GET /events HTTP/1.1\r\nHost: x\r\n\r\n"));
  std::string got = c.ReadUntil(": hello\n\n\r\n");
  EXPECT_THAT(got, ::testing::StartsWith("HTTP/1.1 200 OK\r\n"));
  EXPECT_THAT(got, ::testing::HasSubstr("Content-Type: text/event-stream\r\n"));
  EXPECT_THAT(got, ::testing::HasSubstr("Transfer-Encoding: chunked\r\n"));
  EXPECT_THAT(got, ::testing::HasSubstr("Connection: close\r\n"));
  EXPECT_THAT(got, ::testing::Not(::testing::HasSubstr("Content-Length")));
  std::shared_ptr<AnswerStream> stream = s.Stream(0);
  // Each piece reaches the client before the next is pushed.
  for (int i = 1; i <= 3; ++i) {
    const std::string event = StrCat("data: ", i, "\n\n");
    ASSERT_TRUE(stream->Push(event));
    got = c.ReadUntil(event);
    EXPECT_THAT(got, ::testing::HasSubstr(StrCat("9\r\n", event, "\r\n"))) << i;
  }
  EXPECT_EQ(s.server->busy_connections(), 0) << "a stream does not hold the server's drain";
  EXPECT_TRUE(stream->Push(""));  // nothing: an empty chunk would end the body
  ASSERT_TRUE(stream->Push("data: last\n\n"));
  stream->End();
  EXPECT_FALSE(stream->Push("data: late\n\n"));
  got = c.ReadToClose();
  EXPECT_THAT(got, ::testing::EndsWith("data: last\n\n\r\n0\r\n\r\n")) << got;
  EXPECT_TRUE(WaitFor([&] { return s.closed.load() == 1; }));
  EXPECT_TRUE(stream->closed());
}

TEST(HttpServerStreamTest, AClientThatLeavesTalksOrStallsEndsItsStreamWithinItsBound) {
  HttpServerOptions o = LocalOptions();
  o.body_timeout = 300ms;
  constexpr size_t kBound = 256 * 1024;
  StreamingServer s(o, kBound);
  {
    RawConnection gone(s.port(), "127.0.0.1");
    ASSERT_TRUE(gone.Send("GET /events HTTP/1.1\r\nHost: x\r\n\r\n"));
    gone.ReadUntil(": hello");
  }
  EXPECT_TRUE(WaitFor([&] { return s.closed.load() == 1; })) << "the client left";
  EXPECT_FALSE(s.Stream(0)->Push("data: x\n\n"));
  // A client of a stream only listens: a request on its connection ends the stream.
  RawConnection talker(s.port(), "127.0.0.1");
  ASSERT_TRUE(talker.Send("GET /events HTTP/1.1\r\nHost: x\r\n\r\n"));
  talker.ReadUntil(": hello");
  ASSERT_TRUE(talker.Send("GET /other HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_TRUE(WaitFor([&] { return s.closed.load() == 2; })) << "the client spoke";
  // A client that reads nothing: what waits stays within the bound, pushes beyond it are
  // refused, and once a write has waited body_timeout the connection closes.
  RawConnection stalled(s.port(), "127.0.0.1");
  ASSERT_TRUE(stalled.Send("GET /events HTTP/1.1\r\nHost: x\r\n\r\n"));
  std::shared_ptr<AnswerStream> stream = s.Stream(2);
  ASSERT_NE(stream, nullptr);
  const std::string piece(64 * 1024, 'p');
  int refused = 0;
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (s.closed.load() < 3 && std::chrono::steady_clock::now() < deadline) {
    if (!stream->Push(piece)) {
      ++refused;
      std::this_thread::sleep_for(1ms);
    }
    ASSERT_LE(stream->queued_bytes(), kBound);
  }
  EXPECT_EQ(s.closed.load(), 3) << "the stalled client was not closed";
  EXPECT_GT(refused, 0);
  EXPECT_GE(s.rejections->count(Rejection::kSlowClient), 1u);
}

TEST(HttpServerStreamTest, StopClosesOpenStreams) {
  StreamingServer s;
  RawConnection c(s.port(), "127.0.0.1");
  ASSERT_TRUE(c.Send("GET /events HTTP/1.1\r\nHost: x\r\n\r\n"));
  c.ReadUntil(": hello");
  std::shared_ptr<AnswerStream> stream = s.Stream(0);
  s.server->Stop();
  EXPECT_TRUE(WaitFor([&] { return s.closed.load() == 1; }));
  EXPECT_FALSE(stream->Push("data: x\n\n"));
  EXPECT_THAT(c.ReadToClose(), ::testing::Not(::testing::EndsWith("<open>")));
}

}  // namespace
}  // namespace hivemesh
