// HttpClient against real servers on loopback: the project's HttpServer for ordinary exchanges,
// and a scripted raw-socket server for what a server may do to a keep-alive connection (close it
// while idle, close it mid-answer, never answer).
#include "cli/http_client.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "support/agent_process.h"
#include "transport/http_server.h"

namespace hivemesh {
namespace {

using test::UnusedPort;
using ::testing::HasSubstr;

// A loopback server that hands each accepted connection to `script` (on the server's thread),
// one connection at a time, and counts connections.
class ScriptedServer {
 public:
  // Reads one request (headers and a Content-Length body) from `fd`; false if the peer closed.
  static bool ReadRequest(int fd, std::string* request = nullptr) {
    std::string in;
    char buf[4096];
    while (true) {
      const size_t end = in.find("\r\n\r\n");
      if (end != std::string::npos) {
        size_t length = 0;
        const size_t at = in.find("Content-Length: ");
        if (at != std::string::npos && at < end) length = std::stoul(in.substr(at + 16));
        if (in.size() >= end + 4 + length) {
          if (request != nullptr) *request = in;
          return true;
        }
      }
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) return false;
      in.append(buf, static_cast<size_t>(n));
    }
  }
  static void Send(int fd, const std::string& bytes) {
    ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  }
  static std::string Ok(const std::string& body) {
    return "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  }

  // `script(fd, index)` handles the index-th connection (0-based) and returns when done with it;
  // the server then closes it.
  explicit ScriptedServer(std::function<void(int fd, int index)> script)
      : script_(std::move(script)) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    EXPECT_EQ(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    EXPECT_EQ(::listen(listen_fd_, 8), 0);
    socklen_t len = sizeof addr;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { Loop(); });
  }
  ~ScriptedServer() {
    stop_ = true;
    thread_.join();
    ::close(listen_fd_);
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  int connections() const { return connections_.load(); }

 private:
  void Loop() {
    while (!stop_) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      script_(fd, connections_++);
      ::close(fd);
    }
  }
  std::function<void(int, int)> script_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> connections_{0};
  std::thread thread_;
};

class HttpServerFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    HttpServerOptions options;
    options.port = 0;
    options.threads = 1;
    auto server =
        HttpServer::Create(options, [this](const HttpRequest& request, HttpResponder respond) {
          ++requests_;
          HttpResponse r;
          r.content_type = "text/plain";
          if (request.target() == "/big") {
            r.body = std::string(3 << 20, 'x');
          } else if (request.target() == "/missing") {
            r.status = 404;
            r.body = R"({"error":"no such thing"})";
          } else if (request.target() == "/close") {
            r.headers.emplace_back("Connection", "close");
            r.body = "bye";
          } else {
            r.headers.emplace_back("X-Seen-Method", std::string(request.method()));
            r.headers.emplace_back("X-Seen-Custom", std::string(request.header("x-custom")));
            r.body = std::string(request.target()) + "|" + *request.body();
          }
          respond(std::move(r));
        });
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    server_->Start();
    address_ = "127.0.0.1:" + std::to_string(server_->port());
  }
  void TearDown() override {
    if (server_ != nullptr) server_->Stop();
  }
  std::unique_ptr<HttpServer> server_;
  std::string address_;
  std::atomic<int> requests_{0};
};

TEST_F(HttpServerFixture, GetAndPostOnOneKeptAliveConnection) {
  HttpClient client(address_);
  absl::StatusOr<HttpResult> get = client.Request("GET", "/hello?x=1");
  ASSERT_TRUE(get.ok()) << get.status();
  EXPECT_EQ(get->status, 200);
  EXPECT_EQ(get->body, "/hello?x=1|");
  EXPECT_EQ(get->header("content-type"), "text/plain") << "header names are lower-cased";
  EXPECT_EQ(get->header("x-seen-method"), "GET");

  absl::StatusOr<HttpResult> post =
      client.Request("POST", "/echo", std::string("a\0b", 3), {{"X-Custom", "yes"}});
  ASSERT_TRUE(post.ok()) << post.status();
  EXPECT_EQ(post->body, std::string("/echo|a\0b", 9));
  EXPECT_EQ(post->header("x-seen-method"), "POST");
  EXPECT_EQ(post->header("x-seen-custom"), "yes");
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(client.Request("GET", "/again").ok());
  EXPECT_EQ(client.connections_opened(), 1);
  EXPECT_EQ(requests_.load(), 22);
}

TEST_F(HttpServerFixture, ErrorStatusesAreResultsAndLargeBodiesArriveWhole) {
  HttpClient client(address_);
  absl::StatusOr<HttpResult> missing = client.Request("GET", "/missing");
  ASSERT_TRUE(missing.ok()) << missing.status();
  EXPECT_EQ(missing->status, 404);
  EXPECT_EQ(missing->body, R"({"error":"no such thing"})");
  absl::StatusOr<HttpResult> big = client.Request("GET", "/big");
  ASSERT_TRUE(big.ok()) << big.status();
  EXPECT_EQ(big->body.size(), size_t{3} << 20);
  EXPECT_EQ(client.connections_opened(), 1);
}

TEST_F(HttpServerFixture, ConnectionCloseOpensANewConnectionNextTime) {
  HttpClient client(address_);
  ASSERT_TRUE(client.Request("GET", "/close").ok());
  absl::StatusOr<HttpResult> next = client.Request("GET", "/next");
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(next->body, "/next|");
  EXPECT_EQ(client.connections_opened(), 2);
}

TEST(HttpClientTest, RefusedConnectionIsUnavailableAndNamesTheAddress) {
  const std::string address = "127.0.0.1:" + std::to_string(UnusedPort());
  HttpClient client(address, 2000);
  absl::StatusOr<HttpResult> r = client.Request("GET", "/v2");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr(address));
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("refused"));
}

TEST(HttpClientTest, MalformedAddressIsInvalidArgument) {
  for (const char* address : {"nonsense", "127.0.0.1:", ":80", "host:99999", "[::1]80"}) {
    absl::StatusOr<HttpResult> r = HttpClient(address).Request("GET", "/");
    ASSERT_FALSE(r.ok()) << address;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << address;
    EXPECT_THAT(std::string(r.status().message()), HasSubstr(address));
  }
}

TEST(HttpClientTest, NoAnswerWithinTheTimeoutIsDeadlineExceeded) {
  std::atomic<bool> release{false};
  ScriptedServer server([&](int fd, int) {
    ScriptedServer::ReadRequest(fd);
    while (!release) {
      pollfd p{fd, POLLIN, 0};
      ::poll(&p, 1, 10);  // the client closing ends the wait too
      if (p.revents != 0) break;
    }
  });
  HttpClient client(server.address(), 200);
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<HttpResult> r = client.Request("GET", "/slow");
  const auto took = std::chrono::steady_clock::now() - start;
  release = true;
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr(server.address()));
  EXPECT_GE(took, std::chrono::milliseconds(190));
  EXPECT_LT(took, std::chrono::seconds(5));
  EXPECT_EQ(server.connections(), 1) << "a timeout is not retried";
}

TEST(HttpClientTest, IdleConnectionClosedByTheServerIsRetriedOnceOnANewOne) {
  // Connection 0 answers one request, then reads the second and closes without a byte of answer
  // (what a server closing an idle connection looks like to the client). Connection 1 answers.
  ScriptedServer server([](int fd, int index) {
    if (!ScriptedServer::ReadRequest(fd)) return;
    ScriptedServer::Send(fd, ScriptedServer::Ok(index == 0 ? "first" : "retried"));
    ScriptedServer::ReadRequest(fd);  // connection 0: the second request; then close
  });
  HttpClient client(server.address());
  absl::StatusOr<HttpResult> first = client.Request("GET", "/a");
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->body, "first");
  absl::StatusOr<HttpResult> second = client.Request("POST", "/b", "payload");
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->body, "retried");
  EXPECT_EQ(server.connections(), 2);
  EXPECT_EQ(client.connections_opened(), 2);
}

TEST(HttpClientTest, FreshConnectionClosedBeforeAnsweringIsNotRetried) {
  ScriptedServer server([](int fd, int) { ScriptedServer::ReadRequest(fd); });
  HttpClient client(server.address());
  absl::StatusOr<HttpResult> r = client.Request("GET", "/a");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("closed the connection before"));
  EXPECT_EQ(server.connections(), 1);
}

TEST(HttpClientTest, ReusedConnectionClosedMidAnswerIsNotRetried) {
  ScriptedServer server([](int fd, int index) {
    if (!ScriptedServer::ReadRequest(fd)) return;
    ScriptedServer::Send(fd, ScriptedServer::Ok("first"));
    if (index == 0 && ScriptedServer::ReadRequest(fd)) {
      ScriptedServer::Send(fd, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npart");
    }
  });
  HttpClient client(server.address());
  ASSERT_TRUE(client.Request("GET", "/a").ok());
  absl::StatusOr<HttpResult> r = client.Request("GET", "/b");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("in the middle of its answer"));
  EXPECT_EQ(server.connections(), 1) << "bytes of an answer had arrived: no retry";
  // The client recovers on a new connection.
  absl::StatusOr<HttpResult> next = client.Request("GET", "/c");
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(next->body, "first");
}

TEST(HttpClientTest, GarbageIsAMalformedResponse) {
  ScriptedServer server([](int fd, int) {
    if (ScriptedServer::ReadRequest(fd)) ScriptedServer::Send(fd, "SSH-2.0-OpenSSH\r\n\r\n");
  });
  absl::StatusOr<HttpResult> r = HttpClient(server.address()).Request("GET", "/");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("malformed"));
}

TEST(HttpClientTest, RequestCarriesHostLengthAndHeaders) {
  std::mutex mu;
  std::string seen;
  ScriptedServer server([&](int fd, int) {
    std::string request;
    if (!ScriptedServer::ReadRequest(fd, &request)) return;
    {
      std::lock_guard<std::mutex> lock(mu);
      seen = request;
    }
    ScriptedServer::Send(fd, ScriptedServer::Ok("ok"));
  });
  HttpClient client(server.address());
  ASSERT_TRUE(
      client.Request("POST", "/v2/models/m/infer", "{}", {{"Inference-Header-Content-Length", "2"}})
          .ok());
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_THAT(seen, HasSubstr("POST /v2/models/m/infer HTTP/1.1\r\n"));
  EXPECT_THAT(seen, HasSubstr("Host: " + server.address() + "\r\n"));
  EXPECT_THAT(seen, HasSubstr("Content-Length: 2\r\n"));
  EXPECT_THAT(seen, HasSubstr("Inference-Header-Content-Length: 2\r\n"));
  EXPECT_THAT(seen, ::testing::EndsWith("\r\n\r\n{}"));
  EXPECT_FALSE(client.Request("GET", "/x", "", {{"Bad", "a\r\nInjected: 1"}}).ok());
}

}  // namespace
}  // namespace hivemesh
