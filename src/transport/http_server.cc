#include "transport/http_server.h"

#include <cstdio>

#include <algorithm>
#include <array>
#include <boost/container/small_vector.hpp>
#include <cstring>
#include <optional>
#include <vector>

#include "base/strings.h"
#include "transport/http_server_internal.h"
#include "transport/io_deadline.h"
#include "transport/io_write.h"
#include "transport/peer_client_internal.h"

namespace hivemesh {
namespace http_internal {

// How long a draining server waits for the next request of a connection that was open (or
// queued on the listener) when it stopped accepting, if nothing of it has arrived.
constexpr std::chrono::milliseconds kDrainGrace{1000};

class Connection final : public HttpRequest,
                         public ForwardClient,
                         public std::enable_shared_from_this<Connection> {
 public:
  Connection(tcp::socket socket, std::string remote, ConnectionLimits::Slot slot,
             std::shared_ptr<Core> core, int loop);
  ~Connection() override;
  // Reads the first request, after a TLS handshake if the client starts one (and the server
  // has TLS settings).
  void Start();

  // HttpRequest
  std::string_view method() const override { return request_head_.method(); }
  std::string_view target() const override { return request_head_.target(); }
  std::string_view header(std::string_view name) const override {
    const RequestHead::Field* f = request_head_.Find(name);
    return f == nullptr ? std::string_view() : request_head_.Value(*f);
  }
  bool has_header(std::string_view name) const override {
    return request_head_.Find(name) != nullptr;
  }
  std::vector<std::pair<std::string_view, std::string_view>> headers() const override {
    return request_head_.All();
  }
  std::shared_ptr<const std::string> body() const override { return body_; }
  SteadyTime received() const override { return received_; }
  std::string_view remote_address() const override { return remote_; }
  std::string_view tls_peer() const override { return tls_peer_; }

  // ForwardClient
  IoStream& stream() override { return stream_; }
  beast::flat_buffer& buffer() override { return buffer_; }
  RequestReader& reader() override { return reader_; }
  bool keep_alive() const override { return keep_alive_; }
  bool draining() const override { return core_->draining.load(std::memory_order_relaxed); }
  bool expects_continue() const override {
    const RequestHead::Field* expect = request_head_.Find("Expect");
    return expect != nullptr && beast::iequals(request_head_.Value(*expect), "100-continue");
  }
  void ForwardEnded(bool reuse, bool fallback) override;
  void AttachForward(std::weak_ptr<ForwardTimeouts> forward) override {
    forward_ = std::move(forward);
  }
  void SetForwardDeadline(std::chrono::nanoseconds timeout) override {
    ExpiresAfter(std::chrono::duration_cast<std::chrono::milliseconds>(timeout));
  }

  // A request to switch to a tunnel (transport/relay.h) at a server that takes them (not while
  // it drains).
  bool WantsTunnel() const {
    const RequestHead::Field* upgrade = request_head_.Find("Upgrade");
    return core_->options.authorize_tunnel && upgrade != nullptr &&
           beast::iequals(request_head_.Value(*upgrade), kTunnelProtocol) && method() == "GET" &&
           body_->empty() && !core_->draining.load(std::memory_order_relaxed);
  }

  // A request to switch to a mesh link that this server takes (not while it drains).
  bool WantsLink() const {
    const RequestHead::Field* upgrade = request_head_.Find("Upgrade");
    return core_->options.accept_links && upgrade != nullptr &&
           beast::iequals(request_head_.Value(*upgrade), kLinkProtocol) && method() == "GET" &&
           body_->empty() && !core_->draining.load(std::memory_order_relaxed);
  }

  void Close() {
    stream_.Close();
    deadline_.Cancel();
    if (response_.stream) response_.stream->Close();
    if (owed_ && busy_ &&
        (phase_ == Phase::kTls || phase_ == Phase::kHead || phase_ == Phase::kBody)) {
      // Its request never came whole: nothing is owed any more.
      busy_ = false;
      core_->busy.fetch_sub(1);
    }
  }

  // The server drains (on the connection's loop): the request its client may be writing now
  // is waited for. The connection counts as busy (the node stops once none is) until its
  // answer is written, or it closes: a client that sends nothing gets kDrainGrace.
  void Owe() {
    if (busy_ || phase_ == Phase::kHandled || phase_ == Phase::kWriting) return;
    owed_ = true;
    busy_ = true;
    core_->busy.fetch_add(1);
    // Nothing of it has arrived (not even a TLS handshake's first bytes): it gets the grace.
    const bool nothing_yet =
        (phase_ == Phase::kHead && !reader_.started() && buffer_.size() == 0) ||
        (phase_ == Phase::kTls && !stream_.tls());
    if (nothing_yet) ExpiresAfter(std::min(core_->options.header_timeout, kDrainGrace));
  }

 private:
  // Reads the client's first bytes (more of them while they cannot tell what they are).
  void ReadFirst();
  // The client's first bytes are in: not an HTTP/1.x request at a port that relays the others
  // starts a relay (transport/relay.h); a TLS handshake record (0x16) starts TLS.
  void OnFirstRead(beast::error_code ec, size_t n);
  // Hands the connection (and the bytes read) to a relay, where pass_through says.
  void PassThrough();
  void OnHandshake(beast::error_code ec);
  // Reads the next request: what is buffered first, then from the socket.
  void ReadRequest();
  // Feeds the buffered bytes to the reader and acts on what it says.
  void Parse();
  void Read();
  void OnRead(beast::error_code ec, size_t n);
  // The head is in: false if the body waits for `100 Continue` to be written first, or the
  // request is forwarded (HttpServerOptions::forward).
  bool OnHead();
  // The rest of OnHead for a request handled here: `100 Continue` if it expects one.
  bool ContinueHead();
  void Refuse(const RequestRefusal& refusal);
  void Dispatch();
  void SwitchToLink(std::string member);  // `member`: what authorize_link said
  // A tunnel to `address` (what authorize_tunnel said): connects, then answers 101 and relays.
  void SwitchToTunnel(const std::string& address);
  void SendError(int status, std::string_view message, bool close, bool retry_after = false);
  void Send(HttpResponse response);
  void OnWritten(beast::error_code ec);
  // A streamed answer (AnswerStream) once its head is written: its pieces as they come.
  void StartStream();
  void PumpStream();
  // The current read or write fails (the socket closes) unless done within `timeout`.
  void ExpiresAfter(std::chrono::milliseconds timeout) {
    deadline_.ExpiresAfter(
        timeout, [this] { return shared_from_this(); }, [this] { OnTimeout(); });
  }
  void OnTimeout();
  // The connection no longer counts as busy (if it did).
  void Unbusy() {
    if (!busy_) return;
    busy_ = false;
    core_->busy.fetch_sub(1);
  }

  IoStream stream_;
  std::weak_ptr<ForwardTimeouts> forward_;  // the exchange forwarding its request, if any
  const std::string remote_;                // the peer's IP address
  // Over TLS: who the client's certificate says it is (TlsSettings' check), or why the check
  // refused it (every request is then answered 403 with that); both empty for a client that
  // presented none, and on plain connections.
  std::string tls_peer_;
  std::string tls_refusal_;
  IoDeadline deadline_;
  const std::shared_ptr<Core> core_;
  ConnectionLimits::Slot slot_;  // in core_'s limits: declared after core_, released before it
  const int loop_;
  const asio::io_context::executor_type executor_;  // the loop's
  beast::flat_buffer buffer_;
  RequestHead request_head_;  // the current request's; reused
  RequestReader reader_;      // fills request_head_ and the body
  std::shared_ptr<const std::string> body_;
  SteadyTime received_;
  // Where the current request is, for its deadlines.
  enum class Phase { kTls, kHead, kBody, kHandled, kWriting, kStreaming } phase_ = Phase::kHead;
  bool stream_writing_ = false;  // a streamed answer's write is under way
  std::string stream_out_;       // what it writes
  bool body_timed_ = false;      // the body's deadline is set
  bool keep_alive_ = true;
  bool close_after_ = false;
  bool busy_ = false;
  bool owed_ = false;  // counted busy by Owe() before its request came
  std::string head_;
  HttpResponse response_;
};

namespace {

constexpr size_t kReadSize = 64 * 1024;

// Answers a connection the limits refuse with a short 503 (if the socket takes it at once) and
// closes it.
void RefuseConnection(tcp::socket& s, std::string_view message) {
  const std::string body = ErrorJson(message);
  const std::string answer = StrCat(
      "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
      "Content-Length: ",
      body.size(), "\r\nRetry-After: 1\r\nConnection: close\r\n\r\n", body);
  beast::error_code ignored;
  s.non_blocking(true, ignored);
  s.write_some(asio::buffer(answer), ignored);
  s.shutdown(tcp::socket::shutdown_both, ignored);
  s.close(ignored);
}

void Accept(const std::shared_ptr<Core>& core);

// Takes the accepted socket as a connection on loop `loop`, or refuses it over the limits.
void Admit(const std::shared_ptr<Core>& core, int loop, tcp::socket s) {
  beast::error_code ec;
  const tcp::endpoint peer = s.remote_endpoint(ec);
  if (ec) return;  // gone already; the socket closes with `s`
  std::string remote = peer.address().to_string();
  Rejection refused = Rejection::kConnectionLimit;
  std::optional<ConnectionLimits::Slot> slot =
      core->limits.Admit(SourceKeyOf(peer.address()), &refused);
  if (!slot) {
    const std::string message =
        refused == Rejection::kConnectionLimit
            ? StrCat("the node has its limit of ", core->limits.max_total(),
                     " connections open (max_connections); retry later")
            : StrCat("this address has its limit of ", core->limits.max_per_source(),
                     " connections open (max_connections_per_source); reuse or close some");
    core->rejections->Note(refused, remote, message);
    RefuseConnection(s, message);
    return;
  }
  s.set_option(tcp::no_delay(true), ec);
  auto conn =
      std::make_shared<Connection>(std::move(s), std::move(remote), *std::move(slot), core, loop);
  // The connection's handlers all run on its own loop, starting now.
  asio::post(*core->loops[static_cast<size_t>(loop)].ioc,
             [conn = std::move(conn)] { conn->Start(); });
}

// After a failed accept(): tries again once the back-off has passed (10 ms, doubling to 1 s),
// rather than at once. A failure that lasts (out of descriptors, say) would otherwise make the
// loop spin on the listening socket, which stays readable.
void AcceptLater(const std::shared_ptr<Core>& core, const beast::error_code& failure) {
  using std::chrono::milliseconds;
  core->accept_backoff = std::clamp(core->accept_backoff * 2, milliseconds(10), milliseconds(1000));
  // strerror, not failure.message(): accept() fails with an errno, and a virtual call that
  // UndefinedBehaviorSanitizer has not met yet needs a pipe to check, which it cannot open with
  // no descriptor left (a test build would report a false type error).
  core->rejections->Note(Rejection::kAcceptFailed, "",
                         StrCat(std::strerror(failure.value()), "; accepting again in ",
                                core->accept_backoff.count(), " ms"));
  if (core->accept_pause == nullptr) return;  // stopped accepting
  core->accept_pause->expires_after(core->accept_backoff);
  core->accept_pause->async_wait([core](beast::error_code ec) {
    if (!ec && core->acceptor.is_open()) Accept(core);
  });
}

void Accept(const std::shared_ptr<Core>& core) {
  const unsigned n = static_cast<unsigned>(core->loops.size());
  const int loop = static_cast<int>(core->next_loop.fetch_add(1, std::memory_order_relaxed) % n);
  core->acceptor.async_accept(
      core->loops[static_cast<size_t>(loop)].ioc->get_executor(),
      [core, loop](beast::error_code ec, tcp::socket s) {
        // A connection accepted just before the listener closed is still served.
        if (!ec) {
          core->accept_backoff = std::chrono::milliseconds(0);
          if (!core->stopped.load()) Admit(core, loop, std::move(s));
        }
        if (ec == asio::error::operation_aborted || !core->acceptor.is_open()) return;
        // A client that gave up before its connection was accepted leaves nothing short.
        if (ec && ec != asio::error::connection_aborted) return AcceptLater(core, ec);
        Accept(core);
      });
}

// Accepts, without waiting, every connection the kernel has queued on the listener.
void AcceptBacklog(const std::shared_ptr<Core>& core) {
  beast::error_code ec;
  core->acceptor.non_blocking(true, ec);
  if (ec) return;
  const unsigned n = static_cast<unsigned>(core->loops.size());
  for (;;) {
    const int loop = static_cast<int>(core->next_loop.fetch_add(1, std::memory_order_relaxed) % n);
    tcp::socket s = core->acceptor.accept(*core->loops[static_cast<size_t>(loop)].ioc, ec);
    if (ec == asio::error::connection_aborted) continue;
    if (ec) return;  // would block: the queue is empty (or accept() fails: nothing to take)
    Admit(core, loop, std::move(s));
  }
}

}  // namespace

class ServerImpl final : public HttpServer {
 public:
  ServerImpl(const HttpServerOptions& options, HttpHandler handler, std::shared_ptr<IoThreads> io,
             bool owns_io)
      : io_(std::move(io)),
        owns_io_(owns_io),
        core_(std::make_shared<Core>(options, std::move(handler), *io_)) {}

  ~ServerImpl() override { Stop(); }

  absl::Status Bind() {
    const HttpServerOptions& options = core_->options;
    tcp::acceptor& acceptor = core_->acceptor;
    beast::error_code ec;
    const asio::ip::address addr = asio::ip::make_address(options.host, ec);
    if (ec) return absl::InvalidArgumentError("invalid listen host '" + options.host + "'");
    const tcp::endpoint ep(addr, options.port);
    acceptor.open(ep.protocol(), ec);
    if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor.bind(ep, ec);
    if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      return absl::UnavailableError(
          StrCat("cannot listen on ", options.host, ":", options.port, ": ", ec.message()));
    }
    port_ = acceptor.local_endpoint().port();
    return absl::OkStatus();
  }

  uint16_t port() const override { return port_; }

  void Start() override {
    asio::post(*core_->loops[0].ioc, [core = core_] { Accept(core); });
  }

  void StopAccepting() override {
    core_->draining.store(true);
    io_->RunOn(0, [this] {
      // Connections the kernel completed but the node has not accepted yet would be reset
      // when the listener closes, after their clients may have written a request: take
      // them first, to be served like any open connection.
      if (!core_->stopped.load()) AcceptBacklog(core_);
      beast::error_code ec;
      core_->acceptor.close(ec);
      core_->accept_pause.reset();
    });
    // Links end once idle: now, or when their last open request is answered. Plain
    // connections between requests get their next one waited for (Owe), answered with
    // `Connection: close`.
    for (int i = 0; i < io_->size(); ++i) {
      io_->RunOn(i, [this, i] {
        for (const std::shared_ptr<LinkSession>& l : LinksOf(*core_, i)) DrainLink(*l);
        for (const std::shared_ptr<Connection>& c : ConnectionsOf(*core_, i)) c->Owe();
      });
    }
  }

  void Stop() override {
    if (stopped_) return;
    stopped_ = true;
    core_->draining.store(true);
    core_->stopped.store(true);
    StopAccepting();
    // Each loop, on its own thread: close its connections. Handlers running before have
    // finished; the ones that run later see `stopped`.
    for (int i = 0; i < io_->size(); ++i) {
      io_->RunOn(i, [this, i] {
        for (const std::shared_ptr<Connection>& c : ConnectionsOf(*core_, i)) c->Close();
        for (const std::shared_ptr<LinkSession>& l : LinksOf(*core_, i)) CloseLink(*l);
        for (const std::shared_ptr<Relay>& r : RelaysOf(*core_, i)) CloseRelay(*r);
        CloseIdleHops(*core_, i);
      });
    }
    if (owns_io_) io_->Stop();
  }

  void CloseConnectionsOf(const std::string& peer) override {
    if (peer.empty()) return;
    for (int i = 0; i < io_->size(); ++i) {
      asio::post(*core_->loops[static_cast<size_t>(i)].ioc, [core = core_, i, peer] {
        if (core->stopped.load()) return;
        for (const std::shared_ptr<Connection>& c : ConnectionsOf(*core, i)) {
          if (c->tls_peer() == peer) c->Close();
        }
        for (const std::shared_ptr<LinkSession>& l : LinksOf(*core, i)) {
          if (LinkMember(*l) == peer) CloseLink(*l);
        }
      });
    }
  }

  int busy_connections() const override { return core_->busy.load(); }
  int open_connections() const override { return core_->limits.open(); }

 private:
  // Loop `i`'s plain connections, held (call on that loop's thread).
  static std::vector<std::shared_ptr<Connection>> ConnectionsOf(Core& core, int i) {
    std::vector<std::shared_ptr<Connection>> open;
    Core::Loop& loop = core.loops[static_cast<size_t>(i)];
    absl::MutexLock lock(&loop.mu);
    for (Connection* c : loop.connections) {
      if (auto p = c->weak_from_this().lock()) open.push_back(std::move(p));
    }
    return open;
  }

  // Loop `i`'s relays, or its links, held (call on that loop's thread).
  template <typename T>
  static std::vector<std::shared_ptr<T>> HeldOf(Core& core, int i,
                                                std::unordered_set<T*> Core::Loop::*set,
                                                std::shared_ptr<T> (*hold)(T&)) {
    std::vector<std::shared_ptr<T>> held;
    Core::Loop& loop = core.loops[static_cast<size_t>(i)];
    absl::MutexLock lock(&loop.mu);
    for (T* x : loop.*set) {
      if (auto p = hold(*x)) held.push_back(std::move(p));
    }
    return held;
  }
  static std::vector<std::shared_ptr<Relay>> RelaysOf(Core& core, int i) {
    return HeldOf(core, i, &Core::Loop::relays, &RelayPtr);
  }
  static std::vector<std::shared_ptr<LinkSession>> LinksOf(Core& core, int i) {
    return HeldOf(core, i, &Core::Loop::links, &LinkPtr);
  }

  const std::shared_ptr<IoThreads> io_;  // declared first: destroyed last
  const bool owns_io_;
  const std::shared_ptr<Core> core_;
  uint16_t port_ = 0;
  bool stopped_ = false;
};

Connection::Connection(tcp::socket socket, std::string remote, ConnectionLimits::Slot slot,
                       std::shared_ptr<Core> core, int loop)
    : stream_(std::move(socket)),
      remote_(std::move(remote)),
      deadline_(stream_.get_executor(), core->clock),
      core_(std::move(core)),
      slot_(std::move(slot)),
      loop_(loop),
      executor_(core_->loops[static_cast<size_t>(loop)].ioc->get_executor()),
      reader_(core_->request_limits, core_->options.memory_budget.get()) {
  Core::Loop& l = core_->loops[static_cast<size_t>(loop_)];
  absl::MutexLock lock(&l.mu);
  l.connections.insert(this);
}

Connection::~Connection() {
  Core::Loop& l = core_->loops[static_cast<size_t>(loop_)];
  absl::MutexLock lock(&l.mu);
  l.connections.erase(this);
}

void Connection::Start() {
  const HttpServerOptions& o = core_->options;
  if (o.pass_through && o.pass_through_all) return PassThrough();
  if (o.tls == nullptr && !o.pass_through) return ReadRequest();
  // TLS, plain HTTP, or bytes to relay? The first bytes tell (within header_timeout): read them
  // as a request's would be, and hand them to the handshake if they start one.
  phase_ = Phase::kTls;
  ExpiresAfter(o.header_timeout);
  ReadFirst();
}

void Connection::ReadFirst() {
  stream_.async_read_some(
      buffer_.prepare(kReadSize),
      [self = shared_from_this()](beast::error_code ec, size_t n) { self->OnFirstRead(ec, n); });
}

void Connection::OnFirstRead(beast::error_code ec, size_t n) {
  if (ec) return Close();  // closed before a byte, reset, or the deadline
  buffer_.commit(n);
  const auto* first = static_cast<const unsigned char*>(buffer_.data().data());
  if (core_->options.pass_through) {
    const std::string_view bytes(reinterpret_cast<const char*>(first), buffer_.size());
    switch (ClassifyFirstBytes(bytes)) {
      case FirstBytes::kNeedMore:
        return ReadFirst();
      case FirstBytes::kOther:
        return PassThrough();
      case FirstBytes::kHttp1:
        return ReadRequest();
    }
  }
  // 0x16: a TLS record of the handshake type; no HTTP request starts with it.
  const std::shared_ptr<ssl_ctx_st> context = core_->options.tls->server();
  if (first[0] != 0x16 || context == nullptr) return ReadRequest();
  stream_.StartTls(context.get());
  // The handshake starts from the bytes read (the ClientHello, which the client sends alone).
  stream_.async_handshake(asio::ssl::stream_base::server, buffer_.data(),
                          [self = shared_from_this()](beast::error_code hec, size_t) {
                            self->buffer_.consume(self->buffer_.size());
                            self->OnHandshake(hec);
                          });
}

void Connection::OnHandshake(beast::error_code ec) {
  if (core_->stopped.load(std::memory_order_relaxed)) return Close();  // no check after Stop()
  if (ec) {
    if (ec != asio::error::operation_aborted) {  // not the deadline (OnTimeout counted it)
      core_->rejections->Note(Rejection::kTlsHandshakeFailed, remote_,
                              StrCat("TLS handshake failed: ", ec.message()));
    }
    return Close();
  }
  const PeerChain chain = stream_.PeerCertificates();
  if (!chain.empty()) {
    absl::StatusOr<std::string> peer = core_->options.tls->Check(chain, "");
    if (peer.ok()) {
      tls_peer_ = *std::move(peer);
    } else {
      tls_refusal_ = StrCat("the certificate this connection presented is refused: ",
                            MessageOf(peer.status()));
      core_->rejections->Note(Rejection::kTlsPeerRefused, remote_, tls_refusal_);
    }
  }
  ReadRequest();
}

void Connection::ReadRequest() {
  reader_.Start(&request_head_);
  phase_ = Phase::kHead;
  body_timed_ = false;
  ExpiresAfter(core_->options.header_timeout);
  // Accepted as the server stops accepting (from the listener's queue): its client has
  // connected and may be writing its request.
  if (core_->draining.load(std::memory_order_relaxed)) Owe();
  Parse();
}

void Connection::Parse() {
  for (;;) {
    switch (reader_.Feed(buffer_)) {
      case RequestReader::Step::kNeedMore:
        if (phase_ == Phase::kBody && !body_timed_) {
          body_timed_ = true;
          ExpiresAfter(core_->options.body_timeout);
        }
        return Read();
      case RequestReader::Step::kHead:
        if (!OnHead()) return;
        continue;
      case RequestReader::Step::kDone:
        deadline_.Clear();
        phase_ = Phase::kHandled;
        body_ = reader_.TakeBody();
        return Dispatch();
      case RequestReader::Step::kRefused:
        return Refuse(reader_.refusal());
    }
  }
}

void Connection::Read() {
  // As Beast's own reads size them: what the buffer has room for, within 512 bytes .. 64 KiB.
  const size_t room = buffer_.capacity() - buffer_.size();
  stream_.async_read_some(
      buffer_.prepare(std::clamp<size_t>(room, 512, kReadSize)),
      [self = shared_from_this()](beast::error_code ec, size_t n) { self->OnRead(ec, n); });
}

void Connection::OnRead(beast::error_code ec, size_t n) {
  if (ec) {
    Close();  // the client closed or reset the connection, or the deadline closed it
    return;
  }
  buffer_.commit(n);
  Parse();
}

bool Connection::OnHead() {
  received_ = core_->clock.Now();
  keep_alive_ = reader_.keep_alive();
  phase_ = Phase::kBody;
  if (core_->options.forward && tls_refusal_.empty() && !core_->stopped.load()) {
    std::optional<ForwardPlan> plan = core_->options.forward(*this);
    if (plan) {
      // Streamed to another server (transport/relay.h): it reads the body and writes the answer,
      // and moves this deadline as it goes. Cleared, not cancelled: the timer stays armed and
      // is moved only when it fires, not at every exchange (IoDeadline).
      deadline_.Clear();
      phase_ = Phase::kHandled;
      if (!busy_) {
        busy_ = true;
        core_->busy.fetch_add(1);
      }
      StartForward(shared_from_this(), *std::move(plan), core_, loop_);
      return false;
    }
  }
  // Read whole: refused now if it is too large, before a `100 Continue` asks for it.
  if (reader_.WholeBody() == RequestReader::Step::kRefused) {
    Refuse(reader_.refusal());
    return false;
  }
  return ContinueHead();
}

void Connection::ForwardEnded(bool reuse, bool fallback) {
  forward_.reset();
  deadline_.Clear();
  if (fallback) {
    // Nothing was sent: the request is read whole and handled as usual (Dispatch counts it
    // busy again once it is whole).
    Unbusy();
    phase_ = Phase::kBody;
    if (reader_.WholeBody() == RequestReader::Step::kRefused) return Refuse(reader_.refusal());
    if (ContinueHead()) Parse();
    return;
  }
  phase_ = Phase::kHandled;
  body_.reset();
  Unbusy();
  if (!reuse || core_->draining.load(std::memory_order_relaxed)) return Close();
  ReadRequest();
}

bool Connection::ContinueHead() {
  const RequestHead::Field* expect = request_head_.Find("Expect");
  if (expect == nullptr || !beast::iequals(request_head_.Value(*expect), "100-continue")) {
    return true;
  }
  static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
  asio::async_write(stream_, asio::buffer(kContinue.data(), kContinue.size()),
                    [self = shared_from_this()](beast::error_code ec, size_t) {
                      if (ec) return self->Close();
                      self->Parse();
                    });
  return false;
}

void Connection::OnTimeout() {
  if (std::shared_ptr<ForwardTimeouts> forward = forward_.lock()) return forward->TimedOut();
  // A client that is idle between requests is closed without a word; one that is slow to send a
  // request, or to take its answer, is counted.
  const auto ms = [](std::chrono::milliseconds t) { return t.count(); };
  switch (phase_) {
    case Phase::kTls:
      if (stream_.tls()) {
        core_->rejections->Note(
            Rejection::kTlsHandshakeFailed, remote_,
            StrCat("a TLS handshake took over ", ms(core_->options.header_timeout), " ms"));
      }
      break;
    case Phase::kHead:
      if (reader_.started() || buffer_.size() > 0) {
        core_->rejections->Note(
            Rejection::kSlowClient, remote_,
            StrCat("a request head took over ", ms(core_->options.header_timeout), " ms"));
      }
      break;
    case Phase::kBody:
      core_->rejections->Note(
          Rejection::kSlowClient, remote_,
          StrCat("a request body took over ", ms(core_->options.body_timeout), " ms"));
      break;
    case Phase::kWriting:
      core_->rejections->Note(
          Rejection::kSlowClient, remote_,
          StrCat("an answer was not taken within ", ms(core_->options.body_timeout), " ms"));
      break;
    case Phase::kStreaming:
      core_->rejections->Note(Rejection::kSlowClient, remote_,
                              StrCat("a streamed answer was not taken within ",
                                     ms(core_->options.body_timeout), " ms"));
      break;
    case Phase::kHandled:
      break;
  }
  Close();
}

void Connection::Refuse(const RequestRefusal& refusal) {
  core_->rejections->Note(refusal.reason, remote_, refusal.message);
  SendError(refusal.status, refusal.message, /*close=*/true, refusal.retry_after);
}

void Connection::Dispatch() {
  if (core_->stopped.load()) {
    Close();
    return;
  }
  if (!tls_refusal_.empty()) {
    SendError(403, tls_refusal_, /*close=*/true);
    return;
  }
  if (WantsTunnel()) {
    absl::StatusOr<std::string> address = core_->options.authorize_tunnel(*this);
    if (!address.ok()) {
      core_->rejections->Note(Rejection::kTunnelRefused, remote_, MessageOf(address.status()));
      const absl::StatusCode code = address.status().code();
      SendError(code == absl::StatusCode::kPermissionDenied ? 403
                : code == absl::StatusCode::kNotFound       ? 404
                : code == absl::StatusCode::kUnavailable    ? 503
                                                            : 400,
                MessageOf(address.status()), /*close=*/true);
      return;
    }
    SwitchToTunnel(*address);
    return;
  }
  if (WantsLink()) {
    std::string member;
    if (core_->options.authorize_link) {
      absl::StatusOr<std::string> allowed = core_->options.authorize_link(*this);
      if (!allowed.ok()) {
        const std::string_view why = MessageOf(allowed.status());
        core_->rejections->Note(Rejection::kLinkUnauthenticated, remote_, why);
        SendError(403, why, /*close=*/true);
        return;
      }
      member = *std::move(allowed);
    }
    SwitchToLink(std::move(member));
    return;
  }
  if (!busy_) {  // else counted since the drain began (Owe)
    busy_ = true;
    core_->busy.fetch_add(1);
  }
  // Once the server stops accepting, a request on an open connection is still handled (its
  // client wrote it before it could know); its answer closes the connection (Send).
  core_->handler(*this, [self = shared_from_this()](HttpResponse r) {
    // On the connection's own loop (a forwarded request's answer), write at once.
    if (self->executor_.running_in_this_thread()) {
      self->Send(std::move(r));
      return;
    }
    asio::post(self->executor_, [self, r = std::move(r)]() mutable { self->Send(std::move(r)); });
  });
}

void Connection::SwitchToLink(std::string member) {
  // From now on the connection carries many requests at once.
  static const std::string kSwitch =
      StrCat("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ", kLinkProtocol,
             "\r\n\r\n");
  deadline_.Cancel();
  const std::array<asio::const_buffer, 1> buffers{asio::buffer(kSwitch)};
  WriteNowOrLater(
      stream_, buffers,
      [self = shared_from_this(), member = std::move(member)](beast::error_code ec) mutable {
        if (ec) {
          self->Close();
          return;
        }
        StartLink(std::move(self->stream_), std::move(self->buffer_), self->core_, self->loop_,
                  std::move(self->slot_), std::move(member));
      });
}

void Connection::PassThrough() {
  deadline_.Cancel();
  Unbusy();  // counted since a drain began (Owe): a relay is not waited for
  absl::StatusOr<RelayPlan> plan = core_->options.pass_through(remote_);
  if (!plan.ok()) {
    // The client's protocol is not known here: it cannot be told why, only closed.
    core_->rejections->Note(Rejection::kPassThroughRefused, remote_, MessageOf(plan.status()));
    return Close();
  }
  std::string from_client(static_cast<const char*>(buffer_.data().data()), buffer_.size());
  buffer_.consume(buffer_.size());
  StartPassThrough(std::move(stream_), std::move(from_client), core_, loop_, std::move(slot_),
                   *std::move(plan));
}

void Connection::SwitchToTunnel(const std::string& address) {
  tcp::endpoint endpoint;
  if (!peer_internal::ParseEndpoint(address, &endpoint)) {
    return SendError(502, StrCat("'", address, "' is not ip:port"), /*close=*/true);
  }
  // The workload is connected before the 101: one that does not listen is a 502, and the
  // sender tries elsewhere.
  auto workload = std::make_shared<IoStream>(executor_);
  ExpiresAfter(core_->options.header_timeout);
  workload->socket().async_connect(
      endpoint, [self = shared_from_this(), workload, address](beast::error_code ec) {
        self->deadline_.Cancel();
        if (self->core_->stopped.load()) return self->Close();
        if (ec) {
          return self->SendError(502, StrCat("cannot connect to ", address, ": ", ec.message()),
                                 /*close=*/true);
        }
        workload->socket().set_option(tcp::no_delay(true), ec);
        std::string from_client(static_cast<const char*>(self->buffer_.data().data()),
                                self->buffer_.size());
        self->buffer_.consume(self->buffer_.size());
        StartTunnel(std::move(self->stream_), std::move(from_client), std::move(*workload),
                    StrCat("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ",
                           kTunnelProtocol, "\r\n\r\n"),
                    self->core_, self->loop_, std::move(self->slot_));
      });
}

void Connection::SendError(int status, std::string_view message, bool close, bool retry_after) {
  if (!busy_) {
    busy_ = true;
    core_->busy.fetch_add(1);
  }
  close_after_ = close_after_ || close;
  HttpResponse r;
  r.status = status;
  r.body = ErrorJson(message);
  if (retry_after) r.headers.emplace_back("Retry-After", "1");
  Send(std::move(r));
}

void Connection::Send(HttpResponse response) {
  response_ = std::move(response);
  if (core_->draining.load(std::memory_order_relaxed)) close_after_ = true;
  const bool close = close_after_ || !keep_alive_ || response_.stream != nullptr;
  head_.clear();
  AppendResponseHead(&head_, response_);
  if (close) head_ += "Connection: close\r\n";
  head_ += "\r\n";
  close_after_ = close;
  boost::container::small_vector<asio::const_buffer, 8> buffers;
  if (response_.stream) {
    // The body, if any, is the first chunk (a HEAD request gets the head alone).
    if (!response_.body.empty() && method() != "HEAD") AppendChunk(&head_, response_.body);
    buffers.push_back(asio::buffer(head_));
  } else {
    AppendMessageBuffers(buffers, head_, response_.body, response_.tail);
  }
  phase_ = Phase::kWriting;
  ExpiresAfter(core_->options.body_timeout);
  WriteNowOrLater(stream_, buffers,
                  [self = shared_from_this()](beast::error_code ec) { self->OnWritten(ec); });
}

void Connection::OnWritten(beast::error_code ec) {
  phase_ = Phase::kHandled;
  if (response_.on_sent && !core_->stopped.load(std::memory_order_relaxed)) {
    response_.on_sent(core_->clock.Now());
  }
  if (response_.stream) {
    if (!ec && method() != "HEAD") return StartStream();
    response_.stream->Close();  // never started: its producer learns now
  }
  response_ = HttpResponse();
  body_.reset();
  Unbusy();
  if (ec || close_after_) {
    Close();
    return;
  }
  ReadRequest();
}

void Connection::StartStream() {
  // Not a request under way any more: the server's drain does not wait for it.
  Unbusy();
  deadline_.Clear();
  phase_ = Phase::kStreaming;
  response_.on_sent = nullptr;
  // The client only listens: anything it sends, or its leaving, ends the stream.
  stream_.async_read_some(buffer_.prepare(512), [self = shared_from_this()](
                                                    beast::error_code, size_t) { self->Close(); });
  response_.stream->Attach([weak = weak_from_this(), executor = executor_] {
    asio::post(executor, [weak] {
      if (std::shared_ptr<Connection> self = weak.lock()) self->PumpStream();
    });
  });
}

void Connection::PumpStream() {
  if (phase_ != Phase::kStreaming || stream_writing_ || !response_.stream) return;
  const bool ended = response_.stream->Take(&stream_out_);
  if (ended) stream_out_ += "0\r\n\r\n";
  if (stream_out_.empty()) return;
  stream_writing_ = true;
  ExpiresAfter(core_->options.body_timeout);
  asio::async_write(stream_, asio::buffer(stream_out_),
                    [self = shared_from_this(), ended](beast::error_code ec, size_t) {
                      self->stream_writing_ = false;
                      self->deadline_.Clear();
                      if (ec || ended) return self->Close();
                      self->PumpStream();  // what was queued meanwhile
                    });
}

void AppendChunk(std::string* out, std::string_view data) {
  char size[20];
  const int n = std::snprintf(size, sizeof size, "%zx\r\n", data.size());
  out->append(size, static_cast<size_t>(n));
  out->append(data);
  *out += "\r\n";
}

void AppendResponseHead(std::string* out, const HttpResponse& response) {
  StrAppend(out, "HTTP/1.1 ", response.status, " ", HttpReason(response.status),
            "\r\nContent-Type: ", response.content_type, "\r\n");
  if (response.stream) {
    *out += "Transfer-Encoding: chunked\r\n";
  } else {
    size_t length = response.body.size();
    for (const Tensor& t : response.tail) length += t.data().size();
    StrAppend(out, "Content-Length: ", length, "\r\n");
  }
  for (const auto& [k, v] : response.headers) StrAppend(out, k, ": ", v, "\r\n");
}

}  // namespace http_internal

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Create(const HttpServerOptions& options,
                                                               HttpHandler handler,
                                                               std::shared_ptr<IoThreads> io) {
  if (options.clock == nullptr) return absl::InvalidArgumentError("the HTTP server has no clock");
  const bool owns_io = io == nullptr;
  if (owns_io) io = IoThreads::Create(options.threads);
  auto server = std::make_unique<http_internal::ServerImpl>(options, std::move(handler),
                                                            std::move(io), owns_io);
  absl::Status s = server->Bind();
  if (!s.ok()) return s;
  return std::unique_ptr<HttpServer>(std::move(server));
}

std::string_view HttpReason(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 413:
      return "Payload Too Large";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    default:
      return "Unknown";
  }
}

}  // namespace hivemesh
