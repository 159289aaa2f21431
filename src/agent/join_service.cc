#include "agent/join_service.h"

#include <fcntl.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <simdjson.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/hex.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "codec/json_writer.h"
#include "identity/issuer_service.h"
#include "identity/openssl_util.h"
#include "identity/tls_context.h"
#include "transport/tls.h"

namespace hivemesh {
namespace {

using Clock = std::chrono::steady_clock;
using identity::Certificate;

using identity::OpenSslDeleter;
using identity::PkeyPtr;
using identity::ToX509;
using identity::X509Ptr;
using SslCtxPtr = std::unique_ptr<SSL_CTX, OpenSslDeleter<SSL_CTX, SSL_CTX_free>>;
using SslPtr = std::unique_ptr<SSL, OpenSslDeleter<SSL, SSL_free>>;

std::string SslError() { return identity::OpenSslError("the connection closed"); }

// Runs `step` (an SSL_* call) until it succeeds, waiting on `fd` as OpenSSL asks, until
// `deadline`. Returns the step's positive result, or an error.
template <typename Step>
absl::StatusOr<int> Drive(SSL* ssl, int fd, Clock::time_point deadline, const char* what,
                          Step step) {
  for (;;) {
    ERR_clear_error();
    const int r = step();
    if (r > 0) return r;
    const int err = SSL_get_error(ssl, r);
    short events = 0;
    if (err == SSL_ERROR_WANT_READ) {
      events = POLLIN;
    } else if (err == SSL_ERROR_WANT_WRITE) {
      events = POLLOUT;
    } else {
      return absl::UnavailableError(StrCat(what, ": ", SslError()));
    }
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return absl::DeadlineExceededError(StrCat(what, ": timed out"));
    pollfd p{fd, events, 0};
    if (poll(&p, 1, static_cast<int>(left)) < 0 && errno != EINTR) {
      return absl::UnavailableError(StrCat(what, ": ", std::strerror(errno)));
    }
  }
}

absl::Status WriteAll(SSL* ssl, int fd, Clock::time_point deadline, std::string_view data) {
  size_t done = 0;
  while (done < data.size()) {
    HM_ASSIGN_OR_RETURN(int n, Drive(ssl, fd, deadline, "write", [&] {
                          return SSL_write(ssl, data.data() + done,
                                           static_cast<int>(data.size() - done));
                        }));
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadExactly(SSL* ssl, int fd, Clock::time_point deadline, size_t size) {
  std::string out(size, '\0');
  size_t done = 0;
  while (done < size) {
    HM_ASSIGN_OR_RETURN(int n, Drive(ssl, fd, deadline, "read", [&] {
                          return SSL_read(ssl, out.data() + done, static_cast<int>(size - done));
                        }));
    done += static_cast<size_t>(n);
  }
  return out;
}

// [u32 big-endian length][body]
absl::Status WriteMessage(SSL* ssl, int fd, Clock::time_point deadline, std::string_view body) {
  const uint32_t n = static_cast<uint32_t>(body.size());
  std::string out = {static_cast<char>(n >> 24), static_cast<char>(n >> 16),
                     static_cast<char>(n >> 8), static_cast<char>(n)};
  out.append(body);
  return WriteAll(ssl, fd, deadline, out);
}

absl::StatusOr<std::string> ReadMessage(SSL* ssl, int fd, Clock::time_point deadline,
                                        size_t limit) {
  HM_ASSIGN_OR_RETURN(std::string head, ReadExactly(ssl, fd, deadline, 4));
  const uint32_t n = (static_cast<uint32_t>(static_cast<unsigned char>(head[0])) << 24) |
                     (static_cast<uint32_t>(static_cast<unsigned char>(head[1])) << 16) |
                     (static_cast<uint32_t>(static_cast<unsigned char>(head[2])) << 8) |
                     static_cast<uint32_t>(static_cast<unsigned char>(head[3]));
  if (n > limit) {
    return absl::InvalidArgumentError(StrCat("a message of ", n, " bytes (limit ", limit, ")"));
  }
  return ReadExactly(ssl, fd, deadline, n);
}

SslCtxPtr NewContext(bool server) {
  SslCtxPtr ctx(SSL_CTX_new(server ? TLS_server_method() : TLS_client_method()));
  if (ctx != nullptr) SSL_CTX_set_min_proto_version(ctx.get(), TLS1_3_VERSION);
  return ctx;
}

std::string_view CodeName(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kPermissionDenied:
      return "permission_denied";
    case absl::StatusCode::kAlreadyExists:
      return "already_exists";
    case absl::StatusCode::kInvalidArgument:
      return "invalid_argument";
    case absl::StatusCode::kFailedPrecondition:
      return "failed_precondition";
    default:
      return "unavailable";
  }
}

absl::Status FromCode(std::string_view code, std::string message) {
  if (code == "permission_denied") return absl::PermissionDeniedError(message);
  if (code == "already_exists") return absl::AlreadyExistsError(message);
  if (code == "invalid_argument") return absl::InvalidArgumentError(message);
  if (code == "failed_precondition") return absl::FailedPreconditionError(message);
  return absl::UnavailableError(message);
}

std::string Pem(const std::vector<Certificate>& certs) {
  std::string out;
  for (const Certificate& c : certs) out += c.ToPem();
  return out;
}

// The join request's fields.
struct Request {
  bool renew = false;  // {"renew": true}: nothing else is read
  std::string token;
  std::string name;
  std::map<std::string, std::string> labels;
  std::string public_key;  // raw
  std::string issuer_key;  // raw; empty if none was sent
};

absl::StatusOr<Request> ParseRequest(std::string_view body) {
  simdjson::dom::parser parser;
  simdjson::dom::object o;
  if (parser.parse(body.data(), body.size()).get(o) != simdjson::SUCCESS) {
    return absl::InvalidArgumentError("the join request is not a JSON object");
  }
  Request r;
  if (o["renew"].get(r.renew) == simdjson::SUCCESS && r.renew) return r;
  std::string_view token, name, key;
  simdjson::dom::object labels;
  if (o["token"].get(token) || o["name"].get(name) || o["public_key"].get(key) ||
      o["labels"].get(labels)) {
    return absl::InvalidArgumentError("the join request lacks token, name, public_key or labels");
  }
  for (auto [k, v] : labels) {
    std::string_view value;
    if (v.get(value)) return absl::InvalidArgumentError("a label's value is not a string");
    r.labels.emplace(std::string(k), std::string(value));
  }
  std::optional<std::string> raw = HexDecode(key);
  if (!raw) return absl::InvalidArgumentError("public_key is not hex");
  r.token = std::string(token);
  r.name = std::string(name);
  r.public_key = std::move(*raw);
  // The key an issuer token certifies (the joining node keeps its private half).
  if (std::string_view issuer_key; o["issuer_key"].get(issuer_key) == simdjson::SUCCESS) {
    std::optional<std::string> issuer_raw = HexDecode(issuer_key);
    if (!issuer_raw) return absl::InvalidArgumentError("issuer_key is not hex");
    r.issuer_key = std::move(*issuer_raw);
  }
  return r;
}

}  // namespace

struct JoinService::Impl {
  std::shared_ptr<SSL_CTX> ctx;  // guarded by JoinService::mu_ (replaced on renewal)
  std::shared_ptr<identity::IssuerService> issuer;
  identity::Issuer::KeyOf key_of;
  // The mesh's gossip keys, handed to every node it issues a certificate to: guarded by
  // JoinService::mu_ (replaced at a key rotation).
  struct GossipKeys {
    std::vector<std::string> keys;
    uint64_t version = 0;
    std::string signature;
    std::string issuers;  // PEM: every issuer certificate of the mesh this node knows
  };
  std::shared_ptr<const GossipKeys> gossip;

  static std::shared_ptr<const GossipKeys> KeysOf(const identity::MeshCredentials& mesh) {
    return std::make_shared<const GossipKeys>(GossipKeys{mesh.gossip_keys, mesh.gossip_keys_version,
                                                         mesh.gossip_keys_signature,
                                                         Pem(identity::MeshIssuers(mesh))});
  }

  // The answer to one request body, from a client that presented `presented` (its certificate
  // first; empty: none).
  std::string Answer(std::string_view body, const std::vector<Certificate>& presented,
                     const GossipKeys& gossip_keys, bool* issued) const {
    std::string out;
    JsonWriter w(out);
    absl::StatusOr<identity::Issued> result = Handle(body, presented);
    w.BeginObject();
    if (result.ok()) {
      *issued = true;
      std::vector<Certificate> chain = {result->cert};
      chain.insert(chain.end(), result->chain.begin(), result->chain.end());
      w.Key("certificate").String(Pem(chain));
      w.Key("roots").String(Pem(result->roots));
      if (result->issuer_cert) w.Key("issuer").String(result->issuer_cert->ToPem());
      w.Key("issuers").String(gossip_keys.issuers);
      // Only to a node that has just proved a token or its certificate, over TLS.
      w.Key("gossip_keys").BeginArray();
      for (const std::string& k : gossip_keys.keys) w.String(k);
      w.EndArray();
      w.Key("gossip_keys_version").Uint(gossip_keys.version);
      w.Key("gossip_keys_signature").String(HexEncode(gossip_keys.signature));
    } else {
      w.Key("error").String(MessageOf(result.status()));
      w.Key("code").String(CodeName(result.status().code()));
    }
    w.EndObject();
    return out;
  }

  absl::StatusOr<identity::Issued> Handle(std::string_view body,
                                          const std::vector<Certificate>& presented) const {
    if (issuer == nullptr) {
      return absl::FailedPreconditionError(
          "this node holds no issuer rights: ask the node that created the mesh");
    }
    HM_ASSIGN_OR_RETURN(Request r, ParseRequest(body));
    if (r.renew) {
      // The handshake proved the key of the certificate presented; the issuer checks the rest
      // (chain, revocation, how long ago it expired).
      if (presented.empty()) {
        return absl::PermissionDeniedError("renewal refused: no certificate was presented");
      }
      const std::vector<Certificate> chain(presented.begin() + 1, presented.end());
      return issuer->Renew(presented.front(), chain, presented.front().public_key(),
                           std::chrono::system_clock::now());
    }
    HM_ASSIGN_OR_RETURN(identity::JoinToken token, identity::JoinToken::Parse(r.token));
    if (!issuer->TrustsRoot(token.ca_digest)) {
      return absl::PermissionDeniedError("join refused: the token is for another mesh");
    }
    identity::JoinRequest request;
    request.token_id = token.id;
    request.token_secret = token.secret;
    request.name = r.name;
    request.labels = r.labels;
    request.public_key = r.public_key;
    request.issuer_key = r.issuer_key;
    return issuer->Join(request, std::chrono::system_clock::now(), key_of);
  }
};

JoinService::JoinService(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

absl::StatusOr<std::unique_ptr<JoinService>> JoinService::Create(
    const identity::MeshCredentials& mesh, const identity::NodeKey& node_key,
    std::shared_ptr<identity::IssuerService> issuer, identity::Issuer::KeyOf key_of) {
  HM_ASSIGN_OR_RETURN(std::shared_ptr<SSL_CTX> ctx,
                      identity::MakeTlsContext(mesh, node_key, /*server=*/true));
  auto impl = std::make_unique<Impl>();
  impl->ctx = std::move(ctx);
  impl->issuer = std::move(issuer);
  impl->key_of = std::move(key_of);
  impl->gossip = Impl::KeysOf(mesh);
  return std::unique_ptr<JoinService>(new JoinService(std::move(impl)));
}

absl::Status JoinService::UpdateCredentials(const identity::MeshCredentials& mesh,
                                            const identity::NodeKey& node_key) {
  HM_ASSIGN_OR_RETURN(std::shared_ptr<SSL_CTX> ctx,
                      identity::MakeTlsContext(mesh, node_key, /*server=*/true));
  absl::MutexLock lock(&mu_);
  impl_->ctx = std::move(ctx);
  impl_->gossip = Impl::KeysOf(mesh);
  return absl::OkStatus();
}

JoinService::~JoinService() {
  std::list<std::unique_ptr<Worker>> workers;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    for (const auto& w : workers_) {
      if (w->fd >= 0) shutdown(w->fd, SHUT_RDWR);  // wakes its poll at once
    }
    workers.swap(workers_);
  }
  for (const auto& w : workers) w->thread.join();
}

JoinService::Stats JoinService::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

void JoinService::Serve(int fd) {
  absl::MutexLock lock(&mu_);
  // Threads that are done are joined here, so the list stays as long as the joins at once.
  for (auto it = workers_.begin(); it != workers_.end();) {
    if ((*it)->done) {
      (*it)->thread.join();
      it = workers_.erase(it);
    } else {
      ++it;
    }
  }
  if (stopping_ || static_cast<int>(workers_.size()) >= kMaxJoinsAtOnce) {
    ++stats_.refused;
    close(fd);
    return;
  }
  auto worker = std::make_unique<Worker>();
  worker->fd = fd;
  Worker* w = worker.get();
  workers_.push_back(std::move(worker));
  w->thread = std::thread([this, w] { Run(w); });
}

void JoinService::Run(Worker* worker) {
  const int fd = worker->fd;
  const Clock::time_point deadline = Clock::now() + kJoinDeadline;
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  std::shared_ptr<SSL_CTX> ctx;
  std::shared_ptr<const Impl::GossipKeys> gossip;
  {
    absl::MutexLock lock(&mu_);
    ctx = impl_->ctx;
    gossip = impl_->gossip;
  }
  SslPtr ssl(SSL_new(ctx.get()));
  bool answered = false, issued = false;
  if (ssl != nullptr && SSL_set_fd(ssl.get(), fd) == 1) {
    absl::StatusOr<int> handshake =
        Drive(ssl.get(), fd, deadline, "handshake", [&] { return SSL_accept(ssl.get()); });
    absl::StatusOr<std::string> body =
        handshake.ok() ? ReadMessage(ssl.get(), fd, deadline, kMaxJoinRequestBytes)
                       : absl::StatusOr<std::string>(handshake.status());
    if (body.ok()) {
      const std::vector<Certificate> presented =
          identity::CertificatesFromDer(PeerChainOf(ssl.get()));
      answered =
          WriteMessage(ssl.get(), fd, deadline, impl_->Answer(*body, presented, *gossip, &issued))
              .ok();
      SSL_shutdown(ssl.get());
    }
  }
  ssl.reset();
  {
    absl::MutexLock lock(&mu_);
    close(fd);
    worker->fd = -1;  // the number may be another descriptor's from now on
    stats_.served += answered ? 1 : 0;
    stats_.issued += issued ? 1 : 0;
    stats_.refused += answered ? 0 : 1;
  }
  worker->done = true;
}

namespace {

// One TLS connection to a seed's gossip port, as a client.
struct SeedConnection {
  int fd = -1;
  std::shared_ptr<SSL_CTX> ctx;
  SslPtr ssl;
  std::string where;               // "seed host:port", for messages
  std::vector<Certificate> chain;  // what the seed presented, its certificate first
  ~SeedConnection() {
    ssl.reset();
    if (fd >= 0) close(fd);
  }
};

// Connects to `seed` and completes the handshake by `deadline`, presenting `own`'s certificate
// when given (a renewal) and trusting nothing yet: the caller checks `chain`.
absl::Status Connect(const std::string& seed, const identity::MeshCredentials* own,
                     const identity::NodeKey& node_key, Clock::time_point deadline,
                     SeedConnection& c) {
  c.where = StrCat("seed ", seed);
  const size_t colon = seed.rfind(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError(StrCat("seed '", seed, "' is not host:port"));
  }
  std::string host = seed.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), seed.substr(colon + 1).c_str(), &hints, &found) != 0 ||
      found == nullptr) {
    return absl::UnavailableError(StrCat(c.where, ": cannot resolve it"));
  }
  c.fd = socket(found->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  const int connected = c.fd < 0 ? -1 : connect(c.fd, found->ai_addr, found->ai_addrlen);
  freeaddrinfo(found);
  if (c.fd < 0 || (connected != 0 && errno != EINPROGRESS)) {
    return absl::UnavailableError(StrCat(c.where, ": ", std::strerror(errno)));
  }
  if (own != nullptr) {
    HM_ASSIGN_OR_RETURN(c.ctx, identity::MakeTlsContext(*own, node_key, /*server=*/false));
  } else {
    SslCtxPtr ctx = NewContext(/*server=*/false);
    if (ctx == nullptr) return absl::InternalError(StrCat("TLS: ", SslError()));
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
    c.ctx = std::shared_ptr<SSL_CTX>(ctx.release(), SSL_CTX_free);
  }
  c.ssl.reset(SSL_new(c.ctx.get()));
  if (c.ssl == nullptr || SSL_set_fd(c.ssl.get(), c.fd) != 1) {
    return absl::InternalError(StrCat("TLS: ", SslError()));
  }
  HM_RETURN_IF_ERROR(Drive(c.ssl.get(), c.fd, deadline, c.where.c_str(), [&] {
                       return SSL_connect(c.ssl.get());
                     }).status());
  // On the client's side the peer's chain starts with its certificate.
  c.chain = identity::CertificatesFromDer(PeerChainOf(c.ssl.get()));
  if (c.chain.empty()) {
    return absl::PermissionDeniedError(StrCat(c.where, " presented no certificate"));
  }
  return absl::OkStatus();
}

// Sends `body` and reads the issuer's answer: the node's new credentials, checked to chain to
// `root` and to bind `node_key` and `name`.
absl::StatusOr<identity::MeshCredentials> Exchange(SeedConnection& c, Clock::time_point deadline,
                                                   std::string_view body, const Certificate& root,
                                                   const identity::NodeKey& node_key,
                                                   const std::string& name,
                                                   const identity::NodeKey* issuer_key = nullptr) {
  HM_RETURN_IF_ERROR(WriteMessage(c.ssl.get(), c.fd, deadline, body));
  HM_ASSIGN_OR_RETURN(std::string answer, ReadMessage(c.ssl.get(), c.fd, deadline, 1 << 20));
  simdjson::dom::parser parser;
  simdjson::dom::object o;
  if (parser.parse(answer.data(), answer.size()).get(o) != simdjson::SUCCESS) {
    return absl::UnavailableError(StrCat(c.where, " answered something that is not JSON"));
  }
  std::string_view error, code, cert_pem, roots_pem;
  if (o["error"].get(error) == simdjson::SUCCESS) {
    if (o["code"].get(code) != simdjson::SUCCESS) code = "";
    return FromCode(code, StrCat(c.where, ": ", error));
  }
  if (o["certificate"].get(cert_pem) || o["roots"].get(roots_pem)) {
    return absl::UnavailableError(StrCat(c.where, " answered without a certificate"));
  }
  HM_ASSIGN_OR_RETURN(std::vector<Certificate> mine, Certificate::AllFromPem(cert_pem));
  HM_ASSIGN_OR_RETURN(std::vector<Certificate> roots, Certificate::AllFromPem(roots_pem));
  bool has_root = false;
  for (const Certificate& r : roots) has_root = has_root || r.Digest() == root.Digest();
  // Through the issuer's certificate, and the bundle's cross certificate when the root this
  // node trusts is the old one of a rotation (identity/mesh_files.h).
  const std::vector<Certificate> my_chain(mine.begin() + 1, mine.end());
  std::vector<Certificate> through = my_chain;
  through.insert(through.end(), roots.begin(), roots.end());
  absl::StatusOr<identity::NodeIdentity> id = identity::VerifyNodeCertificate(
      mine.front(), through, {root}, std::chrono::system_clock::now());
  if (!has_root || !id.ok() || id->public_key != node_key.public_key() || id->name != name) {
    return absl::PermissionDeniedError(
        StrCat(c.where, " issued a certificate that is not this node's under its CA",
               id.ok() ? "" : StrCat(": ", MessageOf(id.status()))));
  }
  identity::MeshCredentials mesh;
  mesh.roots = std::move(roots);
  mesh.node_cert = mine.front();
  mesh.node_chain = my_chain;
  simdjson::dom::array keys;
  if (o["gossip_keys"].get(keys) == simdjson::SUCCESS) {
    for (simdjson::dom::element k : keys) {
      std::string_view key;
      if (k.get(key) != simdjson::SUCCESS || key.empty() || key.size() > 64) {
        return absl::UnavailableError(StrCat(c.where, " answered a gossip key that is not one"));
      }
      mesh.gossip_keys.emplace_back(key);
    }
  }
  // Their version and the issuer's signature (absent from an issuer of before key rotation).
  std::string_view signature;
  uint64_t version = 0;
  if (o["gossip_keys_version"].get(version) == simdjson::SUCCESS &&
      o["gossip_keys_signature"].get(signature) == simdjson::SUCCESS) {
    std::optional<std::string> raw = HexDecode(signature);
    if (!raw)
      return absl::UnavailableError(StrCat(c.where, " answered a signature that is not hex"));
    mesh.gossip_keys_version = version;
    mesh.gossip_keys_signature = std::move(*raw);
  }
  const identity::WallTime now = std::chrono::system_clock::now();
  // The issuer certificates the seed knows: kept if the roots signed them.
  if (std::string_view issuers_pem;
      o["issuers"].get(issuers_pem) == simdjson::SUCCESS && !issuers_pem.empty()) {
    absl::StatusOr<std::vector<Certificate>> issuers = Certificate::AllFromPem(issuers_pem);
    if (issuers.ok()) identity::TakeIssuers(mesh, *issuers, now);
  }
  // Issuer rights (a join with an issuer token): the root's certificate of this node's new key.
  if (std::string_view issuer_pem;
      issuer_key != nullptr && o["issuer"].get(issuer_pem) == simdjson::SUCCESS) {
    HM_ASSIGN_OR_RETURN(Certificate issuer, Certificate::FromPem(issuer_pem));
    if (absl::Status ok = identity::VerifyIssuerCertificate(issuer, mesh.roots, now); !ok.ok()) {
      return absl::PermissionDeniedError(StrCat(c.where, ": ", MessageOf(ok)));
    }
    if (issuer.public_key() != issuer_key->public_key() || identity::IssuerName(issuer) != name) {
      return absl::PermissionDeniedError(
          StrCat(c.where, " answered an issuer certificate that is not for this node's key"));
    }
    std::erase_if(mesh.issuers,
                  [&](const Certificate& i) { return i.Digest() == issuer.Digest(); });
    mesh.issuer_cert = issuer;
    mesh.issuer_key = *issuer_key;
    mesh.granted_issuer = true;
  }
  return mesh;
}

}  // namespace

absl::StatusOr<identity::MeshCredentials> JoinMesh(const std::string& seed,
                                                   const std::string& token_text,
                                                   const identity::NodeKey& node_key,
                                                   const std::string& name,
                                                   const std::map<std::string, std::string>& labels,
                                                   std::chrono::milliseconds timeout) {
  HM_ASSIGN_OR_RETURN(identity::JoinToken token, identity::JoinToken::Parse(token_text));
  const Clock::time_point deadline = Clock::now() + timeout;
  SeedConnection c;
  HM_RETURN_IF_ERROR(Connect(seed, nullptr, node_key, deadline, c));
  std::optional<Certificate> root;
  for (const Certificate& cert : c.chain) {
    if (cert.Digest() == token.ca_digest && cert.is_ca()) root = cert;
  }
  if (!root) {
    return absl::PermissionDeniedError(
        StrCat(c.where, " does not belong to the mesh the token names (no CA with digest ",
               token.ca_digest.substr(0, 16), "... in its chain); nothing was sent"));
  }
  const std::vector<Certificate> intermediates(c.chain.begin() + 1, c.chain.end());
  absl::Status seed_ok = identity::VerifyNodeCertificate(c.chain.front(), intermediates, {*root},
                                                         std::chrono::system_clock::now())
                             .status();
  if (!seed_ok.ok()) {
    return absl::PermissionDeniedError(
        StrCat(c.where, "'s certificate does not chain to the token's CA: ", MessageOf(seed_ok),
               "; nothing was sent"));
  }
  std::string body;
  JsonWriter w(body);
  w.BeginObject();
  w.Key("token").String(token_text);
  w.Key("name").String(name);
  w.Key("labels").BeginObject();
  for (const auto& [k, v] : labels) w.Key(k).String(v);
  w.EndObject();
  w.Key("public_key").String(HexEncode(node_key.public_key()));
  // Sent with every join: an issuer token certifies it, any other leaves it unused.
  const identity::NodeKey issuer_key = identity::NodeKey::Generate();
  w.Key("issuer_key").String(HexEncode(issuer_key.public_key()));
  w.EndObject();
  return Exchange(c, deadline, body, *root, node_key, name, &issuer_key);
}

absl::StatusOr<identity::MeshCredentials> RenewMesh(
    const std::string& seed, const identity::MeshCredentials& mesh,
    const identity::NodeKey& node_key, std::chrono::milliseconds timeout,
    const std::function<bool(std::string_view key)>& revoked) {
  if (!mesh.node_cert || mesh.roots.empty()) {
    return absl::FailedPreconditionError("this node has no certificate to renew");
  }
  HM_ASSIGN_OR_RETURN(identity::NodeIdentity self, mesh.node_cert->Identity());
  const Clock::time_point deadline = Clock::now() + timeout;
  SeedConnection c;
  HM_RETURN_IF_ERROR(Connect(seed, &mesh, node_key, deadline, c));
  // A revoked seed, or one a revoked issuer certified, renews nothing here.
  for (const Certificate& cert : c.chain) {
    if (revoked && revoked(cert.public_key())) {
      return absl::PermissionDeniedError(
          StrCat(c.where, " is revoked (", cert.CommonName(), "); not renewed there"));
    }
  }
  // The seed must be of this node's mesh: its certificate chains to one of the roots held.
  const std::vector<Certificate> intermediates(c.chain.begin() + 1, c.chain.end());
  for (const Certificate& root : mesh.roots) {
    if (identity::VerifyNodeCertificate(c.chain.front(), intermediates, {root},
                                        std::chrono::system_clock::now())
            .ok()) {
      return Exchange(c, deadline, R"({"renew":true})", root, node_key, self.name);
    }
  }
  return absl::PermissionDeniedError(
      StrCat(c.where, "'s certificate does not chain to this node's CA; not renewed there"));
}

}  // namespace hivemesh
