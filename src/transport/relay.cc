#include "transport/relay.h"

#include <algorithm>
#include <array>
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
    if (next_hop_ >= plan_.hops.size()) {
      return End(last_failure_.ok() ? absl::UnavailableError("no endpoint to relay to")
                                    : last_failure_);
    }
    const RelayHop& hop = plan_.hops[next_hop_];
    tcp::endpoint endpoint;
    if (!ParseEndpoint(hop.address, &endpoint)) {
      return HopFailed(absl::InvalidArgumentError(StrCat("'", hop.address, "' is not ip:port")));
    }
    attempt_started_ = SystemClock::Get().Now();
    server_.emplace(client_.get_executor());
    ArmDialDeadline();
    server_->socket().async_connect(endpoint, [self = shared_from_this()](beast::error_code ec) {
      if (ec) return self->HopFailed(self->DialError("connect", ec));
      self->server_->socket().set_option(tcp::no_delay(true), ec);
      const RelayHop& h = self->plan_.hops[self->next_hop_];
      if (h.peer_node.empty()) return self->Connected({});
      self->Secure();
    });
  }

  // The serving end's: `server` is connected to the workload; `to_client` (the 101) goes first.
  void Begin(IoStream server, std::string to_client) {
    server_.emplace(std::move(server));
    Connected(std::move(to_client));
  }

  void Close() { End(absl::CancelledError("the server stopped")); }

 private:
  struct Direction {
    std::string initial;  // written before the first read
    std::unique_ptr<char[]> buffer;
    bool ended = false;  // its reader ended its sending, and the end was passed on
  };

  void ArmDialDeadline() {
    timer_.expires_after(core_->options.header_timeout);
    timer_.async_wait([weak = weak_from_this(), hop = next_hop_](beast::error_code ec) {
      auto self = weak.lock();
      if (ec || self == nullptr || self->relaying_ || self->next_hop_ != hop) return;
      self->dial_timed_out_ = true;
      self->server_->Close();  // the pending step fails
    });
  }

  absl::Status DialError(std::string_view step, const beast::error_code& ec) {
    const RelayHop& hop = plan_.hops[next_hop_];
    if (dial_timed_out_) {
      return absl::DeadlineExceededError(StrCat(step, " to ", hop.address, " took over ",
                                                core_->options.header_timeout.count(), " ms"));
    }
    if (ec == asio::error::connection_refused) {
      return absl::UnavailableError(StrCat("connection refused by ", hop.address));
    }
    return absl::UnavailableError(StrCat(step, " to ", hop.address, ": ", ec.message()));
  }

  void HopFailed(absl::Status why) {
    if (ended_) return;
    const RelayHop& hop = plan_.hops[next_hop_];
    if (plan_.on_attempt) plan_.on_attempt(hop, why, SystemClock::Get().Now() - attempt_started_);
    last_failure_ = std::move(why);
    if (server_) server_->Close();
    server_.reset();
    dial_timed_out_ = false;
    ++next_hop_;
    if (core_->stopped.load(std::memory_order_relaxed)) return End(absl::CancelledError("stopped"));
    Dial();
  }

  // To another node: TLS (checked against the hop's member) when the server has tunnel TLS,
  // then the upgrade request.
  void Secure() {
    const std::shared_ptr<TlsSettings>& tls = core_->options.tunnel_tls;
    if (tls == nullptr) return Upgrade();
    const std::shared_ptr<ssl_ctx_st> context = tls->client();
    if (context == nullptr) {
      return HopFailed(absl::UnavailableError("this node has no certificate to present yet"));
    }
    server_->StartTls(context.get());
    server_->async_handshake(
        asio::ssl::stream_base::client, [self = shared_from_this()](beast::error_code ec) {
          if (ec) return self->HopFailed(self->DialError("TLS handshake", ec));
          const RelayHop& hop = self->plan_.hops[self->next_hop_];
          absl::StatusOr<std::string> who = self->core_->options.tunnel_tls->Check(
              self->server_->PeerCertificates(), hop.peer_node);
          if (!who.ok()) {
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
    asio::async_write(*server_, asio::buffer(head_),
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
    server_->async_read_some(
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

  // The other end is reached: bytes flow both ways from now on.
  void Connected(std::string to_client) {
    if (ended_) return;
    if (!plan_.hops.empty() && next_hop_ < plan_.hops.size() && plan_.on_attempt) {
      plan_.on_attempt(plan_.hops[next_hop_], absl::OkStatus(),
                       SystemClock::Get().Now() - attempt_started_);
    }
    relaying_ = true;
    head_.clear();
    head_.shrink_to_fit();
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
                          if (ec) return self->End(self->Broken(ec));
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
                                return self->End(self->Broken(ec));
                              }
                              self->last_activity_ = std::chrono::steady_clock::now();
                              asio::async_write(
                                  self->To(d), asio::buffer(self->dir_[d].buffer.get(), n),
                                  [self, d](beast::error_code wec, size_t) {
                                    if (wec) return self->End(self->Broken(wec));
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
  asio::steady_timer timer_;        // the dial's deadline, then the idle watch
  std::array<Direction, 2> dir_;    // [0]: client to server, [1]: server to client
  std::string head_;                // the tunnel request, then its answer as it arrives
  size_t next_hop_ = 0;
  absl::Status last_failure_;
  SteadyTime attempt_started_;
  std::chrono::steady_clock::time_point last_activity_;
  bool dial_timed_out_ = false;
  bool relaying_ = false;
  bool ended_ = false;
};

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
