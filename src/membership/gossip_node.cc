#include "membership/gossip_node.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <future>
#include <thread>

#include "base/status_macros.h"

#include "membership/gossip_node_internal.h"

namespace hivemesh::membership {
namespace gossip_internal {

int64_t UnixMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

absl::StatusOr<std::pair<asio::ip::address, uint16_t>> ParseHostPort(const std::string& s) {
  const size_t colon = s.rfind(':');
  if (colon == std::string::npos) return absl::InvalidArgumentError("'" + s + "' is not host:port");
  error_code ec;
  const asio::ip::address addr = asio::ip::make_address(s.substr(0, colon), ec);
  if (ec) return absl::InvalidArgumentError("'" + s + "' has no IP address before the port");
  const std::optional<uint64_t> port = ParseUint(std::string_view(s).substr(colon + 1));
  if (!port || *port > 65535) return absl::InvalidArgumentError("'" + s + "' has no valid port");
  return std::make_pair(addr, static_cast<uint16_t>(*port));
}

std::string Canonical(const asio::ip::address& addr, uint16_t port) {
  return StrCat(addr.to_string(), ":", port);
}

absl::Status GossipNodeImpl::Bind(const asio::ip::address& addr, uint16_t port) {
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
      address_ = Canonical(addr, chosen);
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

void GossipNodeImpl::ResetSwim(std::string meta) {
  absl::MutexLock lock(&mu_);
  swim_ = std::make_unique<Swim>(options_.swim, options_.name, address_, std::move(meta),
                                 options_.node_key, RandomBootId(), clock_.Now());
  swim_->SetLoadSequenceBase(static_cast<uint64_t>(UnixMillis()));
}

void GossipNodeImpl::Start(EventCallback on_event) {
  on_event_ = std::move(on_event);
  Receive();
  Accept();
  asio::post(ioc_, [this] {
    if (!options_.join.empty()) Join();
    Reschedule();
  });
  thread_ = std::thread([this] { ioc_.run(); });
}

void GossipNodeImpl::LeaveAndStop(std::chrono::milliseconds timeout) {
  if (!thread_.joinable()) return;
  asio::post(ioc_, [this] { Process(Call([&](Swim& s) { return s.Leave(clock_.Now()); })); });
  const SteadyTime deadline = clock_.Now() + timeout;
  {
    absl::MutexLock lock(&mu_);
    // Call() signals changed_ after every step of the state machine.
    while (!swim_->LeaveDone()) {
      if (clock_.WaitUntil(changed_, mu_, deadline)) break;
    }
  }
  // The members watching this node hear a goodbye, not a silent close: a leave, not a crash.
  stopping_.store(true);
  std::promise<void> said;
  asio::post(ioc_, [this, &said] {
    SayGoodbyes();
    said.set_value();
  });
  said.get_future().wait_for(std::chrono::seconds(1));
  Stop();
}

void GossipNodeImpl::Stop() {
  if (!thread_.joinable()) return;
  ioc_.stop();
  thread_.join();
}

void GossipNodeImpl::UpdateMeta(std::string meta) {
  asio::post(ioc_, [this, meta = std::move(meta)]() mutable {
    Process(Call([&](Swim& s) { return s.UpdateMeta(std::move(meta), clock_.Now()); }));
  });
}

void GossipNodeImpl::PushSelfToAll() {
  asio::post(ioc_,
             [this] { Process(Call([&](Swim& s) { return s.PushSelfToAll(clock_.Now()); })); });
}

void GossipNodeImpl::RevokeKey(std::string key) {
  asio::post(ioc_, [this, key = std::move(key)]() mutable {
    Process(Call([&](Swim& s) { return s.RevokeKey(std::move(key), clock_.Now()); }));
  });
}

absl::Status GossipNodeImpl::SetKeyring(Keyring keyring) {
  if (!encrypted_) {
    return absl::FailedPreconditionError("this node's gossip is not encrypted: it has no keys");
  }
  absl::MutexLock lock(&mu_);
  envelope_.SetKeyring(std::move(keyring));
  return absl::OkStatus();
}

void GossipNodeImpl::SetLoad(std::string payload) {
  absl::MutexLock lock(&mu_);
  swim_->SetLoad(std::move(payload), clock_.Now());
}

std::optional<MemberInfo> GossipNodeImpl::Find(std::string_view name) const {
  absl::MutexLock lock(&mu_);
  return swim_->Find(name);
}

std::vector<MemberInfo> GossipNodeImpl::Members() const {
  absl::MutexLock lock(&mu_);
  return swim_->Members();
}

GossipStats GossipNodeImpl::Stats() const {
  absl::MutexLock lock(&mu_);
  GossipStats s = counters_;
  s.swim = swim_->stats();
  s.drops = envelope_.drops();
  s.drops += drops_;
  s.tcp_connections = static_cast<size_t>(limits_.open());
  s.tcp_buffered_bytes = budget_->used();
  s.watching = watching_.load();
  s.watched_by = watched_by_.load();
  s.alive = static_cast<uint64_t>(swim_->NumAlive());
  return s;
}

bool GossipNodeImpl::joined() const {
  absl::MutexLock lock(&mu_);
  return options_.join.empty() || swim_->joined();
}

absl::Status GossipNodeImpl::join_status() const {
  absl::MutexLock lock(&mu_);
  return join_status_;
}

void GossipNodeImpl::Process(Output out, bool join) {
  for (Outgoing& p : out.packets) {
    if (p.channel == Channel::kUdp) {
      SendUdp(p.to, p.packet);
    } else {
      SendTcp(p.to, std::move(p.packet), join);
    }
  }
  for (const MemberEvent& e : out.events) {
    spdlog::info("member {} {}", e.node, EventTypeName(e.type));
    if (on_event_) on_event_(e);
  }
  if (!stopping_.load()) UpdateWatches(!out.events.empty());
  Reschedule();
}

void GossipNodeImpl::Reschedule() {
  Nanos wait;
  {
    absl::MutexLock lock(&mu_);
    wait = std::max(Nanos(0), swim_->NextTimer() - clock_.Now());
  }
  // The state machine's times are the clock's; the socket loop waits the same span in its own
  // (real) time, then asks the state machine again with the clock's time.
  timer_.expires_after(wait);
  timer_.async_wait([this](error_code ec) {
    if (ec) return;  // cancelled by a newer schedule
    Process(Call([this](Swim& s) { return s.Tick(clock_.Now()); }));
  });
}

void GossipNodeImpl::Join() {
  Process(Call([&](Swim& s) { return s.Join(options_.join, clock_.Now()); }), /*join=*/true);
  join_timer_.expires_after(options_.join_retry);
  join_timer_.async_wait([this](error_code ec) {
    if (ec || joined() || !join_status().ok()) return;
    spdlog::warn("no seed answered yet ({}); retrying", fmt::join(options_.join, ", "));
    Join();
  });
}

void GossipNodeImpl::EncryptionRequired(const std::string& seed) {
  {
    absl::MutexLock lock(&mu_);
    if (!join_status_.ok()) return;
    join_status_ = absl::FailedPreconditionError(
        StrCat("the mesh at ", seed,
               " encrypts its gossip and this node has no gossip keys: refusing to join"));
  }
  join_timer_.cancel();
  const absl::Status status = join_status();
  spdlog::error("{}", MessageOf(status));
  if (options_.on_encryption_required) options_.on_encryption_required(seed);
}

void GossipNodeImpl::Refused(DropReason why, std::string_view peer, std::string_view detail) {
  log_.Warn(static_cast<size_t>(why),
            [&] { return StrCat("gossip ", DropReasonName(why), " from ", peer, ": ", detail); });
}

void GossipNodeImpl::Count(DropReason why) {
  absl::MutexLock lock(&mu_);
  drops_.Add(why);
}

void GossipNodeImpl::SendUdp(const std::string& to, const std::string& packet) {
  absl::StatusOr<std::pair<asio::ip::address, uint16_t>> dest = ParseHostPort(to);
  if (!dest.ok()) return;
  std::shared_ptr<std::string> wire;
  {
    absl::MutexLock lock(&mu_);
    wire = std::make_shared<std::string>(envelope_.Wrap(
        packet, Recipient::Address(Canonical(dest->first, dest->second)), UnixMillis()));
    counters_.udp_bytes_out += wire->size();
    ++counters_.udp_packets_out;
  }
  udp_.async_send_to(asio::buffer(*wire), udp::endpoint(dest->first, dest->second),
                     [wire](error_code, size_t) {});
}

void GossipNodeImpl::Receive() {
  udp_.async_receive_from(asio::buffer(udp_buf_), udp_from_, [this](error_code ec, size_t n) {
    if (ec == asio::error::operation_aborted) return;
    if (!ec) {
      const std::string from = Canonical(udp_from_.address(), udp_from_.port());
      absl::StatusOr<Opened> plain;
      DropReason why = DropReason::kMalformed;
      {
        absl::MutexLock lock(&mu_);
        ++counters_.udp_packets_in;
        counters_.udp_bytes_in += n;
        plain = envelope_.Unwrap(std::string_view(udp_buf_.data(), n), Recipient::Address(address_),
                                 UnixMillis(), &why, udp_buf_.size());
      }
      if (plain.ok()) {
        Process(Call([&](Swim& s) {
          return s.HandlePacket(from, plain->payload, Channel::kUdp, clock_.Now());
        }));
      } else {
        Refused(why, from, MessageOf(plain.status()));
      }
    }
    Receive();
  });
}

}  // namespace gossip_internal

using gossip_internal::GossipNodeImpl;
using gossip_internal::ParseHostPort;

absl::Status GossipOptions::Validate() const {
  HM_RETURN_IF_ERROR(swim.Validate());
  if (name.empty()) return absl::InvalidArgumentError("gossip: the node needs a name");
  if (max_tcp_frame_bytes < 1024) {
    return absl::InvalidArgumentError(StrCat(
        "gossip: max_tcp_frame_bytes must be at least 1024 (got ", max_tcp_frame_bytes, ")"));
  }
  // MemoryBudget keeps max(1/8 of it, 64 KiB) for small frames; the largest frame and the
  // chunk it is read through must fit in the rest.
  const size_t kept = std::max<size_t>(tcp_buffer_bytes / 8, MemoryBudget::kDefaultSmallBytes);
  if (tcp_buffer_bytes < kept || tcp_buffer_bytes - kept < max_tcp_frame_bytes + kMaxRead) {
    return absl::InvalidArgumentError(StrCat(
        "gossip_buffer_mb: ", tcp_buffer_bytes >> 20, " MiB cannot hold the largest gossip frame (",
        max_tcp_frame_bytes >> 20, " MiB) beside the share kept for small frames; raise it"));
  }
  if (max_tcp_connections < 1 || max_tcp_connections_per_source < 1) {
    return absl::InvalidArgumentError(
        "gossip_max_connections and gossip_max_connections_per_source must be at least 1");
  }
  if (tcp_head_timeout.count() < 1) {
    return absl::InvalidArgumentError("gossip_head_timeout_ms must be at least 1");
  }
  if (accept_backoff_min.count() < 1 || accept_backoff_max < accept_backoff_min) {
    return absl::InvalidArgumentError(
        "gossip: accept_backoff_min must be at least 1 ms and at most accept_backoff_max");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<GossipNode>> GossipNode::Create(GossipOptions options,
                                                               std::string meta, Clock& clock) {
  HM_RETURN_IF_ERROR(options.Validate());
  auto bind = ParseHostPort(options.bind_address);
  if (!bind.ok())
    return absl::InvalidArgumentError(StrCat("gossip_address: ", MessageOf(bind.status())));
  if (bind->first.is_unspecified()) {
    return absl::InvalidArgumentError(
        StrCat("gossip_address: ", options.bind_address,
               " is not an address peers can reach: give this node's IP address (the node "
               "advertises it, and sealed gossip names it)"));
  }
  for (const std::string& seed : options.join) {
    auto s = ParseHostPort(seed);
    if (!s.ok()) return absl::InvalidArgumentError(StrCat("join: ", MessageOf(s.status())));
  }
  auto node = std::make_unique<GossipNodeImpl>(std::move(options), meta, "", clock);
  HM_RETURN_IF_ERROR(node->Bind(bind->first, bind->second));
  node->ResetSwim(std::move(meta));  // now that the address (and port) is known
  return std::unique_ptr<GossipNode>(std::move(node));
}

}  // namespace hivemesh::membership
