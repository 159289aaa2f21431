// TLS on the transport (transport/tls.h) between a real HttpServer and PeerClient on loopback,
// with certificates of a mesh made here (identity/): links and plain requests over mutual TLS,
// the server naming the client from its certificate, the client refusing a server that is not
// the member it meant (also on a connection checked for another member at the same address), a
// refused client certificate answered 403, plain clients still served, nothing sent in the clear
// by a client without a certificate yet, a link stuck in its handshake given up, and sessions
// resumed on the client's next connection (a peer client's and a tunnel's).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <string>

#include "identity/certs.h"
#include "identity/mesh_files.h"
#include "identity/tls_context.h"
#include "support/http_client.h"
#include "support/mesh_util.h"
#include "transport/http_server.h"
#include "transport/peer_client.h"
#include "transport/tls.h"

namespace hivemesh {
namespace {

using identity::Certificate;
using identity::MeshCredentials;
using identity::NodeKey;

// A mesh whose founder is "server", and a member "client" (or any name) issued by it.
struct Mesh {
  Mesh() {
    server = *identity::CreateMesh(server_key, "server", {}, std::chrono::system_clock::now());
  }
  MeshCredentials Member(const std::string& name, const NodeKey& key) const {
    identity::NodeIdentity who;
    who.name = name;
    who.public_key = key.public_key();
    MeshCredentials m;
    m.roots = server.roots;
    m.node_cert = *identity::IssueNodeCertificate(who, *server.issuer_cert, *server.issuer_key,
                                                  std::chrono::system_clock::now());
    m.node_chain = {*server.issuer_cert};
    return m;
  }
  NodeKey server_key = NodeKey::Generate();
  MeshCredentials server;
};

// TlsSettings for `mine` with `key`, checking peers against `roots` the way a node does.
std::shared_ptr<TlsSettings> Settings(const MeshCredentials& mine, const NodeKey& key) {
  const std::vector<Certificate> roots = mine.roots;
  const std::vector<Certificate> chain = mine.node_chain;
  return std::make_shared<TlsSettings>(
      *identity::MakeTlsContext(mine, key, true), *identity::MakeTlsContext(mine, key, false),
      [roots, chain](const PeerChain& der,
                     std::string_view expected) -> absl::StatusOr<std::string> {
        std::vector<Certificate> certs = identity::CertificatesFromDer(der);
        if (certs.empty()) return absl::PermissionDeniedError("no certificate");
        std::vector<Certificate> intermediates(certs.begin() + 1, certs.end());
        intermediates.insert(intermediates.end(), chain.begin(), chain.end());
        absl::StatusOr<identity::NodeIdentity> who = identity::VerifyNodeCertificate(
            certs.front(), intermediates, roots, std::chrono::system_clock::now());
        if (!who.ok()) return who.status();
        if (!expected.empty() && who->name != expected) {
          return absl::PermissionDeniedError("not the member expected: " + who->name);
        }
        return who->name;
      });
}

// A server that answers every request with who it came from: "link:<member>" on a link,
// "tls:<peer>" on a TLS connection with a certificate, "plain" otherwise. Links are opened
// only for a TLS peer.
struct WhoServer {
  explicit WhoServer(std::shared_ptr<TlsSettings> tls, bool links = true) {
    HttpServerOptions o;
    o.port = 0;
    o.threads = 1;
    o.tls = std::move(tls);
    o.accept_links = links;
    o.authorize_link = [](const HttpRequest& r) -> absl::StatusOr<std::string> {
      if (r.tls_peer().empty()) return absl::PermissionDeniedError("links need a certificate");
      return std::string(r.tls_peer());
    };
    server = *HttpServer::Create(o, [](const HttpRequest& r, HttpResponder respond) {
      HttpResponse out;
      out.content_type = "text/plain";
      out.body = !r.link_member().empty() ? "link:" + std::string(r.link_member())
                 : !r.tls_peer().empty()  ? "tls:" + std::string(r.tls_peer())
                                          : "plain";
      // One connection per request: the next request needs a new handshake.
      out.headers.emplace_back("Connection", "close");
      respond(std::move(out));
    });
    server->Start();
  }
  ~WhoServer() { server->Stop(); }
  std::string address() const { return "127.0.0.1:" + std::to_string(server->port()); }
  std::unique_ptr<HttpServer> server;
};

// A peer client with a certificate of `mesh` for member "client" (key `key`).
std::unique_ptr<PeerClient> MemberClient(const Mesh& mesh, const NodeKey& key) {
  return PeerClient::Create(nullptr, nullptr, SystemClock::Get(),
                            Settings(mesh.Member("client", key), key));
}

absl::StatusOr<PeerResponse> Call(PeerClient& client, const std::string& address,
                                  const std::string& peer,
                                  std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  PeerRequest r;
  r.address = address;
  r.peer_node = peer;
  r.method = "GET";
  r.target = "/who";
  r.timeout = timeout;
  std::promise<absl::StatusOr<PeerResponse>> done;
  client.Send(std::move(r), [&done](absl::StatusOr<PeerResponse> a) { done.set_value(a); });
  return done.get_future().get();
}

std::string Body(const absl::StatusOr<PeerResponse>& r) {
  return r.ok() && r->body ? *r->body : std::string(r.status().message());
}

TEST(TlsTransportTest, AMeshLinkOverMutualTlsNamesTheClientFromItsCertificate) {
  Mesh mesh;
  const NodeKey client_key = NodeKey::Generate();
  WhoServer server(Settings(mesh.server, mesh.server_key));
  std::unique_ptr<PeerClient> client = MemberClient(mesh, client_key);
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<PeerResponse> r = Call(*client, server.address(), "server");
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(Body(r), "link:client");
  }
  EXPECT_EQ(client->open_links(), 1);
}

// A member whose key is revoked: the server closes its connections and links, the client its
// links to it; the next call needs a new link.
TEST(TlsTransportTest, ConnectionsOfAMemberAreClosedOnRequest) {
  Mesh mesh;
  const NodeKey client_key = NodeKey::Generate();
  WhoServer server(Settings(mesh.server, mesh.server_key));
  std::unique_ptr<PeerClient> client = MemberClient(mesh, client_key);
  ASSERT_TRUE(Call(*client, server.address(), "server").ok());
  ASSERT_EQ(client->open_links(), 1);
  server.server->CloseConnectionsOf("someone-else");
  ASSERT_TRUE(Call(*client, server.address(), "server").ok());
  EXPECT_EQ(client->open_links(), 1) << "another member's connections are not touched";
  server.server->CloseConnectionsOf("client");
  ASSERT_TRUE(test::WaitFor([&] { return client->open_links() == 0; }, std::chrono::seconds(10)));
  ASSERT_TRUE(Call(*client, server.address(), "server").ok());
  EXPECT_EQ(client->open_links(), 1);
  client->CloseConnectionsTo("server");
  ASSERT_TRUE(test::WaitFor([&] { return client->open_links() == 0; }, std::chrono::seconds(10)));
}

TEST(TlsTransportTest, TheClientRefusesAServerThatIsNotTheMemberItMeant) {
  Mesh mesh;
  const NodeKey client_key = NodeKey::Generate();
  WhoServer server(Settings(mesh.server, mesh.server_key));
  std::unique_ptr<PeerClient> client = MemberClient(mesh, client_key);
  absl::StatusOr<PeerResponse> r = Call(*client, server.address(), "someone-else");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(r.status().message().find("certificate is refused"), std::string_view::npos)
      << r.status();
}

TEST(TlsTransportTest, AConnectionCheckedForOneMemberIsNeverUsedForAnother) {
  Mesh mesh;
  const NodeKey client_key = NodeKey::Generate();
  WhoServer server(Settings(mesh.server, mesh.server_key));
  std::unique_ptr<PeerClient> client = MemberClient(mesh, client_key);
  ASSERT_TRUE(Call(*client, server.address(), "server").ok());
  ASSERT_EQ(client->open_links(), 1);
  // Another member now said to be at that address: the link checked for "server" is not
  // taken; a new connection checks the certificate, which is not "other"'s.
  absl::StatusOr<PeerResponse> r = Call(*client, server.address(), "other");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("certificate is refused"), std::string_view::npos)
      << r.status();
  EXPECT_TRUE(Call(*client, server.address(), "server").ok());
}

TEST(TlsTransportTest, WithoutACertificateYetNothingIsSentInTheClear) {
  Mesh mesh;
  std::atomic<int> requests{0};
  HttpServerOptions o;
  o.port = 0;
  o.threads = 1;
  std::unique_ptr<HttpServer> server =
      *HttpServer::Create(o, [&requests](const HttpRequest&, HttpResponder respond) {
        ++requests;
        respond(HttpResponse{});
      });
  server->Start();
  auto no_context = std::make_shared<TlsSettings>(
      nullptr, nullptr, [](const PeerChain&, std::string_view) -> absl::StatusOr<std::string> {
        return std::string("anyone");
      });
  std::unique_ptr<PeerClient> client =
      PeerClient::Create(nullptr, nullptr, SystemClock::Get(), no_context);
  absl::StatusOr<PeerResponse> r =
      Call(*client, "127.0.0.1:" + std::to_string(server->port()), "server");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("no certificate"), std::string_view::npos) << r.status();
  EXPECT_EQ(requests.load(), 0);
  server->Stop();
}

// A peer that accepts connections and says nothing (stopped, wedged): its link is given up once a
// call's deadline passes while it is being set up, and the next call opens a new one.
TEST(TlsTransportTest, ALinkStuckInItsHandshakeIsGivenUp) {
  Mesh mesh;
  const NodeKey client_key = NodeKey::Generate();
  const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(listener, 16), 0);
  socklen_t len = sizeof addr;
  ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len);
  const std::string address = "127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  std::unique_ptr<PeerClient> client = MemberClient(mesh, client_key);
  for (int i = 0; i < 2; ++i) {
    absl::StatusOr<PeerResponse> r =
        Call(*client, address, "server", std::chrono::milliseconds(300));
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded) << r.status();
  }
  // Two connections reached the listener's queue: the second call did not wait on the first
  // call's link.
  int accepted = 0;
  ::fcntl(listener, F_SETFL, O_NONBLOCK);
  for (int fd; (fd = ::accept(listener, nullptr, nullptr)) >= 0; ++accepted) ::close(fd);
  EXPECT_EQ(accepted, 2);
  client->Stop();
  ::close(listener);
}

TEST(TlsTransportTest, ACertificateOfAnotherMeshIsAnswered403OnEveryRequest) {
  Mesh mesh, other;
  const NodeKey client_key = NodeKey::Generate();
  WhoServer server(Settings(mesh.server, mesh.server_key));
  // The client trusts the server (it has the server's roots) but holds the other mesh's
  // certificate.
  MeshCredentials mine = other.Member("client", client_key);
  mine.roots.push_back(mesh.server.roots.front());
  std::unique_ptr<PeerClient> client =
      PeerClient::Create(nullptr, nullptr, SystemClock::Get(), Settings(mine, client_key));
  absl::StatusOr<PeerResponse> r = Call(*client, server.address(), "server");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 403);
  EXPECT_NE(Body(r).find("refused"), std::string::npos) << Body(r);
}

TEST(TlsTransportTest, PlainClientsAreStillServed) {
  Mesh mesh;
  WhoServer server(Settings(mesh.server, mesh.server_key));
  std::unique_ptr<PeerClient> client = PeerClient::Create();
  absl::StatusOr<PeerResponse> r = Call(*client, server.address(), "server");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(Body(r), "plain");  // the link was refused; the request went plain
}

TEST(TlsTransportTest, TheNextConnectionResumesTheSession) {
  Mesh mesh;
  const NodeKey client_key = NodeKey::Generate();
  const std::shared_ptr<TlsSettings> server_tls = Settings(mesh.server, mesh.server_key);
  WhoServer server(server_tls, /*links=*/false);  // plain requests, one connection each
  std::unique_ptr<PeerClient> client = MemberClient(mesh, client_key);
  for (int i = 0; i < 4; ++i) {
    absl::StatusOr<PeerResponse> r = Call(*client, server.address(), "server");
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(Body(r), "tls:client");  // a resumed session still names the client
  }
  // Five handshakes: the link asked for first (answered as a plain request), then four plain
  // requests; each after the first resumed the session the one before left.
  SSL_CTX* ctx = server_tls->server().get();
  EXPECT_EQ(SSL_CTX_sess_accept_good(ctx), 5);
  EXPECT_EQ(SSL_CTX_sess_hits(ctx), 4) << "the client did not resume its session";
}

TEST(TlsTransportTest, ATunnelsNextConnectionResumesTheSession) {
  Mesh mesh;
  const NodeKey client_key = NodeKey::Generate();
  // The workload: plain HTTP, one request per connection.
  HttpServerOptions w;
  w.port = 0;
  w.threads = 1;
  std::unique_ptr<HttpServer> workload =
      *HttpServer::Create(w, [](const HttpRequest&, HttpResponder respond) {
        HttpResponse out;
        out.body = "from the workload";
        out.headers.emplace_back("Connection", "close");
        respond(std::move(out));
      });
  workload->Start();
  // The node that runs it takes tunnels over mutual TLS.
  const std::shared_ptr<TlsSettings> server_tls = Settings(mesh.server, mesh.server_key);
  HttpServerOptions b;
  b.port = 0;
  b.threads = 1;
  b.tls = server_tls;
  const std::string workload_address = "127.0.0.1:" + std::to_string(workload->port());
  b.authorize_tunnel = [&](const HttpRequest& r) -> absl::StatusOr<std::string> {
    if (r.tls_peer() != "client") return absl::PermissionDeniedError("members only");
    return workload_address;
  };
  std::unique_ptr<HttpServer> serving = *HttpServer::Create(
      b, [](const HttpRequest&, HttpResponder respond) { respond(HttpResponse{}); });
  serving->Start();
  // The node a client reaches relays every connection through a tunnel to the serving node.
  HttpServerOptions a;
  a.port = 0;
  a.threads = 1;
  a.pass_through_all = true;
  a.tunnel_tls = Settings(mesh.Member("client", client_key), client_key);
  const std::string serving_address = "127.0.0.1:" + std::to_string(serving->port());
  a.pass_through = [&](std::string_view) -> absl::StatusOr<RelayPlan> {
    RelayPlan plan;
    plan.hops.push_back({serving_address, "server", "/v1/services/web/tunnel", ""});
    return plan;
  };
  std::unique_ptr<HttpServer> front = *HttpServer::Create(
      a, [](const HttpRequest&, HttpResponder respond) { respond(HttpResponse{}); });
  front->Start();
  for (int i = 0; i < 4; ++i) {
    const std::string got =
        test::HttpRequestOnce(front->port(), "GET", "/", "", {{"Host", "web"}}).body;
    EXPECT_NE(got.find("from the workload"), std::string::npos) << i << ": " << got;
  }
  // Four tunnels, four handshakes; each after the first resumed the session the one before
  // left (a full handshake signs and checks certificates on both ends: milliseconds of CPU).
  SSL_CTX* ctx = server_tls->server().get();
  EXPECT_EQ(SSL_CTX_sess_accept_good(ctx), 4);
  EXPECT_EQ(SSL_CTX_sess_hits(ctx), 3) << "the tunnel did not resume its session";
  front->Stop();
  serving->Stop();
  workload->Stop();
}

}  // namespace
}  // namespace hivemesh
