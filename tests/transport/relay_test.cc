// Connection-level pass-through (transport/relay.h) in process: what a connection's first bytes
// are; the HTTP server relaying what is not HTTP/1.x to the first hop that connects (a refused
// port, a node that refuses the tunnel, a garbage or endless answer: each tried and passed
// over); the serving end of a tunnel (refusals, a workload that does not listen, bytes sent
// with the upgrade request); half-closes passed on both ways.
#include "transport/relay.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "base/strings.h"
#include "transport/http_server.h"

namespace hivemesh {
namespace {

using namespace std::chrono_literals;

bool Contains(std::string_view text, std::string_view part) {
  return text.find(part) != std::string_view::npos;
}

TEST(ClassifyFirstBytesTest, HttpRequestLinesAndEverythingElse) {
  EXPECT_EQ(ClassifyFirstBytes("GET / HTTP/1.1\r\n"), FirstBytes::kHttp1);
  EXPECT_EQ(ClassifyFirstBytes("POST "), FirstBytes::kHttp1);
  EXPECT_EQ(ClassifyFirstBytes("M-SEARCH * HTTP/1.1"), FirstBytes::kOther);  // '-': not ours
  EXPECT_EQ(ClassifyFirstBytes(""), FirstBytes::kNeedMore);
  EXPECT_EQ(ClassifyFirstBytes("G"), FirstBytes::kNeedMore);
  EXPECT_EQ(ClassifyFirstBytes("DELET"), FirstBytes::kNeedMore);
  EXPECT_EQ(ClassifyFirstBytes("P"), FirstBytes::kNeedMore);
  EXPECT_EQ(ClassifyFirstBytes("PR"), FirstBytes::kNeedMore);
  EXPECT_EQ(ClassifyFirstBytes("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), FirstBytes::kOther);
  EXPECT_EQ(ClassifyFirstBytes("PRI "), FirstBytes::kOther);
  EXPECT_EQ(ClassifyFirstBytes("PUT /x HTTP/1.1"), FirstBytes::kHttp1);
  EXPECT_EQ(ClassifyFirstBytes("\x16\x03\x01\x02\x00"), FirstBytes::kOther);  // TLS
  EXPECT_EQ(ClassifyFirstBytes("get / HTTP/1.1"), FirstBytes::kOther);
  EXPECT_EQ(ClassifyFirstBytes(" GET"), FirstBytes::kOther);
  EXPECT_EQ(ClassifyFirstBytes("SSH-2.0-OpenSSH"), FirstBytes::kOther);
  EXPECT_EQ(ClassifyFirstBytes(std::string(21, 'A')), FirstBytes::kOther);  // no method so long
  EXPECT_EQ(ClassifyFirstBytes(std::string(20, 'A')), FirstBytes::kNeedMore);
}

int Listen(int* port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, 16) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    ::close(fd);
    return -1;
  }
  *port = ntohs(a.sin_port);
  return fd;
}

int Connect(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(static_cast<uint16_t>(port));
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

void SendAll(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n <= 0) return;
    bytes.remove_prefix(static_cast<size_t>(n));
  }
}

// Everything until the peer closes (or 10 s pass: then "<open>" is appended).
std::string ReadToClose(int fd) {
  std::string out;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    char buf[4096];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return out;
    out.append(buf, static_cast<size_t>(n));
  }
  return out + "<open>";
}

// A TCP server on loopback running `serve(fd)` for each connection on a thread of its own.
class TcpServer {
 public:
  explicit TcpServer(std::function<void(int)> serve) : serve_(std::move(serve)) {
    fd_ = Listen(&port_);
    thread_ = std::thread([this] {
      for (;;) {
        const int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0) return;
        ++accepted;
        absl::MutexLock lock(&mu_);
        workers_.emplace_back([this, c] {
          serve_(c);
          ::close(c);
        });
      }
    });
  }
  ~TcpServer() {
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
    absl::MutexLock lock(&mu_);
    for (std::thread& t : workers_) t.join();
  }
  int port() const { return port_; }
  std::string address() const { return StrCat("127.0.0.1:", port_); }
  std::atomic<int> accepted{0};

 private:
  std::function<void(int)> serve_;
  int fd_ = -1;
  int port_ = 0;
  std::thread thread_;
  absl::Mutex mu_;
  std::vector<std::thread> workers_ ABSL_GUARDED_BY(mu_);
};

// Upper-cases what it reads; after the client's half-close, writes "BYE <n>" and closes.
void UpperEcho(int fd) {
  size_t total = 0;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    total += static_cast<size_t>(n);
    for (ssize_t i = 0; i < n; ++i) buf[i] = static_cast<char>(std::toupper(buf[i]));
    SendAll(fd, std::string_view(buf, static_cast<size_t>(n)));
  }
  SendAll(fd, StrCat("BYE ", total));
}

// A "node" that reads a request head and answers `answer`, then closes.
std::function<void(int)> Answers(std::string answer) {
  return [answer](int fd) {
    std::string head;
    char buf[1024];
    while (head.find("\r\n\r\n") == std::string::npos) {
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) return;
      head.append(buf, static_cast<size_t>(n));
    }
    SendAll(fd, answer);
  };
}

struct Attempt {
  std::string address;
  absl::Status result;
};

// A server that relays every connection (pass_through_all) or what is not HTTP (sniffing),
// along `hops`, recording each attempt.
struct RelayingServer {
  RelayingServer(std::vector<RelayHop> hops, bool all) {
    HttpServerOptions o;
    o.port = 0;
    o.threads = 1;
    o.header_timeout = 2s;
    o.rejections = rejections;
    o.pass_through_all = all;
    o.pass_through = [this, hops](std::string_view) -> absl::StatusOr<RelayPlan> {
      RelayPlan plan;
      plan.hops = hops;
      plan.on_attempt = [this](const RelayHop& hop, const absl::Status& result, Nanos) {
        absl::MutexLock lock(&mu);
        attempts.push_back({hop.address, result});
      };
      plan.on_end = [this](const absl::Status& end) {
        absl::MutexLock lock(&mu);
        ends.push_back(end);
      };
      return plan;
    };
    auto s = HttpServer::Create(o, [](const HttpRequest&, HttpResponder done) {
      HttpResponse r;
      r.body = "http";
      done(std::move(r));
    });
    EXPECT_TRUE(s.ok()) << s.status();
    server = std::move(*s);
    server->Start();
  }
  ~RelayingServer() { server->Stop(); }
  std::vector<Attempt> Attempts() {
    absl::MutexLock lock(&mu);
    return attempts;
  }
  std::vector<absl::Status> Ends() {
    absl::MutexLock lock(&mu);
    return ends;
  }

  std::shared_ptr<Rejections> rejections = std::make_shared<Rejections>();
  absl::Mutex mu;
  std::vector<Attempt> attempts ABSL_GUARDED_BY(mu);
  std::vector<absl::Status> ends ABSL_GUARDED_BY(mu);
  std::unique_ptr<HttpServer> server;
};

TEST(RelayTest, HopsThatFailAreTriedInOrderUntilOneConnects) {
  int closed_port = 0;
  ::close(Listen(&closed_port));  // nothing listens there now
  TcpServer refuses(Answers("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 5\r\n\r\nnope!"));
  TcpServer garbage(Answers("SSH-2.0-not-http\r\n\r\n"));
  TcpServer endless(Answers("HTTP/1.1 101 Switching Protocols\r\nX: " + std::string(70000, 'x')));
  TcpServer workload(UpperEcho);
  RelayingServer relay({{StrCat("127.0.0.1:", closed_port), "", "", ""},
                        {refuses.address(), "n1", "/v1/services/s/tunnel", ""},
                        {garbage.address(), "n2", "/v1/services/s/tunnel", ""},
                        {endless.address(), "n3", "/v1/services/s/tunnel", ""},
                        {"not an address", "", "", ""},
                        {workload.address(), "", "", ""}},
                       /*all=*/false);
  const int fd = Connect(relay.server->port());
  ASSERT_GE(fd, 0);
  SendAll(fd, "hello relay");
  ::shutdown(fd, SHUT_WR);
  EXPECT_EQ(ReadToClose(fd), "HELLO RELAYBYE 11");
  ::close(fd);
  const std::vector<Attempt> a = relay.Attempts();
  ASSERT_EQ(a.size(), 6u);
  EXPECT_TRUE(Contains(MessageOf(a[0].result), "connection refused")) << a[0].result;
  EXPECT_TRUE(Contains(MessageOf(a[1].result), "answered 503: nope!")) << a[1].result;
  EXPECT_TRUE(Contains(MessageOf(a[2].result), "bad answer")) << a[2].result;
  EXPECT_FALSE(a[3].result.ok());  // a head over 64 KiB is never taken
  EXPECT_FALSE(a[4].result.ok());
  EXPECT_TRUE(a[5].result.ok()) << a[5].result;
  ASSERT_TRUE([&] {
    for (int i = 0; i < 200 && relay.Ends().empty(); ++i) std::this_thread::sleep_for(10ms);
    return !relay.Ends().empty();
  }());
  EXPECT_TRUE(relay.Ends()[0].ok()) << relay.Ends()[0];
}

TEST(RelayTest, SniffingServesHttpAndRelaysTheRest) {
  TcpServer workload(UpperEcho);
  RelayingServer relay({{workload.address(), "", "", ""}}, /*all=*/false);
  // HTTP/1.1, sent a byte at a time: served by the handler.
  int fd = Connect(relay.server->port());
  for (char c : std::string("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")) {
    SendAll(fd, std::string(1, c));
    std::this_thread::sleep_for(1ms);
  }
  const std::string http = ReadToClose(fd);
  ::close(fd);
  EXPECT_TRUE(http.starts_with("HTTP/1.1 200")) << http;
  EXPECT_TRUE(http.ends_with("http")) << http;
  EXPECT_EQ(workload.accepted.load(), 0);
  // The HTTP/2 preface: relayed.
  fd = Connect(relay.server->port());
  SendAll(fd, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
  ::shutdown(fd, SHUT_WR);
  EXPECT_EQ(ReadToClose(fd), "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nBYE 24");
  ::close(fd);
  EXPECT_EQ(workload.accepted.load(), 1);
}

TEST(RelayTest, ConnectionLevelPortsRelayAtOnceSoTheServerMaySpeakFirst) {
  TcpServer banner([](int fd) {
    SendAll(fd, "220 ready\r\n");
    UpperEcho(fd);
  });
  RelayingServer relay({{banner.address(), "", "", ""}}, /*all=*/true);
  const int fd = Connect(relay.server->port());
  char buf[64];
  pollfd p{fd, POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 10000), 1);
  const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
  EXPECT_EQ(std::string(buf, static_cast<size_t>(std::max<ssize_t>(n, 0))), "220 ready\r\n");
  SendAll(fd, "GET / HTTP/1.1\r\n\r\n");  // at a connection-level port, no HTTP is looked for
  ::shutdown(fd, SHUT_WR);
  EXPECT_EQ(ReadToClose(fd), "GET / HTTP/1.1\r\n\r\nBYE 18");
  ::close(fd);
}

TEST(RelayTest, NoHopConnectsAndTheConnectionCloses) {
  int closed_port = 0;
  ::close(Listen(&closed_port));
  RelayingServer relay({{StrCat("127.0.0.1:", closed_port), "", "", ""}}, /*all=*/true);
  const int fd = Connect(relay.server->port());
  EXPECT_EQ(ReadToClose(fd), "");
  ::close(fd);
  // The end is told just after the connection closes.
  for (int i = 0; i < 500 && relay.Ends().empty(); ++i) std::this_thread::sleep_for(10ms);
  ASSERT_EQ(relay.Attempts().size(), 1u);
  ASSERT_EQ(relay.Ends().size(), 1u);
  EXPECT_TRUE(Contains(MessageOf(relay.Ends()[0]), "connection refused"));
}

// The serving end of tunnels: authorize_tunnel decides; the address is connected first.
struct TunnelServer {
  explicit TunnelServer(std::function<absl::StatusOr<std::string>(const HttpRequest&)> authorize) {
    HttpServerOptions o;
    o.port = 0;
    o.threads = 1;
    o.rejections = rejections;
    o.authorize_tunnel = std::move(authorize);
    auto s = HttpServer::Create(o, [](const HttpRequest&, HttpResponder done) {
      HttpResponse r;
      r.body = "plain";
      done(std::move(r));
    });
    EXPECT_TRUE(s.ok()) << s.status();
    server = std::move(*s);
    server->Start();
  }
  ~TunnelServer() { server->Stop(); }
  std::shared_ptr<Rejections> rejections = std::make_shared<Rejections>();
  std::unique_ptr<HttpServer> server;
};

std::string Upgrade(std::string_view target, std::string_view after = "") {
  return StrCat("GET ", target,
                " HTTP/1.1\r\nHost: n\r\nConnection: Upgrade\r\nUpgrade: ", kTunnelProtocol,
                "\r\n\r\n", after);
}

TEST(TunnelTest, AnUpgradeBecomesRawBytesToTheWorkload) {
  TcpServer workload(UpperEcho);
  TunnelServer node([&](const HttpRequest& r) -> absl::StatusOr<std::string> {
    if (r.target() == "/v1/services/web/tunnel") return workload.address();
    if (r.target() == "/v1/services/gone/tunnel") {
      int port = 0;
      ::close(Listen(&port));
      return StrCat("127.0.0.1:", port);
    }
    if (r.target() == "/v1/services/busy/tunnel") return absl::UnavailableError("not here");
    return absl::PermissionDeniedError("members only");
  });
  // Bytes sent with the upgrade request reach the workload after the switch.
  int fd = Connect(node.server->port());
  SendAll(fd, Upgrade("/v1/services/web/tunnel", "early bytes"));
  ::shutdown(fd, SHUT_WR);
  const std::string got = ReadToClose(fd);
  ::close(fd);
  EXPECT_EQ(got, StrCat("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ",
                        kTunnelProtocol, "\r\n\r\nEARLY BYTESBYE 11"));
  // Refusals: by the layer above, and a workload that does not listen.
  for (const auto& [target, status] :
       std::vector<std::pair<std::string, std::string>>{{"/v1/services/x/tunnel", "403"},
                                                        {"/v1/services/busy/tunnel", "503"},
                                                        {"/v1/services/gone/tunnel", "502"}}) {
    fd = Connect(node.server->port());
    SendAll(fd, Upgrade(target, "never relayed"));
    const std::string answer = ReadToClose(fd);
    ::close(fd);
    EXPECT_TRUE(answer.starts_with("HTTP/1.1 " + status)) << target << ": " << answer;
    EXPECT_FALSE(Contains(answer, "NEVER")) << answer;
  }
  EXPECT_EQ(node.rejections->count(Rejection::kTunnelRefused), 2u);
  EXPECT_EQ(workload.accepted.load(), 1);
  // Without authorize_tunnel the upgrade is a plain request.
  TunnelServer plain(nullptr);
  fd = Connect(plain.server->port());
  SendAll(fd, Upgrade("/v1/services/web/tunnel"));
  ::shutdown(fd, SHUT_WR);
  const std::string answer = ReadToClose(fd);
  ::close(fd);
  EXPECT_TRUE(answer.starts_with("HTTP/1.1 200")) << answer;
}

TEST(TunnelTest, StopClosesRelaysStillOpen) {
  TcpServer workload(UpperEcho);
  auto node = std::make_unique<TunnelServer>(
      [&](const HttpRequest&) -> absl::StatusOr<std::string> { return workload.address(); });
  const int fd = Connect(node->server->port());
  SendAll(fd, Upgrade("/v1/services/web/tunnel", "a"));
  char buf[256];
  std::string got;
  while (!got.ends_with("A")) {
    pollfd p{fd, POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 10000), 1);
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    ASSERT_GT(n, 0);
    got.append(buf, static_cast<size_t>(n));
  }
  node.reset();  // Stop(): the relay is closed, both ways
  EXPECT_EQ(ReadToClose(fd), "");
  ::close(fd);
}

}  // namespace
}  // namespace hivemesh

namespace hivemesh {
namespace {

// A server that forwards every request to `upstream` (streamed), naming it "up".
struct ForwardingServer {
  // Requests for /here are not forwarded.
  explicit ForwardingServer(std::string upstream,
                            std::chrono::milliseconds timeout = std::chrono::seconds(30),
                            uint64_t max_body_bytes = 64ull << 20) {
    HttpServerOptions o;
    o.port = 0;
    o.threads = 1;
    o.body_timeout = 5s;
    o.max_body_bytes = max_body_bytes;
    o.forward = [upstream, timeout](const HttpRequest& head) -> std::optional<ForwardPlan> {
      if (head.target() == "/here") return std::nullopt;
      ForwardPlan plan;
      plan.timeout = timeout;
      plan.route.hops.push_back({upstream, "", "", ""});
      plan.served_by.push_back("up");
      plan.head = StrCat(head.method(), " ", head.target(), " HTTP/1.1\r\nHost: up\r\n");
      plan.keep_field = [](std::string_view name) { return name.starts_with("x-"); };
      return plan;
    };
    auto s = HttpServer::Create(o, [this](const HttpRequest&, HttpResponder done) {
      ++handled;
      HttpResponse r;
      r.body = "handled here";
      done(std::move(r));
    });
    EXPECT_TRUE(s.ok()) << s.status();
    server = std::move(*s);
    server->Start();
  }
  ~ForwardingServer() { server->Stop(); }
  std::atomic<int> handled{0};
  std::unique_ptr<HttpServer> server;
};

// Reads from `fd` until `marker` has arrived (or 10 s pass).
std::string ReadUntil(int fd, std::string_view marker) {
  std::string out;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!Contains(out, marker) && std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    char buf[4096];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

// Reads a request head from `fd` (and whatever came with it).
std::string ReadHead(int fd) { return ReadUntil(fd, "\r\n\r\n"); }

TEST(ForwardTest, AnAnswerReachesTheClientPieceByPiece) {
  std::atomic<bool> go{false};
  TcpServer up([&](int fd) {
    ReadHead(fd);
    SendAll(fd,
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Kind: events\r\n\r\n"
            "8\r\nevent 1\n\r\n");
    for (int i = 0; i < 1000 && !go; ++i) std::this_thread::sleep_for(10ms);
    SendAll(fd, "8\r\nevent 2\n\r\n0\r\n\r\n");
  });
  ForwardingServer fwd(up.address());
  const int fd = Connect(fwd.server->port());
  SendAll(fd, "GET /events HTTP/1.1\r\nHost: x\r\n\r\n");
  const std::string first = ReadUntil(fd, "event 1");
  EXPECT_TRUE(Contains(first, "event 1")) << "the first piece came before the answer ended";
  EXPECT_FALSE(Contains(first, "event 2"));
  EXPECT_TRUE(Contains(first, "Transfer-Encoding: chunked")) << first;
  EXPECT_TRUE(Contains(first, "X-Kind: events")) << first;
  go = true;
  const std::string rest = ReadUntil(fd, "0\r\n\r\n");
  EXPECT_TRUE(Contains(rest, "event 2")) << rest;
  // The connection goes on: a second request on it.
  SendAll(fd, "GET /events HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  const std::string again = ReadToClose(fd);
  ::close(fd);
  EXPECT_TRUE(Contains(again, "event 1") && Contains(again, "event 2")) << again;
}

TEST(ForwardTest, ARequestBodyReachesTheServerPieceByPiece) {
  std::atomic<bool> first_seen{false};
  TcpServer up([&](int fd) {
    std::string got = ReadUntil(fd, "part one");
    if (Contains(got, "part one")) first_seen = true;
    got += ReadUntil(fd, "0\r\n\r\n");
    const bool whole = Contains(got, "part two");
    SendAll(fd, StrCat("HTTP/1.1 200 OK\r\nContent-Length: ", whole ? 5 : 4, "\r\n\r\n",
                       whole ? "whole" : "part"));
  });
  ForwardingServer fwd(up.address());
  const int fd = Connect(fwd.server->port());
  SendAll(fd,
          "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
          "Connection: close\r\n\r\n8\r\npart one\r\n");
  for (int i = 0; i < 1000 && !first_seen; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_TRUE(first_seen.load()) << "the body's first piece arrived before the rest was sent";
  SendAll(fd, "8\r\npart two\r\n0\r\n\r\n");
  const std::string got = ReadToClose(fd);
  ::close(fd);
  EXPECT_TRUE(Contains(got, "whole")) << got;
}

TEST(ForwardTest, AStreamedBodyIsNotBoundByTheLimitOfBodiesReadWhole) {
  constexpr size_t kBody = 4 << 20;
  // Answers how many bytes followed the head: up to kBody, or up to the last chunk.
  TcpServer up([&](int fd) {
    std::string got = ReadHead(fd);
    const bool chunked = Contains(got, "chunked");
    std::string tail = got.substr(std::min(got.size(), got.find("\r\n\r\n") + 4));
    size_t n = tail.size();
    char buf[65536];
    while (chunked ? !tail.ends_with("\r\n0\r\n\r\n") : n < kBody) {
      const ssize_t r = ::recv(fd, buf, sizeof buf, 0);
      if (r <= 0) break;
      n += static_cast<size_t>(r);
      tail = tail.substr(tail.size() - std::min<size_t>(tail.size(), 8)) +
             std::string(buf, static_cast<size_t>(r));
    }
    const std::string count = std::to_string(n);
    SendAll(fd, StrCat("HTTP/1.1 200 OK\r\nContent-Length: ", count.size(), "\r\n\r\n", count));
  });
  ForwardingServer fwd(up.address(), 30s, /*max_body_bytes=*/1024);
  const std::string body(kBody, 'b');
  int fd = Connect(fwd.server->port());
  SendAll(fd, StrCat("POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: ", kBody,
                     "\r\nConnection: close\r\n\r\n", body));
  std::string got = ReadToClose(fd);
  ::close(fd);
  EXPECT_TRUE(got.starts_with("HTTP/1.1 200")) << got.substr(0, 300);
  EXPECT_TRUE(got.ends_with("\r\n\r\n" + std::to_string(kBody))) << got.substr(0, 300);
  // Chunked, 64 chunks of 64 KiB: they go on as chunks (so a little more than kBody arrives).
  fd = Connect(fwd.server->port());
  std::string chunks;
  for (size_t at = 0; at < kBody; at += 65536)
    chunks += "10000\r\n" + body.substr(at, 65536) + "\r\n";
  SendAll(fd,
          "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
          "Connection: close\r\n\r\n" +
              chunks + "0\r\n\r\n");
  got = ReadToClose(fd);
  ::close(fd);
  ASSERT_TRUE(got.starts_with("HTTP/1.1 200")) << got.substr(0, 300);
  const size_t arrived = std::stoul(got.substr(got.rfind("\r\n\r\n") + 4));
  EXPECT_GT(arrived, kBody);
  EXPECT_LT(arrived, kBody + 64 * 1024);
  // A request this server reads whole still has the limit, refused before any of its body.
  fd = Connect(fwd.server->port());
  SendAll(fd,
          "POST /here HTTP/1.1\r\nHost: x\r\nContent-Length: 1025\r\n"
          "Expect: 100-continue\r\n\r\n");
  got = ReadToClose(fd);
  ::close(fd);
  EXPECT_TRUE(got.starts_with("HTTP/1.1 413")) << got.substr(0, 300);
  EXPECT_FALSE(Contains(got, "100 Continue")) << got.substr(0, 300);
  EXPECT_EQ(fwd.handled.load(), 0);
}

TEST(ForwardTest, WhatReachedNoServerIsHandledHereAndFailuresAfterAreAnswered) {
  // Nothing listens: handled by the server's own handler (the request was never sent).
  int closed_port = 0;
  ::close(Listen(&closed_port));
  {
    ForwardingServer fwd(StrCat("127.0.0.1:", closed_port));
    const int fd = Connect(fwd.server->port());
    SendAll(fd,
            "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n"
            "\r\nabc");
    EXPECT_TRUE(Contains(ReadToClose(fd), "handled here"));
    ::close(fd);
    EXPECT_EQ(fwd.handled.load(), 1);
  }
  // A server that answers what is no HTTP: 502.
  TcpServer garbage([](int fd) {
    ReadHead(fd);
    SendAll(fd, "SSH-2.0-nope\r\n\r\n");
  });
  {
    ForwardingServer fwd(garbage.address());
    const int fd = Connect(fwd.server->port());
    SendAll(fd, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    const std::string got = ReadToClose(fd);
    ::close(fd);
    EXPECT_TRUE(got.starts_with("HTTP/1.1 502")) << got;
  }
  // A server that never answers: 504 after the plan's timeout.
  std::atomic<bool> release{false};
  TcpServer silent([&](int fd) {
    ReadHead(fd);
    for (int i = 0; i < 1000 && !release; ++i) std::this_thread::sleep_for(10ms);
  });
  {
    ForwardingServer fwd(silent.address(), 300ms);
    const int fd = Connect(fwd.server->port());
    SendAll(fd, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nz");
    const std::string got = ReadToClose(fd);
    ::close(fd);
    EXPECT_TRUE(got.starts_with("HTTP/1.1 504")) << got;
  }
  release = true;
}

TEST(ForwardTest, AHugeAnswerHeadAndAStalledExchangeAreCutOff) {
  TcpServer huge([](int fd) {
    ReadHead(fd);
    SendAll(fd, "HTTP/1.1 200 OK\r\nX-Big: " + std::string(70000, 'x') + "\r\n\r\n");
  });
  {
    ForwardingServer fwd(huge.address());
    const int fd = Connect(fwd.server->port());
    SendAll(fd, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    const std::string got = ReadToClose(fd);
    ::close(fd);
    EXPECT_TRUE(got.starts_with("HTTP/1.1 502")) << got.substr(0, 200);
    EXPECT_LT(got.size(), 1000u);
  }
  // A client that stops sending its body half way: the exchange ends after body_timeout (5 s
  // here), and the server's connection to the hop closes with it.
  std::atomic<bool> hop_saw_end{false};
  TcpServer patient([&](int fd) {
    ReadHead(fd);
    char buf[4096];
    while (::recv(fd, buf, sizeof buf, 0) > 0) {
    }
    hop_saw_end = true;
  });
  ForwardingServer fwd(patient.address());
  const int fd = Connect(fwd.server->port());
  SendAll(fd, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly some");
  const auto start = std::chrono::steady_clock::now();
  const std::string got = ReadToClose(fd);
  ::close(fd);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 9s) << got;
  for (int i = 0; i < 500 && !hop_saw_end; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_TRUE(hop_saw_end.load());
}

TEST(ForwardTest, AKeptConnectionThePeerClosedIsNeverExchangedForAnotherHops) {
  // "a" answers and then closes its side (its kept connection goes stale); "b" keeps its own.
  const auto server = [](std::string name, bool close_after) {
    return [name, close_after](int fd) {
      for (;;) {
        if (ReadHead(fd).empty()) return;
        SendAll(fd, StrCat("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n", name));
        if (close_after) return;
      }
    };
  };
  TcpServer a(server("a", true)), b(server("b", false));
  HttpServerOptions o;
  o.port = 0;
  o.threads = 1;
  o.forward = [&](const HttpRequest& head) -> std::optional<ForwardPlan> {
    const bool to_a = head.target() == "/a";
    ForwardPlan plan;
    plan.route.hops.push_back({to_a ? a.address() : b.address(), "", "", ""});
    plan.served_by.push_back(to_a ? "a" : "b");
    plan.head = StrCat("GET / HTTP/1.1\r\nHost: x\r\n");
    return plan;
  };
  auto s =
      HttpServer::Create(o, [](const HttpRequest&, HttpResponder done) { done(HttpResponse()); });
  ASSERT_TRUE(s.ok());
  (*s)->Start();
  for (const char* target : {"/b", "/a", "/a", "/b", "/a"}) {
    const int fd = Connect((*s)->port());
    SendAll(fd, StrCat("GET ", target, " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
    const std::string got = ReadToClose(fd);
    ::close(fd);
    EXPECT_TRUE(got.ends_with(std::string(1, target[1]))) << target << ": " << got;
    std::this_thread::sleep_for(20ms);  // "a" has closed its side by the next request
  }
  EXPECT_EQ(b.accepted.load(), 1);
  EXPECT_EQ(a.accepted.load(), 3);
  (*s)->Stop();
}

TEST(ForwardTest, ConnectionsToTheServerAreKeptAndAnswersWithoutLengthAreChunked) {
  TcpServer up([](int fd) {
    // Keep-alive answers with a length (none for HEAD); /close's without one, ended by closing.
    for (;;) {
      const std::string head = ReadHead(fd);
      if (head.empty()) return;
      if (head.starts_with("GET /close")) {
        SendAll(fd, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end");
        return;
      }
      SendAll(fd, head.starts_with("HEAD") ? "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"
                                           : "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    }
  });
  ForwardingServer fwd(up.address());
  for (int i = 0; i < 2; ++i) {
    const int fd = Connect(fwd.server->port());
    SendAll(fd, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    EXPECT_TRUE(ReadToClose(fd).ends_with("ok"));
    ::close(fd);
  }
  EXPECT_EQ(up.accepted.load(), 1) << "the second request went on the kept connection";
  const int fd = Connect(fwd.server->port());
  SendAll(fd, "HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n");  // no body comes back for HEAD
  // The client keeps its connection: an answer ended by the server's close comes chunked.
  SendAll(fd, "GET /close HTTP/1.1\r\nHost: x\r\n\r\n");
  const std::string got = ReadUntil(fd, "0\r\n\r\n");
  ::close(fd);
  EXPECT_EQ(up.accepted.load(), 1) << "HEAD and GET went on the kept connection too";
  EXPECT_TRUE(got.starts_with("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n")) << got;
  EXPECT_TRUE(Contains(got, "Transfer-Encoding: chunked\r\n")) << got;
  EXPECT_TRUE(Contains(got, "d\r\nuntil the end\r\n0\r\n\r\n")) << got;
}

TEST(ForwardTest, RequestsAndAnswersStreamThroughAndTheConnectionGoesOn) {
  HttpServerOptions o;
  o.port = 0;
  o.threads = 1;
  auto up = HttpServer::Create(o, [](const HttpRequest& r, HttpResponder done) {
    HttpResponse a;
    a.content_type = "text/plain";
    a.body = StrCat(r.method(), " ", r.target(), " ", r.body()->size());
    a.headers.emplace_back("X-Up", "yes");
    a.headers.emplace_back("Y-Dropped", "yes");
    done(std::move(a));
  });
  ASSERT_TRUE(up.ok());
  (*up)->Start();
  ForwardingServer fwd(StrCat("127.0.0.1:", (*up)->port()));
  const int fd = Connect(fwd.server->port());
  SendAll(
      fd,
      "GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n"
      "hello");
  SendAll(fd,
          "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
          "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
  const std::string got = ReadToClose(fd);
  ::close(fd);
  EXPECT_TRUE(Contains(got, "GET /a 0")) << got;
  EXPECT_TRUE(Contains(got, "POST /b 5")) << got;
  EXPECT_TRUE(Contains(got, "POST /c 5")) << got;
  EXPECT_TRUE(Contains(got, "X-Up: yes")) << got;
  EXPECT_FALSE(Contains(got, "Y-Dropped")) << got;
  EXPECT_TRUE(Contains(got, "Hivemesh-Served-By: up")) << got;
  (*up)->Stop();
}

}  // namespace
}  // namespace hivemesh
