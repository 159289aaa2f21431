// GossipNodeImpl's TCP exchanges: admitting connections (limits per source and in total, the
// accept loop's back-off), reading frames (FrameReader, deadlines for the head and the whole
// exchange), serving requests and reading replies. See gossip_node.h.
#include <algorithm>
#include <chrono>
#include <cstring>

#include "membership/gossip_node_internal.h"

#include <unistd.h>

namespace hivemesh::membership::gossip_internal {

template <typename Done>
void GossipNodeImpl::ReadFrame(const std::shared_ptr<TcpExchange>& x, Done done) {
  DropReason why = DropReason::kBadFrame;
  absl::StatusOr<std::span<char>> into;
  {
    absl::MutexLock lock(&mu_);
    into = x->reader.NextRead(drops_, &why);
  }
  if (!into.ok()) return done(FrameOutcome{false, into.status(), why, {}});
  asio::async_read(
      x->stream, asio::buffer(into->data(), into->size()),
      [this, x, done = std::move(done)](error_code ec, size_t) mutable {
        if (ec)
          return done(FrameOutcome{true, absl::UnavailableError("connection closed"), {}, {}});
        DropReason why = DropReason::kBadFrame;
        absl::StatusOr<FrameReader::Result> r;
        {
          absl::MutexLock lock(&mu_);
          r = x->reader.Consume(envelope_, x->expect, UnixMillis(), drops_, &why);
        }
        if (!r.ok()) return done(FrameOutcome{false, r.status(), why, {}});
        if (x->reader.head_done()) x->head_deadline.cancel();
        if (*r == FrameReader::Result::kNeedMore) return ReadFrame(x, std::move(done));
        CountTcpIn(x->reader.bytes_read());
        done(FrameOutcome{false, absl::OkStatus(), why, *r});
      });
}

void GossipNodeImpl::CountTcpIn(size_t bytes) {
  absl::MutexLock lock(&mu_);
  counters_.tcp_bytes_in += bytes;
}

void GossipNodeImpl::Finish(const std::shared_ptr<TcpExchange>& x) {
  x->done = true;
  error_code ignored;
  x->deadline.cancel();
  x->head_deadline.cancel();
  x->stream.socket().close(ignored);
  x->slot.Release();
}

void GossipNodeImpl::ArmDeadline(const std::shared_ptr<TcpExchange>& x, asio::steady_timer& timer,
                                 std::chrono::milliseconds after, const char* what) {
  timer.expires_after(after);
  timer.async_wait([this, x, after, what](error_code ec) {
    if (ec || x->done) return;
    if (x->served) {
      Count(DropReason::kTimeout);
      Refused(DropReason::kTimeout, x->peer,
              StrCat(what, " did not complete within ", after.count(), " ms; closed"));
      return Finish(x);
    }
    Failed(x);  // our own exchange: a slow or gone peer, not hostile input
  });
}

void GossipNodeImpl::Accept() {
  acceptor_.async_accept([this](error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted) return;
    if (ec) {
      // Out of descriptors (or another failure that may persist): retrying at once would spin
      // as long as connections wait in the backlog. Wait, longer each time.
      Count(DropReason::kAcceptFailed);
      const std::chrono::milliseconds wait = accept_backoff_;
      log_.Warn(static_cast<size_t>(DropReason::kAcceptFailed), [&] {
        // strerror, not ec.message(): accept() fails with an errno, and a virtual call that
        // UndefinedBehaviorSanitizer has not seen yet needs a pipe to check, which it cannot
        // open with no descriptor left (a test build would report a false type error).
        return StrCat("gossip accept failed: ", std::strerror(ec.value()), "; accepting again in ",
                      wait.count(), " ms");
      });
      accept_backoff_ = std::min(2 * accept_backoff_, options_.accept_backoff_max);
      accept_timer_.expires_after(wait);
      accept_timer_.async_wait([this](error_code ec) {
        if (!ec) Accept();
      });
      return;
    }
    accept_backoff_ = options_.accept_backoff_min;
    Admit(std::move(socket));
    Accept();
  });
}

void GossipNodeImpl::Admit(tcp::socket socket) {
  error_code ec;
  const tcp::endpoint remote = socket.remote_endpoint(ec);
  if (ec) return;  // already gone; the socket closes as it goes out of scope
  const std::string peer = Canonical(remote.address(), remote.port());
  Rejection refused{};
  std::optional<ConnectionLimits::Slot> slot =
      limits_.Admit(SourceKeyOf(remote.address()), &refused);
  if (!slot) {
    const bool total = refused == Rejection::kConnectionLimit;
    const DropReason why =
        total ? DropReason::kConnectionLimit : DropReason::kSourceConnectionLimit;
    Count(why);
    Refused(why, peer,
            total ? StrCat("the node has ", limits_.open(),
                           " gossip connections open, its limit (gossip_max_connections); closed")
                  : StrCat(remote.address().to_string(), " has ", limits_.max_per_source(),
                           " gossip connections open, the limit per source "
                           "(gossip_max_connections_per_source); closed"));
    return;
  }
  absl::StatusOr<MemoryBudget::Reservation> budget = budget_->Reserve(0);
  auto x = std::make_shared<TcpExchange>(
      ioc_, options_.max_tcp_frame_bytes,
      budget.ok() ? *std::move(budget) : MemoryBudget::Reservation(), Recipient::Address(address_));
  x->stream = IoStream(std::move(socket));
  x->served = true;
  x->slot = *std::move(slot);
  x->peer = peer;
  ArmDeadline(x, x->deadline, options_.swim.tcp_timeout, "the exchange");
  ArmDeadline(x, x->head_deadline, std::min(options_.tcp_head_timeout, options_.swim.tcp_timeout),
              "the request's head");
  if (!options_.on_tls_connection && options_.tls == nullptr) {
    return ReadFrame(x, [this, x](FrameOutcome o) { Serve(x, std::move(o)); });
  }
  // Gossip frames start with 'H', gossip over TLS with kTlsExchangeByte, a join's TLS handshake
  // with 0x16. Look at the first byte, leaving it.
  x->stream.socket().async_wait(tcp::socket::wait_read, [this, x](error_code ec) {
    if (ec || x->done) return Finish(x);
    unsigned char first = 0;
    error_code peek_ec;
    const size_t n =
        x->stream.socket().receive(asio::buffer(&first, 1), tcp::socket::message_peek, peek_ec);
    if (peek_ec || n == 0) return Finish(x);
    if (first == kTlsExchangeByte && options_.tls != nullptr) return ServeTls(x);
    if (first != 0x16 || !options_.on_tls_connection) {
      return ReadFrame(x, [this, x](FrameOutcome o) { Serve(x, std::move(o)); });
    }
    const int fd = dup(x->stream.socket().native_handle());
    Finish(x);
    if (fd >= 0) options_.on_tls_connection(fd, x->peer);
  });
}

namespace {

// What the node's TLS check says of a gossip peer: a member's name, or why it is refused.
absl::StatusOr<std::string> GossipPeer(const TlsSettings& tls, IoStream& stream,
                                       std::string_view expected) {
  absl::StatusOr<std::string> who = tls.Check(stream.PeerCertificates(), expected);
  if (who.ok() && who->find(':') != std::string::npos) {
    return absl::PermissionDeniedError(
        StrCat("'", *who, "' holds a client certificate: only members gossip"));
  }
  return who;
}

}  // namespace

void GossipNodeImpl::ServeTls(const std::shared_ptr<TcpExchange>& x) {
  char first = 0;
  error_code ec;
  x->stream.socket().receive(asio::buffer(&first, 1), 0, ec);  // kTlsExchangeByte, peeked
  const std::shared_ptr<ssl_ctx_st> context = options_.tls->server();
  if (ec || context == nullptr) return Finish(x);
  x->stream.StartTls(context.get());
  // Within the head's deadline, armed at admission: a stalled handshake is cut like a slow head.
  x->stream.async_handshake(asio::ssl::stream_base::server, [this, x](error_code ec) {
    if (x->done) return;
    absl::StatusOr<std::string> who =
        ec ? absl::UnauthenticatedError(StrCat("TLS handshake failed: ", ec.message()))
           : GossipPeer(*options_.tls, x->stream, "");
    if (!who.ok()) {
      Count(DropReason::kUnauthenticated);
      Refused(DropReason::kUnauthenticated, x->peer, StrCat(MessageOf(who.status()), "; closed"));
      return Finish(x);
    }
    ReadFrame(x, [this, x](FrameOutcome o) { Serve(x, std::move(o)); });
  });
}

template <typename Then>
void GossipNodeImpl::SecureThen(const std::shared_ptr<TcpExchange>& x, std::string member,
                                Then then) {
  if (options_.tls == nullptr) return then();
  const std::shared_ptr<ssl_ctx_st> context = options_.tls->client();
  if (context == nullptr) return Failed(x);  // no certificate yet: nothing goes out plain
  static constexpr char kByte = kTlsExchangeByte;
  asio::async_write(
      x->stream.socket(), asio::buffer(&kByte, 1),
      [this, x, context, member = std::move(member), then = std::move(then)](error_code ec,
                                                                             size_t) mutable {
        if (x->done) return;
        if (ec) return Failed(x);
        x->stream.StartTls(context.get());
        if (auto it = tls_sessions_.find(x->peer); it != tls_sessions_.end()) {
          x->stream.Resume(it->second.get());
        }
        x->stream.async_handshake(
            asio::ssl::stream_base::client,
            [this, x, member = std::move(member), then = std::move(then)](error_code ec) mutable {
              if (x->done) return;
              if (ec) return Failed(x);
              {
                absl::MutexLock lock(&mu_);
                ++counters_.tls_handshakes;
                if (SSL_session_reused(x->stream.ssl()) == 1) ++counters_.tls_resumed;
              }
              if (absl::StatusOr<std::string> who = GossipPeer(*options_.tls, x->stream, member);
                  !who.ok()) {
                Refused(
                    DropReason::kUnauthenticated, x->peer,
                    StrCat("the gossip peer's certificate is refused: ", MessageOf(who.status())));
                return Failed(x);
              }
              then();
            });
      });
}

void GossipNodeImpl::Serve(const std::shared_ptr<TcpExchange>& x, FrameOutcome o) {
  if (o.io_error) return Finish(x);
  if (!o.status.ok()) {
    Refused(o.why, x->peer, StrCat(MessageOf(o.status), "; closed"));
    // A frame no key authenticates gets the notice, once: a plaintext or misconfigured peer
    // learns why. Nothing else is ever answered to a refused frame.
    if (o.why == DropReason::kUnauthenticated && encrypted_ && !x->reader.head_done()) {
      x->out = std::string(EncryptionRequiredNotice());
      return WriteAndFinish(x);
    }
    return Finish(x);
  }
  if (o.result == FrameReader::Result::kNotice) {
    Count(DropReason::kBadFrame);
    Refused(DropReason::kBadFrame, x->peer, "a notice sent as a request; closed");
    return Finish(x);
  }
  if (options_.tls != nullptr && !x->stream.tls()) {
    // Sealed with the mesh's keys, but with no certificate to show for it.
    Count(DropReason::kUnauthenticated);
    Refused(DropReason::kUnauthenticated, x->peer,
            "a plain frame: this mesh's gossip TCP is mutual TLS; closed");
    return Finish(x);
  }
  const Opened frame = x->reader.TakeFrame();
  Output out = Call([&](Swim& s) { return s.HandleStream(x->peer, frame.payload, clock_.Now()); });
  std::optional<std::string> reply = std::move(out.reply);
  std::optional<std::string> watched_by = std::move(out.watched_by);
  out.reply.reset();
  out.watched_by.reset();
  Process(std::move(out));
  if (!reply) return Finish(x);
  {
    absl::MutexLock lock(&mu_);
    x->out =
        EncodeFrame(envelope_, *reply, Recipient::Reply(frame.sender, frame.counter), UnixMillis());
    counters_.tcp_bytes_out += x->out.size();
  }
  if (watched_by) {
    x->watch = *std::move(watched_by);
    return ServeWatch(x, std::move(x->out));
  }
  WriteAndFinish(x);
}

void GossipNodeImpl::WriteAndFinish(const std::shared_ptr<TcpExchange>& x) {
  asio::async_write(x->stream, asio::buffer(x->out), [x](error_code, size_t) {
    error_code ignored;
    x->stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    Finish(x);
  });
}

void GossipNodeImpl::SendTcp(const std::string& to, std::string packet, bool join) {
  absl::StatusOr<std::pair<asio::ip::address, uint16_t>> dest = ParseHostPort(to);
  if (!dest.ok()) return;
  absl::StatusOr<MemoryBudget::Reservation> budget = budget_->Reserve(0);
  auto x = std::make_shared<TcpExchange>(
      ioc_, options_.max_tcp_frame_bytes,
      budget.ok() ? *std::move(budget) : MemoryBudget::Reservation(), Recipient::Address(""));
  x->peer = to;
  x->join = join;
  ArmDeadline(x, x->deadline, options_.swim.tcp_timeout, "an exchange we started");
  const tcp::endpoint endpoint(dest->first, dest->second);
  x->stream.socket().async_connect(
      endpoint, [this, x, packet = std::move(packet),
                 to = Recipient::Address(Canonical(dest->first, dest->second))](error_code ec) {
        if (ec) return Failed(x);
        SecureThen(x, "", [this, x, packet = std::move(packet), to = std::move(to)] {
          // Sealed now, just before it is written, to keep the replay window short (envelope.h).
          {
            absl::MutexLock lock(&mu_);
            uint64_t counter = 0;
            x->out = EncodeFrame(envelope_, packet, to, UnixMillis(), &counter);
            x->expect = Recipient::Reply(envelope_.boot_id(), counter);
            counters_.tcp_bytes_out += x->out.size();
          }
          asio::async_write(x->stream, asio::buffer(x->out), [this, x](error_code ec, size_t) {
            if (ec) return Failed(x);
            ReadFrame(x, [this, x](FrameOutcome o) { OnReply(x, std::move(o)); });
          });
        });
      });
}

void GossipNodeImpl::OnReply(const std::shared_ptr<TcpExchange>& x, FrameOutcome o) {
  if (o.io_error) return Failed(x);
  if (!o.status.ok()) {
    Refused(o.why, x->peer, StrCat("a reply: ", MessageOf(o.status)));
    return Failed(x);
  }
  if (o.result == FrameReader::Result::kNotice) {
    if (!encrypted_ && x->join) {
      EncryptionRequired(x->peer);
    } else if (!encrypted_) {
      log_.Warn(kNoticeLogKey, [&] {
        return StrCat("the node at ", x->peer,
                      " encrypts its gossip and this node has no gossip keys");
      });
    } else {
      log_.Warn(kNoticeLogKey, [&] {
        return StrCat("the node at ", x->peer,
                      " could not authenticate this node's gossip: check that both have a key "
                      "in common (gossip keys) and the same cluster label");
      });
    }
    return Failed(x);
  }
  KeepTlsSession(x);
  Finish(x);
  const Opened frame = x->reader.TakeFrame();
  Process(Call([&](Swim& s) {
    return s.HandlePacket(x->peer, frame.payload, Channel::kTcp, clock_.Now());
  }));
}

void GossipNodeImpl::KeepTlsSession(const std::shared_ptr<TcpExchange>& x) {
  std::shared_ptr<SSL_SESSION> session = x->stream.ResumableSession();
  if (session == nullptr) return;
  if (tls_sessions_.size() >= kMaxTlsSessions && !tls_sessions_.contains(x->peer)) {
    tls_sessions_.clear();
  }
  tls_sessions_[x->peer] = std::move(session);
}

void GossipNodeImpl::Failed(const std::shared_ptr<TcpExchange>& x) {
  if (x->done) return;
  {
    absl::MutexLock lock(&mu_);
    ++counters_.tcp_exchanges_failed;
  }
  Finish(x);
  if (!x->watch.empty() && !x->served) WatchEnded(x, /*silent=*/false);
}

// ---------------------------------------------------------------------------------------------
// Watch connections

void GossipNodeImpl::UpdateWatches(bool changed) {
  const SteadyTime now = clock_.Now();
  if (!changed && now < next_watch_update_) return;
  next_watch_update_ = now + options_.swim.probe_interval;
  std::vector<WatchTarget> targets;
  std::vector<std::string> gone;  // watchers of this node that are no longer members alive
  {
    absl::MutexLock lock(&mu_);
    targets = swim_->WatchTargets();
    for (const auto& [watcher, _] : served_watches_) {
      const std::optional<MemberState> state = swim_->StateOf(watcher);
      if (!state || (*state != MemberState::kAlive && *state != MemberState::kSuspect)) {
        gone.push_back(watcher);
      }
    }
  }
  // A watcher that died or left may have vanished without closing (power loss, a partition):
  // its watch would hold a place under the cap for good.
  for (const std::string& watcher : gone) {
    auto it = served_watches_.find(watcher);
    it->second->purposeful = true;
    Finish(it->second);
    served_watches_.erase(it);
  }
  watched_by_.store(served_watches_.size());
  for (auto it = watches_.begin(); it != watches_.end();) {
    const bool wanted = std::any_of(targets.begin(), targets.end(), [&](const WatchTarget& t) {
      return t.name == it->first && t.addr == it->second->peer;
    });
    if (wanted) {
      ++it;
      continue;
    }
    it->second->purposeful = true;
    Finish(it->second);
    it = watches_.erase(it);
  }
  std::erase_if(watch_tried_, [&](const auto& e) {
    return std::none_of(targets.begin(), targets.end(),
                        [&](const WatchTarget& t) { return t.name == e.first; });
  });
  for (const WatchTarget& t : targets) {
    if (watches_.contains(t.name)) continue;
    // A member that refused or dropped a watch is tried again after a probe interval.
    auto [tried, first] = watch_tried_.try_emplace(t.name, now);
    if (!first && now - tried->second < options_.swim.probe_interval) continue;
    tried->second = now;
    OpenWatch(t);
  }
  watching_.store(watches_.size());
}

void GossipNodeImpl::OpenWatch(const WatchTarget& target) {
  absl::StatusOr<std::pair<asio::ip::address, uint16_t>> dest = ParseHostPort(target.addr);
  if (!dest.ok()) return;
  absl::StatusOr<MemoryBudget::Reservation> budget = budget_->Reserve(0);
  auto x = std::make_shared<TcpExchange>(
      ioc_, options_.max_tcp_frame_bytes,
      budget.ok() ? *std::move(budget) : MemoryBudget::Reservation(), Recipient::Address(""));
  x->peer = target.addr;
  x->watch = target.name;
  watches_[target.name] = x;
  ArmDeadline(x, x->deadline, options_.swim.tcp_timeout, "a watch we opened");
  x->stream.socket().async_connect(
      tcp::endpoint(dest->first, dest->second),
      [this, x, to = Recipient::Address(Canonical(dest->first, dest->second))](error_code ec) {
        if (x->done) return;
        if (ec) return Failed(x);
        SecureThen(x, x->watch, [this, x, to] {
          {
            absl::MutexLock lock(&mu_);
            uint64_t counter = 0;
            x->out = EncodeFrame(envelope_, EncodePacket({EncodeMessage(Watch{options_.name})}), to,
                                 UnixMillis(), &counter);
            x->expect = Recipient::Reply(envelope_.boot_id(), counter);
            counters_.tcp_bytes_out += x->out.size();
          }
          asio::async_write(x->stream, asio::buffer(x->out), [this, x](error_code ec, size_t) {
            if (x->done) return;
            if (ec) return Failed(x);
            ReadFrame(x, [this, x](FrameOutcome o) { OnWatchReply(x, std::move(o)); });
          });
        });
      });
}

void GossipNodeImpl::OnWatchReply(const std::shared_ptr<TcpExchange>& x, FrameOutcome o) {
  if (x->done) return;
  // A member that does not serve watches (an older version, or one at its cap) closes the
  // connection or answers something else: that says nothing of its health.
  if (o.io_error || !o.status.ok() || o.result == FrameReader::Result::kNotice) return Failed(x);
  KeepTlsSession(x);
  x->reader.TakeFrame();
  x->greeted = true;
  x->deadline.cancel();
  ReadWatch(x);
}

void GossipNodeImpl::ReadWatch(const std::shared_ptr<TcpExchange>& x) {
  x->stream.async_read_some(asio::buffer(&x->byte, 1), [this, x](error_code ec, size_t n) {
    if (x->done || x->purposeful) return;
    Finish(x);
    // Anything read is a goodbye (the member is leaving); a close or a reset without one is
    // what a crashed process's kernel does.
    WatchEnded(x, /*silent=*/ec && n == 0);
  });
}

void GossipNodeImpl::WatchEnded(const std::shared_ptr<TcpExchange>& x, bool silent) {
  auto it = watches_.find(x->watch);
  if (it == watches_.end() || it->second != x) return;
  watches_.erase(it);
  watching_.store(watches_.size());
  if (!silent || !x->greeted) return;
  Process(Call([&](Swim& s) { return s.WatchClosed(x->watch, clock_.Now()); }));
}

void GossipNodeImpl::ServeWatch(const std::shared_ptr<TcpExchange>& x, std::string reply) {
  // One watch per member (a new one replaces its old one), and a few per watcher this node can
  // expect: each member has about `watchers` watchers.
  const size_t cap = 4 * static_cast<size_t>(std::max(1, options_.swim.watchers)) + 4;
  if (auto old = served_watches_.find(x->watch); old != served_watches_.end()) {
    old->second->purposeful = true;
    Finish(old->second);
    served_watches_.erase(old);
  } else if (served_watches_.size() >= cap) {
    return Finish(x);  // unanswered: the watcher counts nothing against this node
  }
  served_watches_[x->watch] = x;
  watched_by_.store(served_watches_.size());
  x->deadline.cancel();
  x->head_deadline.cancel();
  x->out = std::move(reply);
  auto end = [this, x] {
    if (x->done) return;
    Finish(x);
    auto it = served_watches_.find(x->watch);
    if (it != served_watches_.end() && it->second == x) served_watches_.erase(it);
    watched_by_.store(served_watches_.size());
  };
  asio::async_write(x->stream, asio::buffer(x->out), [x, end](error_code ec, size_t) {
    if (ec) return end();
    // Held open until the watcher goes (or this node does): anything read ends it.
    x->stream.async_read_some(asio::buffer(&x->byte, 1), [end](error_code, size_t) { end(); });
  });
}

void GossipNodeImpl::SayGoodbyes() {
  static constexpr char kGoodbye = 'B';
  for (auto& [_, x] : served_watches_) {
    if (x->done) continue;
    error_code ignored;
    x->purposeful = true;
    // One byte on an idle connection fits its send buffer: the write does not block.
    asio::write(x->stream, asio::buffer(&kGoodbye, 1), ignored);
    x->stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    Finish(x);
  }
  served_watches_.clear();
  watched_by_.store(0);
  for (auto& [_, x] : watches_) {
    x->purposeful = true;
    Finish(x);
  }
  watches_.clear();
  watching_.store(0);
}

}  // namespace hivemesh::membership::gossip_internal
