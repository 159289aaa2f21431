// What the peer client's tests share: an echo peer, requests to it, and waits. For
// peer_client_test.cc and peer_link_test.cc.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <utility>

#include "base/strings.h"
#include "transport/http_server.h"
#include "transport/peer_client.h"

namespace hivemesh::test_util {

using namespace std::chrono_literals;

// Polls `done` until it holds, for at most a generous 30 s of real time (real I/O is involved).
inline bool WaitFor(const std::function<bool()>& done) {
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

// True if `f` becomes ready within a generous deadline.
template <class F>
bool ReadySoon(F& f) {
  return f.wait_for(30s) == std::future_status::ready;
}

// A peer that echoes the request's target and body, on its own threads.
// With `accept_links` false the peer takes no mesh link, so the client uses plain pooled HTTP/1.1.
inline std::unique_ptr<HttpServer> EchoPeer(HttpHandler handler = nullptr, bool accept_links = true,
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

inline PeerRequest To(const HttpServer& peer, std::string target, std::string body = "") {
  PeerRequest r;
  r.address = StrCat("127.0.0.1:", peer.port());
  r.target = std::move(target);
  r.body = std::move(body);
  return r;
}

// Sends and waits for the answer.
inline absl::StatusOr<PeerResponse> Call(PeerClient& client, PeerRequest request) {
  std::promise<absl::StatusOr<PeerResponse>> answer;
  client.Send(std::move(request),
              [&](absl::StatusOr<PeerResponse> r) { answer.set_value(std::move(r)); });
  auto future = answer.get_future();
  if (future.wait_for(30s) != std::future_status::ready) {
    return absl::DeadlineExceededError("test: no callback");
  }
  return future.get();
}

}  // namespace hivemesh::test_util
