#include "membership/gossip_node.h"

#include <spdlog/spdlog.h>

#include <array>
#include <boost/asio.hpp>
#include <chrono>
#include <mutex>
#include <thread>

#include "base/strings.h"

namespace hivemesh::membership {
namespace {

namespace asio = boost::asio;
using boost::system::error_code;
using tcp = asio::ip::tcp;
using udp = asio::ip::udp;

int64_t UnixMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

SteadyTime Now() { return std::chrono::steady_clock::now(); }

absl::StatusOr<std::pair<asio::ip::address, uint16_t>> ParseHostPort(const std::string& s) {
  const size_t colon = s.rfind(':');
  if (colon == std::string::npos) return absl::InvalidArgumentError("'" + s + "' is not host:port");
  error_code ec;
  const asio::ip::address addr = asio::ip::make_address(s.substr(0, colon), ec);
  if (ec) return absl::InvalidArgumentError("'" + s + "' has no IP address before the port");
  int port = -1;
  try {
    port = std::stoi(s.substr(colon + 1));
  } catch (...) {
  }
  if (port < 0 || port > 65535) return absl::InvalidArgumentError("'" + s + "' has no valid port");
  return std::make_pair(addr, static_cast<uint16_t>(port));
}

std::string Frame(std::string_view packet) {
  std::string out(4, '\0');
  const auto n = static_cast<uint32_t>(packet.size());
  out[0] = static_cast<char>(n >> 24);
  out[1] = static_cast<char>(n >> 16);
  out[2] = static_cast<char>(n >> 8);
  out[3] = static_cast<char>(n);
  out.append(packet);
  return out;
}

uint32_t FrameLength(const std::array<unsigned char, 4>& h) {
  return (uint32_t{h[0]} << 24) | (uint32_t{h[1]} << 16) | (uint32_t{h[2]} << 8) | h[3];
}

class GossipNodeImpl;

// One TCP exchange: a framed request and a framed reply, with a deadline for the whole of it.
struct TcpExchange : std::enable_shared_from_this<TcpExchange> {
  TcpExchange(asio::io_context& ioc) : socket(ioc), deadline(ioc) {}
  tcp::socket socket;
  asio::steady_timer deadline;
  std::array<unsigned char, 4> header{};
  std::string body;
  std::string out;
  std::string peer;
};

class GossipNodeImpl final : public GossipNode {
 public:
  GossipNodeImpl(GossipOptions options, std::string meta, std::string address)
      : options_(std::move(options)),
        address_(std::move(address)),
        udp_(ioc_),
        acceptor_(ioc_),
        timer_(ioc_),
        join_timer_(ioc_),
        envelope_(options_.keyring, RandomBootId()) {
    swim_ = std::make_unique<Swim>(options_.swim, options_.name, address_, std::move(meta),
                                   options_.node_key, RandomBootId(), Now());
  }

  ~GossipNodeImpl() override { Stop(); }

  absl::Status Bind(const asio::ip::address& addr, uint16_t port) {
    error_code ec;
    // UDP and TCP share one port; with port 0 the UDP socket picks it and TCP follows (retried
    // if that port is taken for TCP).
    for (int attempt = 0; attempt < 20; ++attempt) {
      udp_.open(addr.is_v4() ? udp::v4() : udp::v6(), ec);
      if (!ec) udp_.bind(udp::endpoint(addr, port), ec);
      if (ec)
        return absl::UnavailableError(
            StrCat("cannot bind gossip UDP on ", addr.to_string(), ":", port, ": ", ec.message()));
      const uint16_t chosen = udp_.local_endpoint().port();
      acceptor_.open(addr.is_v4() ? tcp::v4() : tcp::v6(), ec);
      if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
      if (!ec) acceptor_.bind(tcp::endpoint(addr, chosen), ec);
      if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
      if (!ec) {
        address_ = StrCat(addr.to_string(), ":", chosen);
        return absl::OkStatus();
      }
      error_code ignored;
      acceptor_.close(ignored);
      udp_.close(ignored);
      if (port != 0) break;
    }
    return absl::UnavailableError(
        StrCat("cannot bind gossip TCP on ", addr.to_string(), ":", port, ": ", ec.message()));
  }

  void ResetSwim(std::string meta) {
    swim_ = std::make_unique<Swim>(options_.swim, options_.name, address_, std::move(meta),
                                   options_.node_key, RandomBootId(), Now());
    swim_->SetLoadSequenceBase(static_cast<uint64_t>(UnixMillis()));
  }

  std::string address() const override { return address_; }

  void Start(EventCallback on_event) override {
    on_event_ = std::move(on_event);
    Receive();
    Accept();
    asio::post(ioc_, [this] {
      if (!options_.join.empty()) Join();
      Reschedule();
    });
    thread_ = std::thread([this] { ioc_.run(); });
  }

  void LeaveAndStop(std::chrono::milliseconds timeout) override {
    if (!thread_.joinable()) return;
    asio::post(ioc_, [this] { Process(Call([&](Swim& s) { return s.Leave(Now()); })); });
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (swim_->LeaveDone()) break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    Stop();
  }

  void Stop() override {
    if (!thread_.joinable()) return;
    ioc_.stop();
    thread_.join();
  }

  void UpdateMeta(std::string meta) override {
    asio::post(ioc_, [this, meta = std::move(meta)]() mutable {
      Process(Call([&](Swim& s) { return s.UpdateMeta(std::move(meta), Now()); }));
    });
  }

  void SetLoad(std::string payload) override {
    std::lock_guard<std::mutex> lock(mu_);
    swim_->SetLoad(std::move(payload), Now());
  }

  std::vector<MemberInfo> Members() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return swim_->Members();
  }

  GossipStats Stats() const override {
    std::lock_guard<std::mutex> lock(mu_);
    GossipStats s = counters_;
    s.swim = swim_->stats();
    s.drops = envelope_.drops();
    return s;
  }

  // A node given no seeds started the mesh: it counts as joined.
  bool joined() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return options_.join.empty() || swim_->joined();
  }

 private:
  template <typename Fn>
  Output Call(Fn&& fn) {
    std::lock_guard<std::mutex> lock(mu_);
    return fn(*swim_);
  }

  // Sends what the state machine produced and reports its events. Runs on the gossip thread.
  void Process(Output out) {
    for (Outgoing& p : out.packets) {
      if (p.channel == Channel::kUdp) {
        SendUdp(p.to, p.packet);
      } else {
        SendTcp(p.to, p.packet);
      }
    }
    for (const MemberEvent& e : out.events) {
      spdlog::info("member {} {}", e.node, EventTypeName(e.type));
      if (on_event_) on_event_(e);
    }
    Reschedule();
  }

  void Reschedule() {
    SteadyTime next;
    {
      std::lock_guard<std::mutex> lock(mu_);
      next = swim_->NextTimer();
    }
    timer_.expires_at(next);
    timer_.async_wait([this](error_code ec) {
      if (ec) return;  // cancelled by a newer schedule
      Process(Call([](Swim& s) { return s.Tick(Now()); }));
    });
  }

  void Join() {
    Process(Call([&](Swim& s) { return s.Join(options_.join, Now()); }));
    join_timer_.expires_after(options_.join_retry);
    join_timer_.async_wait([this](error_code ec) {
      if (ec || joined()) return;
      spdlog::warn("no seed answered yet ({}); retrying", fmt::join(options_.join, ", "));
      Join();
    });
  }

  std::string Wrap(std::string_view packet) {
    std::lock_guard<std::mutex> lock(mu_);
    return envelope_.Wrap(packet, UnixMillis());
  }

  std::optional<std::string> Unwrap(std::string_view packet, size_t limit) {
    std::lock_guard<std::mutex> lock(mu_);
    DropReason why;
    absl::StatusOr<std::string> plain = envelope_.Unwrap(packet, UnixMillis(), &why, limit);
    if (!plain.ok()) return std::nullopt;
    return std::move(*plain);
  }

  void CountTcpIn(size_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    counters_.tcp_bytes_in += bytes;
  }

  void SendUdp(const std::string& to, const std::string& packet) {
    absl::StatusOr<std::pair<asio::ip::address, uint16_t>> dest = ParseHostPort(to);
    if (!dest.ok()) return;
    auto wire = std::make_shared<std::string>(Wrap(packet));
    {
      std::lock_guard<std::mutex> lock(mu_);
      counters_.udp_bytes_out += wire->size();
      ++counters_.udp_packets_out;
    }
    udp_.async_send_to(asio::buffer(*wire), udp::endpoint(dest->first, dest->second),
                       [wire](error_code, size_t) {});
  }

  void Receive() {
    udp_.async_receive_from(asio::buffer(udp_buf_), udp_from_, [this](error_code ec, size_t n) {
      if (ec == asio::error::operation_aborted) return;
      if (!ec) {
        {
          std::lock_guard<std::mutex> lock(mu_);
          ++counters_.udp_packets_in;
          counters_.udp_bytes_in += n;
        }
        std::optional<std::string> plain =
            Unwrap(std::string_view(udp_buf_.data(), n), udp_buf_.size());
        if (plain) {
          const std::string from = StrCat(udp_from_.address().to_string(), ":", udp_from_.port());
          Process(
              Call([&](Swim& s) { return s.HandlePacket(from, *plain, Channel::kUdp, Now()); }));
        }
      }
      Receive();
    });
  }

  void Accept() {
    acceptor_.async_accept([this](error_code ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted) return;
      if (!ec) ServeStream(std::move(socket));
      Accept();
    });
  }

  void ArmDeadline(const std::shared_ptr<TcpExchange>& x) {
    x->deadline.expires_after(options_.swim.tcp_timeout);
    x->deadline.async_wait([x](error_code ec) {
      if (ec) return;
      error_code ignored;
      x->socket.close(ignored);
    });
  }

  // A peer's exchange: read its frame, answer on the same connection.
  void ServeStream(tcp::socket socket) {
    auto x = std::make_shared<TcpExchange>(ioc_);
    x->socket = std::move(socket);
    error_code ec;
    const tcp::endpoint remote = x->socket.remote_endpoint(ec);
    if (ec) return;
    x->peer = StrCat(remote.address().to_string(), ":", remote.port());
    ArmDeadline(x);
    asio::async_read(x->socket, asio::buffer(x->header), [this, x](error_code ec, size_t) {
      if (ec) return;
      const uint32_t len = FrameLength(x->header);
      if (len == 0 || len > options_.max_tcp_frame_bytes) {
        std::lock_guard<std::mutex> lock(mu_);
        DropReason why;
        (void)envelope_.Unwrap(std::string(1, '\0'), UnixMillis(), &why, 0);  // count oversized
        return;
      }
      x->body.resize(len);
      asio::async_read(x->socket, asio::buffer(x->body), [this, x](error_code ec, size_t) {
        if (ec) return;
        CountTcpIn(x->header.size() + x->body.size());
        std::optional<std::string> plain = Unwrap(x->body, options_.max_tcp_frame_bytes);
        if (!plain) return;
        Output out = Call([&](Swim& s) { return s.HandleStream(x->peer, *plain, Now()); });
        std::optional<std::string> reply = std::move(out.reply);
        out.reply.reset();
        Process(std::move(out));
        if (!reply) return;
        x->out = Frame(Wrap(*reply));
        {
          std::lock_guard<std::mutex> lock(mu_);
          counters_.tcp_bytes_out += x->out.size();
        }
        asio::async_write(x->socket, asio::buffer(x->out), [x](error_code, size_t) {
          error_code ignored;
          x->socket.shutdown(tcp::socket::shutdown_both, ignored);
          x->deadline.cancel();
        });
      });
    });
  }

  // Our exchange: connect, send a frame, read the reply frame into the state machine.
  void SendTcp(const std::string& to, const std::string& packet) {
    absl::StatusOr<std::pair<asio::ip::address, uint16_t>> dest = ParseHostPort(to);
    if (!dest.ok()) return;
    auto x = std::make_shared<TcpExchange>(ioc_);
    x->peer = to;
    x->out = Frame(Wrap(packet));
    {
      std::lock_guard<std::mutex> lock(mu_);
      counters_.tcp_bytes_out += x->out.size();
    }
    ArmDeadline(x);
    auto fail = [this, x] {
      std::lock_guard<std::mutex> lock(mu_);
      ++counters_.tcp_exchanges_failed;
      x->deadline.cancel();
    };
    x->socket.async_connect(tcp::endpoint(dest->first, dest->second), [this, x,
                                                                       fail](error_code ec) {
      if (ec) return fail();
      asio::async_write(x->socket, asio::buffer(x->out), [this, x, fail](error_code ec, size_t) {
        if (ec) return fail();
        asio::async_read(
            x->socket, asio::buffer(x->header), [this, x, fail](error_code ec, size_t) {
              if (ec) return fail();
              const uint32_t len = FrameLength(x->header);
              if (len == 0 || len > options_.max_tcp_frame_bytes) return fail();
              x->body.resize(len);
              asio::async_read(x->socket, asio::buffer(x->body),
                               [this, x, fail](error_code ec, size_t) {
                                 if (ec) return fail();
                                 x->deadline.cancel();
                                 CountTcpIn(x->header.size() + x->body.size());
                                 std::optional<std::string> plain =
                                     Unwrap(x->body, options_.max_tcp_frame_bytes);
                                 if (!plain) return;
                                 Process(Call([&](Swim& s) {
                                   return s.HandlePacket(x->peer, *plain, Channel::kTcp, Now());
                                 }));
                               });
            });
      });
    });
  }

  GossipOptions options_;
  std::string address_;
  asio::io_context ioc_;
  udp::socket udp_;
  tcp::acceptor acceptor_;
  asio::steady_timer timer_;
  asio::steady_timer join_timer_;
  std::array<char, 65536> udp_buf_{};
  udp::endpoint udp_from_;
  std::thread thread_;
  EventCallback on_event_;

  // The state machine and the envelope are touched by the gossip thread and by readers
  // (Members, Stats, SetLoad) from other threads.
  mutable std::mutex mu_;
  std::unique_ptr<Swim> swim_;
  Envelope envelope_;
  GossipStats counters_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<GossipNode>> GossipNode::Create(GossipOptions options,
                                                               std::string meta) {
  absl::Status valid = options.swim.Validate();
  if (!valid.ok()) return valid;
  if (options.name.empty()) return absl::InvalidArgumentError("gossip: the node needs a name");
  absl::StatusOr<std::pair<asio::ip::address, uint16_t>> bind = ParseHostPort(options.bind_address);
  if (!bind.ok())
    return absl::InvalidArgumentError(StrCat("gossip_address: ", MessageOf(bind.status())));
  for (const std::string& seed : options.join) {
    absl::StatusOr<std::pair<asio::ip::address, uint16_t>> s = ParseHostPort(seed);
    if (!s.ok()) return absl::InvalidArgumentError(StrCat("join: ", MessageOf(s.status())));
  }
  auto node = std::make_unique<GossipNodeImpl>(std::move(options), meta, "");
  absl::Status bound = node->Bind(bind->first, bind->second);
  if (!bound.ok()) return bound;
  node->ResetSwim(std::move(meta));  // now that the address (and port) is known
  return std::unique_ptr<GossipNode>(std::move(node));
}

}  // namespace hivemesh::membership
