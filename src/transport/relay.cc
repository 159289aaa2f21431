#include "transport/relay.h"

#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>

#include "base/strings.h"
#include "transport/http_server_internal.h"
#include "transport/link_head.h"
#include "transport/peer_client_internal.h"

namespace hivemesh {

FirstBytes ClassifyFirstBytes(std::string_view bytes) {
  // The HTTP/2 connection preface starts "PRI * HTTP/2.0": no HTTP/1.x client sends PRI.
  constexpr std::string_view kPreface = "PRI ";
  const size_t k = std::min(bytes.size(), kPreface.size());
  if (bytes.substr(0, k) == kPreface.substr(0, k)) {
    return k < kPreface.size() ? FirstBytes::kNeedMore : FirstBytes::kOther;
  }
  // A method is a token; the methods clients send are upper-case letters, at most 20 or so.
  constexpr size_t kLongestMethod = 20;
  for (size_t i = 0; i < bytes.size(); ++i) {
    const char c = bytes[i];
    if (c == ' ') return i > 0 ? FirstBytes::kHttp1 : FirstBytes::kOther;
    if (c < 'A' || c > 'Z' || i >= kLongestMethod) return FirstBytes::kOther;
  }
  return FirstBytes::kNeedMore;
}

namespace http_internal {
namespace {

using peer_internal::ParseEndpoint;

bool Ended(const beast::error_code& ec) {
  // A TLS peer that ends by a TCP half-close (as the relay's other end does) is truncated.
  return ec == asio::error::eof || ec == asio::ssl::error::stream_truncated;
}

}  // namespace

// Reaches the first of a plan's hops that connects: a workload directly, or a node asked for a
// tunnel (TLS checked against its member when the server has tunnel TLS). Each attempt is told
// to the plan's on_attempt; `done` gets the connected stream and any bytes read past the 101,
// or the last failure. Cancel() closes what is under way (done then gets an error).
class HopDialer : public std::enable_shared_from_this<HopDialer> {
 public:
  using Done = std::function<void(absl::Status, std::unique_ptr<IoStream>, std::string leftover,
                                  size_t hop)>;
  // Runs on loop `loop`'s thread (`executor`).
  HopDialer(std::shared_ptr<Core> core, int loop, asio::any_io_executor executor,
            const RelayPlan& plan, Done done)
      : core_(std::move(core)),
        loop_(loop),
        plan_(plan),
        done_(std::move(done)),
        timer_(executor),
        executor_(std::move(executor)) {}

  void Start() { Dial(); }
  void Cancel() {
    cancelled_ = true;
    timer_.cancel();
    if (stream_) stream_->Close();
  }

 private:
  void Dial() {
    if (cancelled_) return Finish(absl::CancelledError("the server stopped"));
    if (next_hop_ >= plan_.hops.size()) {
      return Finish(last_failure_.ok() ? absl::UnavailableError("no endpoint to relay to")
                                       : last_failure_);
    }
    const RelayHop& hop = plan_.hops[next_hop_];
    tcp::endpoint endpoint;
    if (!ParseEndpoint(hop.address, &endpoint)) {
      return HopFailed(absl::InvalidArgumentError(StrCat("'", hop.address, "' is not ip:port")));
    }
    attempt_started_ = SystemClock::Get().Now();
    stream_ = std::make_unique<IoStream>(executor_);
    timed_out_ = false;
    timer_.expires_after(core_->options.header_timeout);
    timer_.async_wait([weak = weak_from_this(), hop = next_hop_](beast::error_code ec) {
      auto self = weak.lock();
      if (ec || self == nullptr || self->finished_ || self->next_hop_ != hop) return;
      self->timed_out_ = true;
      self->stream_->Close();  // the pending step fails
    });
    stream_->socket().async_connect(endpoint, [self = shared_from_this()](beast::error_code ec) {
      if (ec) return self->HopFailed(self->DialError("connect", ec));
      self->stream_->socket().set_option(tcp::no_delay(true), ec);
      if (self->plan_.hops[self->next_hop_].peer_node.empty()) return self->Connected({});
      self->Secure();
    });
  }

  absl::Status DialError(std::string_view step, const beast::error_code& ec) const {
    const RelayHop& hop = plan_.hops[next_hop_];
    if (timed_out_) {
      return absl::DeadlineExceededError(StrCat(step, " to ", hop.address, " took over ",
                                                core_->options.header_timeout.count(), " ms"));
    }
    if (ec == asio::error::connection_refused) {
      return absl::UnavailableError(StrCat("connection refused by ", hop.address));
    }
    return absl::UnavailableError(StrCat(step, " to ", hop.address, ": ", ec.message()));
  }

  void HopFailed(absl::Status why) {
    if (finished_) return;
    if (plan_.on_attempt && !core_->stopped.load(std::memory_order_relaxed)) {
      plan_.on_attempt(plan_.hops[next_hop_], why, SystemClock::Get().Now() - attempt_started_);
    }
    last_failure_ = std::move(why);
    if (stream_) stream_->Close();
    stream_.reset();
    ++next_hop_;
    if (core_->stopped.load(std::memory_order_relaxed)) cancelled_ = true;
    Dial();
  }

  void Secure() {
    const std::shared_ptr<TlsSettings>& tls = core_->options.tunnel_tls;
    if (tls == nullptr) return Upgrade();
    const std::shared_ptr<ssl_ctx_st> context = tls->client();
    if (context == nullptr) {
      return HopFailed(absl::UnavailableError("this node has no certificate to present yet"));
    }
    stream_->StartTls(context.get());
    // A full handshake signs and checks certificates at both ends; resuming skips that.
    auto& sessions = core_->loops[static_cast<size_t>(loop_)].tunnel_sessions;
    if (auto it = sessions.find(plan_.hops[next_hop_].address); it != sessions.end()) {
      stream_->Resume(it->second.get());
    }
    stream_->async_handshake(
        asio::ssl::stream_base::client, [self = shared_from_this()](beast::error_code ec) {
          const RelayHop& hop = self->plan_.hops[self->next_hop_];
          if (ec) {
            self->ForgetSession();
            return self->HopFailed(self->DialError("TLS handshake", ec));
          }
          absl::StatusOr<std::string> who = self->core_->options.tunnel_tls->Check(
              self->stream_->PeerCertificates(), hop.peer_node);
          if (!who.ok()) {
            self->ForgetSession();
            return self->HopFailed(absl::UnavailableError(StrCat(
                hop.address, ": the peer's certificate is refused: ", MessageOf(who.status()))));
          }
          self->Upgrade();
        });
  }

  void Upgrade() {
    const RelayHop& hop = plan_.hops[next_hop_];
    head_ = StrCat("GET ", hop.target, " HTTP/1.1\r\nHost: ", hop.address,
                   "\r\nConnection: Upgrade\r\nUpgrade: ", kTunnelProtocol, "\r\n");
    if (!hop.credential.empty()) StrAppend(&head_, kCredentialField, ": ", hop.credential, "\r\n");
    head_ += "\r\n";
    asio::async_write(*stream_, asio::buffer(head_),
                      [self = shared_from_this()](beast::error_code ec, size_t) {
                        if (ec) return self->HopFailed(self->DialError("tunnel request", ec));
                        self->head_.clear();
                        self->ReadAnswer();
                      });
  }

  void ReadAnswer() {
    constexpr size_t kMaxHead = 64 * 1024;
    const size_t at = head_.size();
    head_.resize(at + 4096);
    stream_->async_read_some(
        asio::buffer(head_.data() + at, 4096),
        [self = shared_from_this(), at](beast::error_code ec, size_t n) {
          self->head_.resize(at + n);
          if (ec) return self->HopFailed(self->DialError("tunnel answer", ec));
          LinkHead head;
          std::string error;
          switch (ParseLinkHead(self->head_, /*request=*/false, kMaxHead, &head, &error)) {
            case LinkParse::kNeedMore:
              return self->ReadAnswer();
            case LinkParse::kBad:
              return self->HopFailed(absl::UnavailableError(
                  StrCat(self->plan_.hops[self->next_hop_].address, ": bad answer: ", error)));
            case LinkParse::kDone:
              break;
          }
          self->KeepSession();
          if (head.status != 101) {
            // The refusal's words: its body, if it came with the head.
            std::string_view body = std::string_view(self->head_).substr(head.head_size);
            body = body.substr(0, std::min<uint64_t>(head.content_length, 512));
            return self->HopFailed(absl::UnavailableError(
                StrCat(self->plan_.hops[self->next_hop_].address, " answered ", head.status,
                       body.empty() ? "" : ": ", body)));
          }
          self->Connected(self->head_.substr(head.head_size));
        });
  }

  // A handshake that failed, or a peer refused: its session is not offered again.
  void ForgetSession() {
    core_->loops[static_cast<size_t>(loop_)].tunnel_sessions.erase(plan_.hops[next_hop_].address);
  }

  // Keeps the hop's TLS session for the loop's next tunnel there, once an answer has been read
  // (TLS 1.3 tickets come after the handshake).
  void KeepSession() {
    std::shared_ptr<SSL_SESSION> session = stream_->ResumableSession();
    if (session == nullptr) return;
    auto& sessions = core_->loops[static_cast<size_t>(loop_)].tunnel_sessions;
    if (sessions.size() >= kMaxTunnelSessions) sessions.clear();
    sessions[plan_.hops[next_hop_].address] = std::move(session);
  }

  void Connected(std::string leftover) {
    if (finished_) return;
    if (cancelled_) return Finish(absl::CancelledError("the server stopped"));
    if (plan_.on_attempt && !core_->stopped.load(std::memory_order_relaxed)) {
      plan_.on_attempt(plan_.hops[next_hop_], absl::OkStatus(),
                       SystemClock::Get().Now() - attempt_started_);
    }
    finished_ = true;
    timer_.cancel();
    head_.clear();
    Done done = std::move(done_);
    done(absl::OkStatus(), std::move(stream_), std::move(leftover), next_hop_);
  }

  void Finish(absl::Status why) {
    if (finished_) return;
    finished_ = true;
    timer_.cancel();
    Done done = std::move(done_);
    done(std::move(why), nullptr, {}, next_hop_);
  }

  const std::shared_ptr<Core> core_;
  const int loop_;
  const RelayPlan& plan_;  // its owner's, which outlives it
  Done done_;
  asio::steady_timer timer_;  // each hop's deadline
  asio::any_io_executor executor_;
  std::unique_ptr<IoStream> stream_;  // the hop being tried
  std::string head_;                  // the tunnel request, then its answer as it arrives
  size_t next_hop_ = 0;
  absl::Status last_failure_;
  SteadyTime attempt_started_;
  bool timed_out_ = false;
  bool cancelled_ = false;
  bool finished_ = false;
};

class Relay : public std::enable_shared_from_this<Relay> {
 public:
  Relay(IoStream client, std::string from_client, std::shared_ptr<Core> core, int loop,
        ConnectionLimits::Slot slot, RelayPlan plan)
      : core_(std::move(core)),
        loop_(loop),
        slot_(std::move(slot)),
        plan_(std::move(plan)),
        client_(std::move(client)),
        timer_(client_.get_executor()) {
    dir_[0].initial = std::move(from_client);
    Core::Loop& l = core_->loops[static_cast<size_t>(loop_)];
    absl::MutexLock lock(&l.mu);
    l.relays.insert(this);
  }
  ~Relay() {
    Core::Loop& l = core_->loops[static_cast<size_t>(loop_)];
    absl::MutexLock lock(&l.mu);
    l.relays.erase(this);
  }

  // Tries the plan's hops in order.
  void Dial() {
    dialer_ = std::make_shared<HopDialer>(
        core_, loop_, client_.get_executor(), plan_,
        [self = shared_from_this()](absl::Status result, std::unique_ptr<IoStream> stream,
                                    std::string leftover, size_t) {
          self->dialer_.reset();
          if (!result.ok()) return self->End(std::move(result));
          self->Begin(std::move(*stream), std::move(leftover));
        });
    dialer_->Start();
  }

  // The other end is reached (the workload, or a tunnel to it): `to_client` goes first (a
  // tunnel's bytes past its 101; at a tunnel's serving end, the 101 itself).
  void Begin(IoStream server, std::string to_client) {
    if (ended_) return;
    server_.emplace(std::move(server));
    Connected(std::move(to_client));
  }

  void Close() {
    if (dialer_) dialer_->Cancel();
    End(absl::CancelledError("the server stopped"));
  }

 private:
  struct Direction {
    std::string initial;  // written before the first read
    std::unique_ptr<char[]> buffer;
    bool ended = false;  // its reader ended its sending, and the end was passed on
  };

  // Bytes flow both ways from now on.
  void Connected(std::string to_client) {
    dir_[1].initial = std::move(to_client);
    for (Direction& d : dir_) d.buffer = std::make_unique<char[]>(kRelayBufferBytes);
    last_activity_ = std::chrono::steady_clock::now();
    WatchIdle();
    Pump(0);
    Pump(1);
  }

  IoStream& From(int d) { return d == 0 ? client_ : *server_; }
  IoStream& To(int d) { return d == 0 ? *server_ : client_; }

  void Pump(int d) {
    if (ended_) return;
    Direction& x = dir_[d];
    if (!x.initial.empty()) {
      asio::async_write(To(d), asio::buffer(x.initial),
                        [self = shared_from_this(), d](beast::error_code ec, size_t) {
                          if (ec) return self->End(Broken(ec));
                          self->dir_[d].initial.clear();
                          self->Pump(d);
                        });
      return;
    }
    From(d).async_read_some(asio::buffer(x.buffer.get(), kRelayBufferBytes),
                            [self = shared_from_this(), d](beast::error_code ec, size_t n) {
                              if (self->ended_) return;
                              if (ec) {
                                if (Ended(ec)) return self->EndOf(d);
                                return self->End(Broken(ec));
                              }
                              self->last_activity_ = std::chrono::steady_clock::now();
                              asio::async_write(
                                  self->To(d), asio::buffer(self->dir_[d].buffer.get(), n),
                                  [self, d](beast::error_code wec, size_t) {
                                    if (wec) return self->End(Broken(wec));
                                    self->last_activity_ = std::chrono::steady_clock::now();
                                    self->Pump(d);
                                  });
                            });
  }

  static absl::Status Broken(const beast::error_code& ec) {
    return absl::UnavailableError(StrCat("the relay broke: ", ec.message()));
  }

  // Direction `d`'s reader ended its sending: so does its writer, and the relay ends once both
  // have.
  void EndOf(int d) {
    dir_[d].ended = true;
    beast::error_code ignored;
    To(d).socket().shutdown(tcp::socket::shutdown_send, ignored);
    if (dir_[0].ended && dir_[1].ended) End(absl::OkStatus());
  }

  void WatchIdle() {
    const auto idle = core_->options.relay_idle_timeout;
    timer_.expires_at(last_activity_ + idle);
    timer_.async_wait([weak = weak_from_this(), idle](beast::error_code ec) {
      auto self = weak.lock();
      if (ec || self == nullptr || self->ended_) return;
      if (std::chrono::steady_clock::now() - self->last_activity_ >= idle) {
        return self->End(absl::DeadlineExceededError(
            StrCat("nothing passed either way for ",
                   std::chrono::duration_cast<std::chrono::milliseconds>(idle).count(), " ms")));
      }
      self->WatchIdle();
    });
  }

  void End(absl::Status why) {
    if (ended_) return;
    ended_ = true;
    timer_.cancel();
    client_.Close();
    if (server_) server_->Close();
    slot_.Release();
    if (plan_.on_end && !core_->stopped.load(std::memory_order_relaxed)) plan_.on_end(why);
  }

  const std::shared_ptr<Core> core_;
  const int loop_;
  ConnectionLimits::Slot slot_;
  RelayPlan plan_;
  IoStream client_;
  std::optional<IoStream> server_;  // the workload, or the node that tunnels to it
  std::shared_ptr<HopDialer> dialer_;
  asio::steady_timer timer_;      // the idle watch
  std::array<Direction, 2> dir_;  // [0]: client to server, [1]: server to client
  std::chrono::steady_clock::time_point last_activity_;
  bool ended_ = false;
};

// The answer of a forwarded request, parsed as it arrives: its head into fields, its body's
// decoded bytes into `body` for the forwarder to take.
class AnswerParser final : public http::basic_parser<false> {
 public:
  AnswerParser() {
    header_limit(64 * 1024);
    // Streamed: any size. (Not boost::none: Beast 1.74 compares a length with it as larger.)
    body_limit(std::numeric_limits<std::uint64_t>::max());
  }
  int status = 0;
  std::string reason;
  std::vector<std::pair<std::string, std::string>> fields;
  std::string body;

 private:
  void on_request_impl(http::verb, beast::string_view, beast::string_view, int,
                       beast::error_code&) override {}
  void on_response_impl(int code, beast::string_view r, int, beast::error_code&) override {
    status = code;
    reason.assign(r.data(), r.size());
  }
  void on_field_impl(http::field, beast::string_view name, beast::string_view value,
                     beast::error_code&) override {
    fields.emplace_back(std::string(name.data(), name.size()),
                        std::string(value.data(), value.size()));
  }
  void on_header_impl(beast::error_code&) override {}
  void on_body_init_impl(const boost::optional<std::uint64_t>&, beast::error_code&) override {}
  size_t on_body_impl(beast::string_view piece, beast::error_code&) override {
    body.append(piece.data(), piece.size());
    return piece.size();
  }
  void on_chunk_header_impl(std::uint64_t, beast::string_view, beast::error_code&) override {}
  size_t on_chunk_body_impl(std::uint64_t, beast::string_view piece, beast::error_code&) override {
    body.append(piece.data(), piece.size());
    return piece.size();
  }
  void on_finish_impl(beast::error_code&) override {}
};

namespace {

// A kept connection is worth using if its peer has neither closed it nor sent anything since.
bool StillOpen(IoStream& stream) {
  char byte;
  const ssize_t n = ::recv(stream.socket().native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

constexpr size_t kMaxIdlePerHop = 64;
constexpr size_t kMaxIdlePerLoop = 256;
// A kept connection unused for this long is closed (at the next sweep).
constexpr auto kIdleHopLife = std::chrono::seconds(30);

// Closes the loop's kept connections that their peers closed or that were unused for
// kIdleHopLife, at most once a second.
void SweepIdleHops(Core::Loop& loop) {
  const auto now = std::chrono::steady_clock::now();
  if (now < loop.next_idle_sweep) return;
  loop.next_idle_sweep = now + std::chrono::seconds(1);
  for (auto it = loop.idle_hops.begin(); it != loop.idle_hops.end();) {
    std::vector<KeptHop>& kept = it->second;
    for (size_t i = 0; i < kept.size();) {
      if (now - kept[i].since < kIdleHopLife && StillOpen(*kept[i].stream)) {
        ++i;
        continue;
      }
      kept[i].stream->Close();
      kept.erase(kept.begin() + static_cast<std::ptrdiff_t>(i));
      --loop.idle_hop_count;
    }
    it = kept.empty() ? loop.idle_hops.erase(it) : std::next(it);
  }
}

std::string HopKey(const RelayHop& hop) {
  return StrCat(hop.address, "\n", hop.peer_node, "\n", hop.target);
}

}  // namespace

class Forward : public ForwardTimeouts, public std::enable_shared_from_this<Forward> {
 public:
  Forward(std::shared_ptr<ForwardClient> client, ForwardPlan plan, std::shared_ptr<Core> core,
          int loop)
      : client_(std::move(client)), plan_(std::move(plan)), core_(std::move(core)), loop_(loop) {}

  // The exchange's deadline passed (the client's connection's timer).
  void TimedOut() override {
    if (ended_) return;
    if (failing_) return End(/*reuse=*/false, /*fallback=*/false);  // its answer is not taken
    timed_out_ = true;
    // The client stalled its body, or the answer is under way and stalled: it ends. The answer's
    // head is late: the pending read from the hop fails, and the client gets 504.
    if (answer_started_ || !request_done_ || !upstream_) return Abort();
    upstream_->Close();
  }

  void Start() {
    // A kept connection to one of the hops first, in the plan's order.
    Core::Loop& loop = core_->loops[static_cast<size_t>(loop_)];
    for (size_t i = 0; i < plan_.route.hops.size(); ++i) {
      auto it = loop.idle_hops.find(HopKey(plan_.route.hops[i]));
      if (it == loop.idle_hops.end()) continue;
      std::vector<KeptHop>& kept = it->second;
      std::unique_ptr<IoStream> found;
      while (!kept.empty() && found == nullptr) {
        std::unique_ptr<IoStream> last = std::move(kept.back().stream);
        kept.pop_back();
        --loop.idle_hop_count;
        if (StillOpen(*last)) {
          found = std::move(last);
        } else {
          last->Close();
        }
      }
      if (kept.empty()) loop.idle_hops.erase(it);
      if (found != nullptr) {
        kept_ = true;
        return Connected(std::move(found), {}, i);
      }
    }
    Dial();
  }

 private:
  void Dial() {
    kept_ = false;
    dialer_ = std::make_shared<HopDialer>(
        core_, loop_, client_->stream().get_executor(), plan_.route,
        [self = shared_from_this()](absl::Status result, std::unique_ptr<IoStream> stream,
                                    std::string leftover, size_t hop) {
          self->dialer_.reset();
          // No hop: nothing was sent, the body is unread; the usual path answers.
          if (!result.ok()) return self->End(/*reuse=*/false, /*fallback=*/true);
          self->Connected(std::move(stream), std::move(leftover), hop);
        });
    dialer_->Start();
  }

  void Connected(std::unique_ptr<IoStream> upstream, std::string leftover, size_t hop) {
    ++gen_;
    upstream_ = std::move(upstream);
    hop_ = hop;
    up_buffer_.clear();
    if (!leftover.empty()) {
      auto dest = up_buffer_.prepare(leftover.size());
      std::memcpy(dest.data(), leftover.data(), leftover.size());
      up_buffer_.commit(leftover.size());
    }
    parser_.emplace();
    if (client_->method() == "HEAD") parser_->skip(true);
    RequestReader& reader = client_->reader();
    head_ = plan_.head;
    if (reader.chunked()) {
      chunked_in_ = true;
      head_ += "Transfer-Encoding: chunked\r\n";
    } else if (std::optional<uint64_t> length = reader.content_length(); length && *length > 0) {
      StrAppend(&head_, "Content-Length: ", *length, "\r\n");
    }
    head_ += "\r\n";
    sent_ = SystemClock::Get().Now();
    Progress();
    client_->reader().StreamBody();
    asio::async_write(*upstream_, asio::buffer(head_),
                      [self = shared_from_this(), gen = gen_](beast::error_code ec, size_t) {
                        if (self->ended_ || gen != self->gen_) return;
                        if (ec) return self->UpstreamFailed(ec);
                        self->Progress();
                        if (self->client_->expects_continue()) return self->Continue();
                        self->ReadAnswer();
                        self->PumpRequest();
                      });
  }

  // The client waits for `100 Continue` before it sends the body (written before anything of
  // the answer can be).
  void Continue() {
    static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
    asio::async_write(client_->stream(), asio::buffer(kContinue.data(), kContinue.size()),
                      [self = shared_from_this()](beast::error_code ec, size_t) {
                        if (self->ended_) return;
                        if (ec) return self->Abort();
                        self->ReadAnswer();
                        self->PumpRequest();
                      });
  }

  // The request's body, as it is read, to the hop.
  void PumpRequest() {
    if (ended_ || failing_ || request_done_) return;
    RequestReader& reader = client_->reader();
    if (TakePiece()) return WriteUp();
    const RequestReader::Step step = reader.Feed(client_->buffer());
    // What the buffer held may have been body: it goes first.
    if ((step == RequestReader::Step::kNeedMore || step == RequestReader::Step::kHead) &&
        TakePiece()) {
      return WriteUp();
    }
    switch (step) {
      case RequestReader::Step::kHead:  // not again within one request
      case RequestReader::Step::kNeedMore: {
        beast::flat_buffer& buffer = client_->buffer();
        client_->stream().async_read_some(
            buffer.prepare(64 * 1024), [self = shared_from_this()](beast::error_code ec, size_t n) {
              if (self->ended_) return;
              if (ec) return self->Abort();  // the client left: so does the exchange
              self->client_->buffer().commit(n);
              self->Progress();
              self->PumpRequest();
            });
        return;
      }
      case RequestReader::Step::kDone:
        TakePiece();
        if (chunked_in_) out_piece_ += "0\r\n\r\n";
        request_done_ = true;
        if (out_piece_.empty()) {
          RequestSent();
          return MaybeFinish();
        }
        return WriteUp();
      case RequestReader::Step::kRefused: {
        const RequestRefusal& r = reader.refusal();
        core_->rejections->Note(r.reason, "", r.message);
        if (!answer_started_) return Fail(r.status, r.message);
        return Abort();
      }
    }
  }

  // The body's bytes parsed so far into out_piece_ (as a chunk if it goes chunked); false if
  // none. The buffers keep their capacity from piece to piece.
  bool TakePiece() {
    out_piece_.clear();
    if (!client_->reader().TakePiece(chunked_in_ ? &piece_ : &out_piece_)) return false;
    consumed_body_ = true;
    if (chunked_in_) {
      AppendChunk(&out_piece_, piece_);
      piece_.clear();
    }
    return true;
  }

  void WriteUp() {
    asio::async_write(*upstream_, asio::buffer(out_piece_),
                      [self = shared_from_this(), gen = gen_](beast::error_code ec, size_t) {
                        if (self->ended_ || gen != self->gen_) return;
                        if (ec) return self->UpstreamFailed(ec);
                        if (self->request_done_) {
                          self->RequestSent();
                          return self->MaybeFinish();
                        }
                        self->Progress();
                        self->PumpRequest();
                      });
  }

  // The answer, as it arrives, to the client: whatever the buffer holds is parsed and written in
  // one write (a small answer's head, body and end together), then more is read.
  void ReadAnswer() {
    if (ended_ || failing_) return;
    out_answer_.clear();
    while (!parser_->is_done() && up_buffer_.size() > 0) {
      beast::error_code ec;
      const size_t used = parser_->put(up_buffer_.data(), ec);
      up_buffer_.consume(used);
      if (ec == http::error::need_more) break;
      if (ec) return UpstreamBad(ec);
      if (parser_->is_header_done() && !answer_started_) {
        if (parser_->status >= 100 && parser_->status < 200) {
          parser_.emplace();  // an interim answer: the final one follows
          if (client_->method() == "HEAD") parser_->skip(true);
          continue;
        }
        AppendAnswerHead();
      }
      if (used == 0) break;
    }
    if (parser_->is_header_done() && !answer_started_ && parser_->status >= 200) {
      AppendAnswerHead();
    }
    if (answer_started_ && !parser_->body.empty()) {
      if (chunked_out_) {
        AppendChunk(&out_answer_, parser_->body);
      } else {
        out_answer_.append(parser_->body);
      }
      parser_->body.clear();  // its capacity stays, for the next piece
    }
    const bool complete = answer_started_ && parser_->is_done();
    if (complete && chunked_out_) out_answer_ += "0\r\n\r\n";
    if (!out_answer_.empty()) {
      return asio::async_write(client_->stream(), asio::buffer(out_answer_),
                               [self = shared_from_this(), complete](beast::error_code ec, size_t) {
                                 if (self->ended_) return;
                                 if (ec) return self->Abort();
                                 self->Progress();
                                 if (!complete) return self->ReadAnswer();
                                 self->answer_done_ = true;
                                 self->MaybeFinish();
                               });
    }
    if (complete) {
      answer_done_ = true;
      return MaybeFinish();
    }
    upstream_->async_read_some(
        up_buffer_.prepare(kRelayBufferBytes),
        [self = shared_from_this(), gen = gen_](beast::error_code ec, size_t n) {
          if (self->ended_ || gen != self->gen_) return;
          if (ec) {
            if (Ended(ec) && self->parser_->is_header_done() && self->parser_->need_eof()) {
              beast::error_code eof;
              self->parser_->put_eof(eof);
              self->reusable_up_ = false;
              return self->ReadAnswer();
            }
            return self->UpstreamFailed(ec);
          }
          self->up_buffer_.commit(n);
          self->Progress();
          self->ReadAnswer();
        });
  }

  // The answer's head, as the client gets it, into out_answer_.
  void AppendAnswerHead() {
    answer_started_ = true;
    AnswerParser& p = *parser_;
    if (plan_.on_done && !core_->stopped.load(std::memory_order_relaxed)) {
      plan_.on_done(hop_, absl::OkStatus(), p.status, SystemClock::Get().Now() - sent_);
      told_ = true;
    }
    const bool no_body = client_->method() == "HEAD" || p.status == 204 || p.status == 304;
    const bool length_known = !p.chunked() && p.content_length().has_value();
    // Chunked only to an HTTP/1.1 client that stays; to others an answer of unknown length ends
    // with the connection.
    chunked_out_ =
        !no_body && !length_known && client_->keep_alive() && client_->reader().version() >= 11;
    // So does one whose request's body was not all read when the answer came, and every one
    // while the server stops.
    close_client_ = !client_->keep_alive() || (!no_body && !length_known && !chunked_out_) ||
                    !request_done_ || client_->draining();
    StrAppend(&out_answer_, "HTTP/1.1 ", p.status, " ",
              p.reason.empty() ? HttpReason(p.status) : p.reason, "\r\n");
    for (const auto& [name, value] : p.fields) {
      std::string lower(name);
      for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (lower == "content-length") {
        if (no_body || length_known) StrAppend(&out_answer_, "Content-Length: ", value, "\r\n");
        continue;
      }
      if (plan_.keep_field && plan_.keep_field(lower)) {
        StrAppend(&out_answer_, name, ": ", value, "\r\n");
      }
    }
    StrAppend(&out_answer_, "Hivemesh-Served-By: ", plan_.served_by[hop_], "\r\n");
    if (chunked_out_) out_answer_ += "Transfer-Encoding: chunked\r\n";
    if (close_client_) out_answer_ += "Connection: close\r\n";
    out_answer_ += "\r\n";
  }

  void MaybeFinish() {
    if (ended_ || !answer_done_) return;
    if (!request_done_) {
      // The answer came before the body was read: the rest is not read; the connection closes.
      return End(/*reuse=*/false, /*fallback=*/false);
    }
    // Kept only when nothing is under way on it: the whole request written, the whole answer
    // read.
    if (reusable_up_ && request_sent_ && parser_->keep_alive() && up_buffer_.size() == 0 &&
        !core_->stopped.load(std::memory_order_relaxed)) {
      Core::Loop& loop = core_->loops[static_cast<size_t>(loop_)];
      SweepIdleHops(loop);
      std::vector<KeptHop>& kept = loop.idle_hops[HopKey(plan_.route.hops[hop_])];
      if (kept.size() < kMaxIdlePerHop && loop.idle_hop_count < kMaxIdlePerLoop) {
        kept.push_back(KeptHop{std::move(upstream_), std::chrono::steady_clock::now()});
        ++loop.idle_hop_count;
      }
    }
    End(/*reuse=*/!close_client_, /*fallback=*/false);
  }

  // The hop failed before the exchange was over.
  void UpstreamFailed(const beast::error_code& ec) {
    if (ended_ || failing_) return;
    if (!told_ && plan_.on_done && !core_->stopped.load(std::memory_order_relaxed)) {
      told_ = true;
      plan_.on_done(hop_, absl::UnavailableError(ec.message()), 0,
                    SystemClock::Get().Now() - sent_);
    }
    if (answer_started_) return Abort();
    // A kept connection the hop had closed, for a request whose body is not read yet: nothing of
    // it reached anyone; dial afresh.
    if (timed_out_) return Fail(504, StrCat(plan_.served_by[hop_], " did not answer in time"));
    if (kept_ && request_done_ && !consumed_body_) {
      // Closed now, destroyed with this exchange: an operation of its may still be queued.
      upstream_->Close();
      retired_.push_back(std::move(upstream_));
      told_ = false;
      request_done_ = false;
      request_sent_ = false;
      return Dial();
    }
    // An idempotent request without a body may go the usual way (which tries it again and
    // waits for an endpoint): nothing of it was written to the client.
    const std::string_view method = client_->method();
    if (!consumed_body_ && (method == "GET" || method == "HEAD") && !client_->reader().chunked() &&
        client_->reader().content_length().value_or(0) == 0) {
      return End(/*reuse=*/false, /*fallback=*/true);
    }
    Fail(502, StrCat(plan_.served_by[hop_], " failed: ", ec.message()));
  }

  void UpstreamBad(const beast::error_code& ec) {
    if (ended_ || failing_) return;
    if (answer_started_) return Abort();
    reusable_up_ = false;
    Fail(502, StrCat(plan_.served_by[hop_], " answered what is not HTTP/1.1: ", ec.message()));
  }

  // An error answer, and the connection closes (the request's body may be unread).
  void Fail(int status, std::string_view message) {
    if (ended_ || failing_) return;
    failing_ = true;
    told_ = true;  // what fails now is this exchange's, not the hop's
    if (upstream_) upstream_->Close();
    std::string body = ErrorJson(message);
    out_answer_ = StrCat("HTTP/1.1 ", status, " ", HttpReason(status),
                         "\r\nContent-Type: application/json\r\nContent-Length: ", body.size(),
                         "\r\nConnection: close\r\n\r\n", body);
    answer_started_ = true;
    asio::async_write(client_->stream(), asio::buffer(out_answer_),
                      [self = shared_from_this()](beast::error_code, size_t) {
                        self->End(/*reuse=*/false, /*fallback=*/false);
                      });
  }

  // The exchange ends and the client's connection closes (while an error answer is being
  // written, once it is).
  void Abort() {
    if (failing_) return;
    End(/*reuse=*/false, /*fallback=*/false);
  }

  // Bytes moved: the next must within body_timeout; once the request is sent, its answer's head
  // within the plan's timeout (Connection's deadline: cheap to move, re-armed rarely).
  void Progress() {
    if (!answer_started_ && request_done_) return;  // the head's deadline stands
    client_->SetForwardDeadline(core_->options.body_timeout);
  }
  void RequestSent() {
    request_sent_ = true;
    if (!answer_started_) client_->SetForwardDeadline(plan_.timeout);
  }

  void End(bool reuse, bool fallback) {
    if (ended_) return;
    ended_ = true;
    if (dialer_) dialer_->Cancel();
    if (upstream_) upstream_->Close();
    if (core_->stopped.load(std::memory_order_relaxed)) {
      client_->stream().Close();
      return;
    }
    client_->ForwardEnded(reuse, fallback);
  }

  const std::shared_ptr<ForwardClient> client_;
  const ForwardPlan plan_;
  const std::shared_ptr<Core> core_;
  const int loop_;
  std::shared_ptr<HopDialer> dialer_;
  std::unique_ptr<IoStream> upstream_;
  std::vector<std::unique_ptr<IoStream>> retired_;  // closed hop connections, kept till the end
  beast::flat_buffer up_buffer_;
  std::optional<AnswerParser> parser_;
  size_t hop_ = 0;
  std::string head_;        // the request's head, as sent
  std::string piece_;       // body bytes taken, before they are framed as a chunk
  std::string out_piece_;   // body bytes being written to the hop
  std::string out_answer_;  // answer bytes being written to the client
  SteadyTime sent_;
  bool kept_ = false;            // the hop's connection was kept from an earlier exchange
  bool chunked_in_ = false;      // the request's body goes chunked
  bool chunked_out_ = false;     // the answer's body goes chunked to the client
  bool consumed_body_ = false;   // some of the request's body was read and sent on
  bool request_done_ = false;    // the request's body has all been read from the client
  bool request_sent_ = false;    // ... and written to the hop
  bool answer_started_ = false;  // something of an answer was decided for the client
  bool answer_done_ = false;
  bool close_client_ = false;
  bool reusable_up_ = true;
  bool told_ = false;
  bool timed_out_ = false;
  bool failing_ = false;
  bool ended_ = false;
  uint64_t gen_ = 0;  // which hop connection the pending handlers belong to
};

void StartForward(std::shared_ptr<ForwardClient> client, ForwardPlan plan,
                  std::shared_ptr<Core> core, int loop) {
  auto forward = std::make_shared<Forward>(client, std::move(plan), std::move(core), loop);
  client->AttachForward(forward);
  forward->Start();
}

void CloseIdleHops(Core& core, int loop) {
  Core::Loop& l = core.loops[static_cast<size_t>(loop)];
  for (auto& [key, kept] : l.idle_hops) {
    for (KeptHop& k : kept) k.stream->Close();
  }
  l.idle_hops.clear();
  l.idle_hop_count = 0;
}

void StartPassThrough(IoStream client, std::string from_client, std::shared_ptr<Core> core,
                      int loop, ConnectionLimits::Slot slot, RelayPlan plan) {
  auto relay = std::make_shared<Relay>(std::move(client), std::move(from_client), std::move(core),
                                       loop, std::move(slot), std::move(plan));
  relay->Dial();
}

void StartTunnel(IoStream client, std::string from_client, IoStream workload, std::string to_client,
                 std::shared_ptr<Core> core, int loop, ConnectionLimits::Slot slot) {
  auto relay = std::make_shared<Relay>(std::move(client), std::move(from_client), std::move(core),
                                       loop, std::move(slot), RelayPlan{});
  relay->Begin(std::move(workload), std::move(to_client));
}

std::shared_ptr<Relay> RelayPtr(Relay& relay) { return relay.weak_from_this().lock(); }

void CloseRelay(Relay& relay) { relay.Close(); }

}  // namespace http_internal
}  // namespace hivemesh
