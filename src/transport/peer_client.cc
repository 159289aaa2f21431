#include "transport/peer_client.h"

#include <algorithm>
#include <charconv>

#include "base/strings.h"
#include "transport/io_threads_asio.h"
#include "transport/io_write.h"
#include "transport/mesh_link.h"
#include "transport/peer_client_internal.h"

namespace hivemesh {
namespace peer_internal {

// The steps of one request over plain HTTP; each runs on the call's loop thread.
void Connect(const std::shared_ptr<Call>& call);
void Write(const std::shared_ptr<Call>& call);
void Done(const std::shared_ptr<Call>& call);
void Fail(const std::shared_ptr<Call>& call, error_code ec);

void CloseConnection(Core& core, Connection& c) {
  c.stream.Close();
  c.deadline.Cancel();
  if (c.counted) {
    c.counted = false;
    --core.open;
  }
}

void Close(const std::shared_ptr<Call>& call) {
  call->parser.reset();
  if (!call->conn) return;
  CloseConnection(*call->core, *call->conn);
  call->conn.reset();
}

// The request must be answered by its deadline: past it, the connection is closed.
void ExpiresAtDeadline(const std::shared_ptr<Call>& call) {
  Connection* c = call->conn.get();
  c->deadline.ExpiresAt(
      call->deadline, [&call] { return call->conn; },
      [c] {
        c->timed_out = true;
        error_code ignored;
        c->stream.socket().close(ignored);
      });
}

void Finish(const std::shared_ptr<Call>& call, absl::StatusOr<PeerResponse> result) {
  PeerCallback done = std::move(call->done);
  call->done = nullptr;
  if (call->core->stopped.load(std::memory_order_relaxed)) {
    Close(call);  // abandoned: the client has stopped
    return;
  }
  if (done) done(std::move(result));
}

void StartHttp(const std::shared_ptr<Call>& call) {
  if (call->core->stopped.load(std::memory_order_relaxed)) return;
  auto& pool = call->core->idle[static_cast<size_t>(call->loop)];
  auto it = pool.find(PoolKey(*call->core, call->request));
  if (it != pool.end() && !it->second.empty()) {
    call->conn = std::move(it->second.back());
    it->second.pop_back();
    call->reused = true;
    Write(call);
    return;
  }
  Connect(call);
}

bool ParseEndpoint(const std::string& address, tcp::endpoint* out) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos) return false;
  error_code ec;
  const asio::ip::address ip = asio::ip::make_address(address.substr(0, colon), ec);
  int port = 0;
  const char* first = address.data() + colon + 1;
  const char* last = address.data() + address.size();
  const auto [end, err] = std::from_chars(first, last, port);
  if (ec || err != std::errc() || end != last || port <= 0 || port > 65535) return false;
  *out = tcp::endpoint(ip, static_cast<uint16_t>(port));
  return true;
}

bool PeerMayHaveClosed(error_code ec) {
  return ec == http::error::end_of_stream || ec == asio::error::connection_reset ||
         ec == asio::error::eof || ec == asio::error::broken_pipe ||
         ec == asio::ssl::error::stream_truncated;  // a TLS peer that closed without a word
}

void SecureThen(Core& core, int loop, IoStream& stream, const std::string& address,
                const std::string& peer_node,
                std::function<void(error_code ec, std::string refused)> done) {
  if (core.tls == nullptr) return done({}, {});
  const std::shared_ptr<ssl_ctx_st> context = core.tls->client();
  // Settings without a context yet: nothing goes out in the clear instead.
  if (context == nullptr) return done({}, "this node has no certificate to present to peers yet");
  stream.StartTls(context.get());
  auto& sessions = core.sessions[static_cast<size_t>(loop)];
  if (auto it = sessions.find(address); it != sessions.end()) stream.Resume(it->second.get());
  stream.async_handshake(asio::ssl::stream_base::client, [&core, &stream, peer_node,
                                                          done = std::move(done)](error_code ec) {
    // After Stop() the check is not called (what it reads may be gone).
    if (!ec && core.stopped.load(std::memory_order_relaxed)) ec = asio::error::operation_aborted;
    if (ec) return done(ec, {});
    absl::StatusOr<std::string> who = core.tls->Check(stream.PeerCertificates(), peer_node);
    if (!who.ok()) {
      return done({}, StrCat("the peer's certificate is refused: ", MessageOf(who.status())));
    }
    done({}, {});
  });
}

void KeepSession(Core& core, int loop, const std::string& address, IoStream& stream) {
  // Every connection's latest (IoStream::ResumableSession).
  if (std::shared_ptr<SSL_SESSION> session = stream.ResumableSession(); session != nullptr) {
    core.sessions[static_cast<size_t>(loop)][address] = std::move(session);
  }
}

void Connect(const std::shared_ptr<Call>& call) {
  tcp::endpoint endpoint;
  if (!ParseEndpoint(call->request.address, &endpoint)) {
    // Not inside Send: the callback runs from the loop.
    asio::post(call->executor, [call] {
      Finish(call, absl::InvalidArgumentError("peer address '" + call->request.address +
                                              "' is not ip:port"));
    });
    return;
  }
  call->conn = std::make_shared<Connection>(call->executor, call->core->clock);
  call->reused = false;
  ExpiresAtDeadline(call);
  call->conn->stream.socket().async_connect(endpoint, [call](error_code ec) {
    if (ec) return Fail(call, ec);
    call->conn->counted = true;
    ++call->core->open;
    error_code ignored;
    call->conn->stream.socket().set_option(tcp::no_delay(true), ignored);
    SecureThen(*call->core, call->loop, call->conn->stream, call->request.address,
               call->request.peer_node, [call](error_code hec, std::string refused) {
                 if (hec) return Fail(call, hec);
                 if (!refused.empty()) {
                   Close(call);
                   return Finish(call, absl::UnavailableError(refused));
                 }
                 Write(call);
               });
  });
}

void AppendRequest(Call& call, std::vector<asio::const_buffer>& buffers) {
  const PeerRequest& r = call.request;
  size_t length = r.body.size();
  for (const Tensor& t : r.tail) length += t.data().size();
  size_t head_size = r.method.size() + r.target.size() + r.address.size() + 96;
  for (const auto& [k, v] : r.headers) head_size += k.size() + v.size() + 4;
  call.head.clear();
  call.head.reserve(head_size);
  StrAppend(&call.head, r.method, " ", r.target, " HTTP/1.1\r\n");
  // A link goes to one peer: its requests need no Host, only their stream number. A Host the
  // caller gives is the only one (a server may refuse two: nginx answers 400).
  const bool own_host = std::any_of(r.headers.begin(), r.headers.end(), [](const auto& h) {
    return h.first.size() == 4 && (h.first[0] | 0x20) == 'h' && (h.first[1] | 0x20) == 'o' &&
           (h.first[2] | 0x20) == 's' && (h.first[3] | 0x20) == 't';
  });
  if (call.stream != 0) {
    StrAppend(&call.head, kLinkStreamHeader, ": ", call.stream, "\r\n");
  } else if (!own_host) {
    StrAppend(&call.head, "Host: ", r.address, "\r\n");
  }
  StrAppend(&call.head, "Content-Length: ", length, "\r\n");
  for (const auto& [k, v] : r.headers) StrAppend(&call.head, k, ": ", v, "\r\n");
  // A link proved who we are when it opened; a plain request proves it on its own.
  if (call.stream == 0 && call.core->credential && !r.peer_node.empty()) {
    StrAppend(&call.head, kCredentialField, ": ",
              call.core->credential(r.peer_node, kCredentialForRequest), "\r\n");
  }
  if (r.send_time_left) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(call.deadline -
                                                                            call.core->clock.Now());
    // At least 1: the peer refuses 0, and this call times out here in any case.
    StrAppend(&call.head, "Inference-Timeout-Ms: ", std::max<int64_t>(1, left.count()), "\r\n");
  }
  call.head += "\r\n";
  AppendMessageBuffers(buffers, call.head, r.body, r.tail);
}

void Write(const std::shared_ptr<Call>& call) {
  const PeerRequest& r = call->request;
  std::vector<asio::const_buffer> buffers;
  buffers.reserve(2 + r.tail.size());
  AppendRequest(*call, buffers);
  ExpiresAtDeadline(call);
  WriteNowOrLater(call->conn->stream, buffers, [call](error_code ec) {
    if (ec) return Fail(call, ec);
    call->parser.emplace();
    call->parser->body_limit(kMaxAnswerBytes);
    http::async_read(call->conn->stream, call->conn->buffer, *call->parser,
                     [call](error_code ec, size_t) {
                       if (ec) return Fail(call, ec);
                       Done(call);
                     });
  });
}

void Done(const std::shared_ptr<Call>& call) {
  PeerResponse resp = std::move(call->parser->response());
  resp.body = std::make_shared<const std::string>(std::move(call->parser->body()));
  const bool keep = call->parser->keep_alive();
  call->parser.reset();
  call->conn->deadline.Clear();
  KeepSession(*call->core, call->loop, call->request.address, call->conn->stream);
  if (keep && !call->conn->timed_out && call->conn->stream.socket().is_open() &&
      !call->core->stopped.load(std::memory_order_relaxed)) {
    call->core->idle[static_cast<size_t>(call->loop)][PoolKey(*call->core, call->request)]
        .push_back(std::move(call->conn));
  } else {
    Close(call);
  }
  Finish(call, std::move(resp));
}

void Fail(const std::shared_ptr<Call>& call, error_code ec) {
  const bool timed_out = call->conn && call->conn->timed_out;
  Close(call);
  // A pooled connection the peer closed while idle: try once more on a fresh one.
  if (call->reused && !call->core->stopped.load(std::memory_order_relaxed) &&
      PeerMayHaveClosed(ec)) {
    Connect(call);
    return;
  }
  Finish(call, TransportError(call->request.address, ec, timed_out));
}

absl::Status TransportError(const std::string& address, error_code ec, bool timed_out) {
  if (ec == asio::error::connection_refused) {
    return absl::UnavailableError(StrCat(kRefused, " by ", address));
  }
  if (timed_out) return absl::DeadlineExceededError(StrCat("no answer from ", address, " in time"));
  return absl::UnavailableError(StrCat("connection to ", address, " failed: ", ec.message()));
}

class PeerClientImpl final : public PeerClient {
 public:
  PeerClientImpl(std::shared_ptr<IoThreads> io, bool owns_io, CredentialFn credential,
                 const Clock& clock, std::shared_ptr<TlsSettings> tls)
      : io_(std::move(io)),
        owns_io_(owns_io),
        core_(std::make_shared<Core>(io_->size(), std::move(credential), clock, std::move(tls))) {}
  ~PeerClientImpl() override { Stop(); }

  void Stop() override {
    if (core_->stopped.exchange(true)) return;
    // Each loop, on its own thread: close the idle connections. After this, every handler of
    // this client that runs sees `stopped` and runs no callback.
    for (int i = 0; i < io_->size(); ++i) {
      io_->RunOn(i, [this, i] {
        CloseLinks(*core_, i);
        for (auto& [_, conns] : core_->idle[static_cast<size_t>(i)]) {
          for (const std::shared_ptr<Connection>& c : conns) CloseConnection(*core_, *c);
        }
        core_->idle[static_cast<size_t>(i)].clear();
        core_->sessions[static_cast<size_t>(i)].clear();
      });
    }
    if (owns_io_) io_->Stop();
  }

  void CloseConnectionsTo(const std::string& peer_node) override {
    if (peer_node.empty()) return;
    for (int i = 0; i < io_->size(); ++i) {
      asio::post(AsioContext(*io_, i), [core = core_, i, peer_node] {
        if (core->stopped.load()) return;
        CloseLinksTo(*core, i, peer_node);
        const std::string suffix = '\n' + peer_node;  // PoolKey over TLS
        auto& pool = core->idle[static_cast<size_t>(i)];
        for (auto it = pool.begin(); it != pool.end();) {
          if (!it->first.ends_with(suffix)) {
            ++it;
            continue;
          }
          for (const std::shared_ptr<Connection>& c : it->second) CloseConnection(*core, *c);
          it = pool.erase(it);
        }
      });
    }
  }

  int open_connections() const override { return core_->open.load(); }
  int open_links() const override { return core_->open_links.load(); }

  void Send(PeerRequest request, PeerCallback done) override {
    if (core_->stopped.load(std::memory_order_relaxed)) return;
    auto call = std::make_shared<Call>(core_, std::move(request), std::move(done));
    call->deadline = core_->clock.Now() + call->request.timeout;
    const int current = io_->CurrentLoop();
    call->loop = current >= 0 ? current : io_->NextLoop();
    call->executor = AsioContext(*io_, call->loop).get_executor();
    void (*start)(const std::shared_ptr<Call>&) = call->request.link ? StartOnLink : StartHttp;
    if (current >= 0) {
      start(call);  // already on the loop: send now, on this thread
    } else {
      asio::post(call->executor, [call, start] { start(call); });
    }
  }

 private:
  const std::shared_ptr<IoThreads> io_;
  const bool owns_io_;
  const std::shared_ptr<Core> core_;
};

}  // namespace peer_internal

std::optional<std::string_view> PeerHeaders::Get(std::string_view name) const {
  for (const Field& f : fields_) {
    if (Name(f) == name) return std::string_view(text_.data() + f.at + f.name_size, f.value_size);
  }
  return std::nullopt;
}

void PeerHeaders::Add(std::string_view name, std::string_view value) {
  const auto at = static_cast<uint32_t>(text_.size());
  text_.append(name).append(value);
  for (size_t i = at; i < at + name.size(); ++i) {
    char& c = text_[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');  // ASCII: no locale call
  }
  const Field added{at, static_cast<uint32_t>(name.size()), static_cast<uint32_t>(value.size())};
  for (Field& f : fields_) {
    if (Name(f) == Name(added)) {
      f = added;  // the earlier field's bytes stay unused in text_
      return;
    }
  }
  fields_.push_back(added);
}

void PeerCancel::Cancel() {
  std::shared_ptr<void> target;
  Hook hook = nullptr;
  {
    absl::MutexLock lock(&mu_);
    if (cancelled_) return;
    cancelled_ = true;
    target = target_.lock();
    hook = hook_;
  }
  if (target && hook) hook(target);
}

bool PeerCancel::cancelled() const {
  absl::MutexLock lock(&mu_);
  return cancelled_;
}

void PeerCancel::Bind(std::weak_ptr<void> target, Hook hook) {
  std::shared_ptr<void> now;
  {
    absl::MutexLock lock(&mu_);
    target_ = std::move(target);
    hook_ = hook;
    if (!cancelled_) return;
    now = target_.lock();
  }
  if (now) hook(now);
}

bool IsConnectionRefused(const absl::Status& status) {
  return status.code() == absl::StatusCode::kUnavailable &&
         MessageOf(status).starts_with(peer_internal::kRefused);
}

std::unique_ptr<PeerClient> PeerClient::Create(std::shared_ptr<IoThreads> io,
                                               CredentialFn credential, const Clock& clock,
                                               std::shared_ptr<TlsSettings> tls) {
  using peer_internal::PeerClientImpl;
  const bool owns_io = io == nullptr;
  if (owns_io) io = IoThreads::Create(1);
  return std::make_unique<PeerClientImpl>(std::move(io), owns_io, std::move(credential), clock,
                                          std::move(tls));
}

}  // namespace hivemesh
