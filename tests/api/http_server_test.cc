// HttpServer and IoThreads in process: the server on its own threads and on shared ones, who runs
// what on which thread, and shutdown with requests still open.
#include "api/http_server.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "base/io_threads.h"
#include "support/http_client.h"

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
  std::mutex mu;
  std::vector<std::pair<int, HttpResponder>> parked;  // loop, responder
  auto server = HttpServer::Create(
      LocalOptions(),
      [&](const HttpRequest&, HttpResponder done) {
        std::lock_guard<std::mutex> lock(mu);
        parked.emplace_back(io->CurrentLoop(), std::move(done));
      },
      io);
  ASSERT_TRUE(server.ok());
  (*server)->Start();
  auto wait_parked = [&] {
    return WaitFor([&] {
      std::lock_guard<std::mutex> lock(mu);
      return parked.size() == 1;
    });
  };
  auto take = [&] {
    std::lock_guard<std::mutex> lock(mu);
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
    std::mutex mu;
    std::vector<HttpResponder> parked;
    std::atomic<int> sent{0};
    auto server = HttpServer::Create(
        LocalOptions(),
        [&](const HttpRequest&, HttpResponder done) {
          std::lock_guard<std::mutex> lock(mu);
          parked.push_back(std::move(done));
        },
        io);
    ASSERT_TRUE(server.ok());
    (*server)->Start();
    test::HttpConnection conn((*server)->port());
    ASSERT_TRUE(conn.SendRaw("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    ASSERT_TRUE(WaitFor([&] {
      std::lock_guard<std::mutex> lock(mu);
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

}  // namespace
}  // namespace hivemesh
