// ParkingServer: an HttpServer on a free loopback port whose handler parks requests (target,
// body and responder) until the test answers them, for tests of what is open at once, answer
// order, timeouts and shutdown. With `hold` set, only requests for that target are parked; the
// others are answered at once with `other_body`. Header-only: tests that include it link hm_http.
//
// Thread safety: the handler runs on the server's I/O threads; the methods take a lock.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "transport/http_server.h"

namespace hivemesh::test {

class ParkingServer {
 public:
  struct Options {
    bool accept_links = true;
    uint16_t port = 0;  // 0: a free one
    std::string hold;   // empty: park every request
    std::string other_body;
    size_t max_body_bytes = 0;                  // 0: the server's default
    std::string record_header;                  // a field whose value each parked request keeps
    std::chrono::milliseconds body_timeout{0};  // 0: the server's default
  };

  ParkingServer() : ParkingServer(Options()) {}
  explicit ParkingServer(Options options) : options_(std::move(options)) {
    HttpServerOptions o;
    o.port = options_.port;
    o.accept_links = options_.accept_links;
    if (options_.max_body_bytes > 0) o.max_body_bytes = options_.max_body_bytes;
    if (options_.body_timeout.count() > 0) o.body_timeout = options_.body_timeout;
    auto s = HttpServer::Create(o, [this](const HttpRequest& req, HttpResponder done) {
      ++handled_;
      if (!options_.hold.empty() && req.target() != options_.hold) {
        HttpResponse r;
        r.body = options_.other_body;
        done(std::move(r));
        return;
      }
      std::lock_guard<std::mutex> lock(mu_);
      parked_.push_back({std::string(req.target()), *req.body(), std::move(done),
                         options_.record_header.empty()
                             ? std::string()
                             : std::string(req.header(options_.record_header))});
    });
    EXPECT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
    server_->Start();
  }

  HttpServer& server() { return *server_; }
  uint16_t port() const { return server_->port(); }

  // Requests the handler was given so far, parked or answered at once.
  size_t handled() const { return handled_.load(); }

  // Requests parked so far (answered ones included).
  size_t count() {
    std::lock_guard<std::mutex> lock(mu_);
    return parked_.size();
  }

  // Answers the parked requests for `target` (text/plain, header X-Target, the request's body
  // echoed, unless `body` is given).
  void Answer(const std::string& target, const std::string* body = nullptr) {
    for (Parked& p : Take([&](const Parked& p) { return p.target == target; })) {
      Reply(p, body);
    }
  }
  // Answers every parked request, the last one first.
  void AnswerAllReversed() {
    std::vector<Parked> all = Take([](const Parked&) { return true; });
    for (auto it = all.rbegin(); it != all.rend(); ++it) Reply(*it, nullptr);
  }
  // Options::record_header's value in each request parked so far, in arrival order.
  std::vector<std::string> Recorded() {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<std::string> out;
    for (const Parked& p : parked_) out.push_back(p.recorded);
    return out;
  }
  // Drops the responders still parked without answering.
  void Forget() {
    std::lock_guard<std::mutex> lock(mu_);
    for (Parked& p : parked_) p.done = nullptr;
  }

 private:
  struct Parked {
    std::string target, body;
    HttpResponder done;    // null once answered
    std::string recorded;  // the value of Options::record_header
  };

  template <typename Pred>
  std::vector<Parked> Take(const Pred& pred) {
    std::vector<Parked> out;
    std::lock_guard<std::mutex> lock(mu_);
    for (Parked& p : parked_) {
      if (p.done && pred(p)) {
        out.push_back({p.target, p.body, std::move(p.done), p.recorded});
        p.done = nullptr;
      }
    }
    return out;
  }
  static void Reply(Parked& p, const std::string* body) {
    HttpResponse r;
    r.content_type = "text/plain";
    r.headers.emplace_back("X-Target", p.target);
    r.body = body != nullptr ? *body : p.body;
    p.done(std::move(r));
  }

  const Options options_;
  std::atomic<size_t> handled_{0};
  std::mutex mu_;
  std::vector<Parked> parked_;
  std::unique_ptr<HttpServer> server_;
};

}  // namespace hivemesh::test
