// The client side of a mesh link (docs/routing.md, "The mesh link"): one connection per loop and
// peer, upgraded with `Upgrade: hivemesh-link/1`, that carries every request of that loop to that
// peer. Requests go out back to back, each with a `Hivemesh-Stream` number; answers come back in
// whatever order the peer finishes them and are matched by that number. Requests that become
// ready together (in one pass of the event loop) leave in one write, and their answers arrive
// in few reads: fewer system calls and wake-ups on both nodes than a connection per request.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>

#include "base/strings.h"
#include "transport/io_write.h"
#include "transport/link_head.h"
#include "transport/mesh_link.h"
#include "transport/peer_client_internal.h"

namespace hivemesh::peer_internal {

namespace {
constexpr size_t kReadSize = 64 * 1024;
// Buffers per write: Asio hands a socket at most 64 buffers per system call. A request takes
// two (head and body) plus one per binary tensor.
constexpr size_t kBuffersPerWrite = 64;
// How long a loop sends plain HTTP to a peer that declined a link before it asks again.
constexpr std::chrono::seconds kDeclinedFor(30);
constexpr uint32_t kMaxAnswerHeaderBytes = 64 * 1024;
}  // namespace

// PeerCancel's hook for a call on a link (defined after Link).
void CancelOnLink(const std::shared_ptr<void>& target);

// One link, owned by its loop's table (Core::links) until it closes and by its pending handlers.
// Every method runs on that loop's thread. Each call it carries is in `calls_` from Submit until
// it is answered, times out or the link closes, so it gets exactly one callback.
class Link : public std::enable_shared_from_this<Link> {
 public:
  Link(std::shared_ptr<Core> core, int loop, std::string address, std::string key,
       std::string peer_node, asio::any_io_executor executor)
      : core_(std::move(core)),
        loop_(loop),
        address_(std::move(address)),
        key_(std::move(key)),
        peer_node_(std::move(peer_node)),
        executor_(std::move(executor)),
        stream_(executor_),
        timer_(executor_) {}

  void Open(const tcp::endpoint& endpoint) {
    stream_.socket().async_connect(endpoint, [self = shared_from_this()](error_code ec) {
      if (ec) return self->Close(ec);
      if (self->state_ == State::kClosed) return;
      self->counted_ = true;
      ++self->core_->open;
      error_code ignored;
      self->stream_.socket().set_option(tcp::no_delay(true), ignored);
      // The link has no idle timeout: notice a vanished peer.
      EnableKeepAlive(self->stream_.socket());
      SecureThen(*self->core_, self->loop_, self->stream_, self->address_, self->peer_node_,
                 [self](error_code hec, std::string refused) {
                   if (self->state_ == State::kClosed) return;
                   if (hec) return self->Close(hec);
                   if (!refused.empty()) return self->Refuse(refused);
                   self->Upgrade();
                 });
    });
  }

  void Submit(const std::shared_ptr<Call>& call) {
    // 0 means "not on a link"; after a wrap, a number still in use is skipped.
    do {
      call->stream = next_stream_++;
    } while (call->stream == 0 || calls_.count(call->stream) > 0);
    call->reused = state_ == State::kOpen;
    call->link = weak_from_this();
    calls_.emplace(call->stream, call);
    if (call->request.cancel) call->request.cancel->Bind(call, &CancelOnLink);
    queued_.push_back(call);
    ArmTimer(call->deadline);
    if (state_ != State::kOpen) return;
    // Alone on the link, the request goes at once: nothing else is waiting to share the write,
    // and waiting for the loop's pass to end would only add latency.
    if (calls_.size() == 1 && !writing_now_ && !flush_posted_) return Flush();
    ScheduleFlush();
  }

  const std::string& peer_node() const { return peer_node_; }

  // Ends the link: every call on it is retried once on a new link (if the peer seems to have
  // closed a link that was open before the call) or fails with what `ec` says.
  void Close(error_code ec) {
    if (state_ == State::kClosed) return;
    const bool was_open = state_ == State::kOpen;
    state_ = State::kClosed;
    Detach(was_open);
    const bool stopped = core_->stopped.load(std::memory_order_relaxed);
    for (const auto& [_, call] : TakeCalls()) {
      if (!stopped && call->reused && !call->retried && PeerMayHaveClosed(ec)) {
        call->retried = true;
        StartOnLink(call);
        continue;
      }
      Finish(call, TransportError(address_, ec, /*timed_out=*/false));
    }
  }

 private:
  enum class State { kConnecting, kUpgrading, kOpen, kClosed };

  // Asks the peer to switch the connection to a link. A peer that does not know links answers
  // the request as a plain health check.
  void Upgrade() {
    state_ = State::kUpgrading;
    upgrade_ = StrCat("GET /v2/health/live HTTP/1.1\r\nHost: ", address_,
                      "\r\nConnection: Upgrade\r\nUpgrade: ", kLinkProtocol, "\r\n");
    // The peer takes a link only from a member that proves who it is (docs/security.md).
    if (core_->credential && !peer_node_.empty()) {
      StrAppend(&upgrade_, kCredentialField, ": ",
                core_->credential(peer_node_, kCredentialForLink), "\r\n");
    }
    upgrade_ += "Content-Length: 0\r\n\r\n";
    std::vector<asio::const_buffer> buffers{asio::buffer(upgrade_)};
    WriteNowOrLater(stream_, buffers, [self = shared_from_this()](error_code ec) {
      if (ec) return self->Close(ec);
      self->parser_.emplace();
      self->parser_->body_limit(kMaxAnswerBytes);
      http::async_read(self->stream_, self->in_, *self->parser_,
                       [self](error_code ec, size_t) { self->OnUpgraded(ec); });
    });
  }

  void OnUpgraded(error_code ec) {
    if (state_ == State::kClosed) return;
    if (ec) return Close(ec);
    const PeerResponse& r = parser_->response();
    const bool switched = r.status == 101 && r.headers.Get("upgrade") == kLinkProtocol;
    // A peer that answers the health check as such does not know links. Any other answer (503
    // from a draining node, say) says nothing of that: the calls go plain this once.
    const bool declined = r.status >= 200 && r.status < 300;
    parser_.reset();
    KeepSession(*core_, loop_, address_, stream_);
    if (!switched) return Decline(declined);
    state_ = State::kOpen;
    ++core_->open_links;
    ScheduleFlush();
    if (ParseBuffered()) Read();
  }

  // The peer took no link: its calls go over plain HTTP, and if it does not know links
  // (`remember`), so do this loop's next ones for a while.
  void Decline(bool remember) {
    if (remember) {
      core_->http_only[static_cast<size_t>(loop_)][address_] = core_->clock.Now() + kDeclinedFor;
    }
    state_ = State::kClosed;
    Detach(/*was_open=*/false);
    for (const auto& [_, call] : TakeCalls()) {
      call->stream = 0;
      StartHttp(call);
    }
  }

  // The server's certificate is not the peer's: every call fails with `why` (no retry: the next
  // link would meet the same server).
  void Refuse(const std::string& why) {
    const bool was_open = state_ == State::kOpen;
    state_ = State::kClosed;
    Detach(was_open);
    for (const auto& [_, call] : TakeCalls()) Finish(call, absl::UnavailableError(why));
  }

  // Every call the link holds, which it then no longer does.
  std::map<uint32_t, std::shared_ptr<Call>> TakeCalls() {
    std::map<uint32_t, std::shared_ptr<Call>> calls;
    calls.swap(calls_);
    queued_.clear();
    return calls;
  }

  // Leaves the loop's table, closes the socket and releases the timer's hold. `was_open`: the
  // link had been upgraded (counted in Core::open_links).
  void Detach(bool was_open) {
    auto& links = core_->links[static_cast<size_t>(loop_)];
    auto it = links.find(key_);
    if (it != links.end() && it->second.get() == this) links.erase(it);
    stream_.Close();
    timer_.cancel();
    if (was_open) --core_->open_links;
    if (counted_) {
      counted_ = false;
      --core_->open;
    }
  }

  void ScheduleFlush() {
    if (flush_posted_ || writing_now_) return;
    flush_posted_ = true;
    // After the handlers of this pass of the loop: the requests they make go out together.
    asio::post(executor_, [self = shared_from_this()] { self->Flush(); });
  }

 public:
  // The sender no longer needs `call`'s answer (PeerCancel). Not written yet: it is dropped and
  // answered CANCELLED here. Written: a CANCEL for its stream follows, and its answer (499, or
  // the real one if it was already under way) still comes back to it.
  void Cancel(const std::shared_ptr<Call>& call) {
    auto it = calls_.find(call->stream);
    if (state_ == State::kClosed || it == calls_.end() || it->second != call) return;
    if (std::find(queued_.begin(), queued_.end(), call) != queued_.end()) {
      calls_.erase(it);
      return Finish(call, absl::CancelledError("cancelled before it was sent"));
    }
    cancels_.push_back(StrCat(kLinkCancelMethod, " * HTTP/1.1\r\n", kLinkStreamHeader, ": ",
                              call->stream, "\r\nContent-Length: 0\r\n\r\n"));
    ScheduleFlush();
  }

 private:
  void Flush() {
    flush_posted_ = false;
    if (state_ != State::kOpen || writing_now_) return;
    std::vector<asio::const_buffer>& buffers = out_;  // reused: no allocation per write
    buffers.clear();
    cancels_writing_.swap(cancels_);
    for (const std::string& c : cancels_writing_) buffers.push_back(asio::buffer(c));
    size_t taken = 0;
    for (; taken < queued_.size(); ++taken) {
      const std::shared_ptr<Call>& call = queued_[taken];
      if (calls_.find(call->stream) == calls_.end()) continue;  // timed out before it went
      const size_t needed = 2 + call->request.tail.size();
      if (!writing_.empty() && buffers.size() + needed > kBuffersPerWrite) break;
      AppendRequest(*call, buffers);
      writing_.push_back(call);
    }
    queued_.erase(queued_.begin(), queued_.begin() + static_cast<ptrdiff_t>(taken));
    if (writing_.empty() && cancels_writing_.empty()) return;
    writing_now_ = true;
    WriteNowOrLater(stream_, buffers, [self = shared_from_this()](error_code ec) {
      self->writing_now_ = false;
      self->writing_.clear();
      self->cancels_writing_.clear();
      if (ec) return self->Close(ec);
      if (!self->queued_.empty() || !self->cancels_.empty()) self->Flush();
    });
  }

  void Read() {
    stream_.async_read_some(
        in_.prepare(kReadSize),
        [self = shared_from_this()](error_code ec, size_t n) { self->OnRead(ec, n); });
  }

  void OnRead(error_code ec, size_t n) {
    if (state_ == State::kClosed) return;
    if (ec) return Close(ec);
    in_.commit(n);
    if (ParseBuffered()) Read();
  }

  // Hands every complete answer in the buffer to its call; false if the link closed.
  bool ParseBuffered() {
    while (state_ != State::kClosed) {
      const std::string_view bytes(static_cast<const char*>(in_.data().data()), in_.size());
      if (!answer_) {
        std::string why;
        LinkParse p = ParseLinkHead(bytes, /*request=*/false, kMaxAnswerHeaderBytes, &head_, &why);
        if (p == LinkParse::kNeedMore) break;
        if (p == LinkParse::kDone && head_.content_length > kMaxAnswerBytes) {
          p = LinkParse::kBad;
          why = StrCat("an answer of ", head_.content_length, " bytes");
        }
        if (p == LinkParse::kBad) {
          spdlog::warn("closing the mesh link to {}: malformed answer: {}", address_, why);
          Close(make_error_code(boost::system::errc::protocol_error));
          return false;
        }
        answer_.emplace();
        answer_->status = head_.status;
        answer_->headers.reserve(head_.fields.size(), head_.head_size);
        for (const LinkField& f : head_.fields) answer_->headers.Add(f.name, f.value);
        body_size_ = static_cast<size_t>(head_.content_length);
        in_.consume(head_.head_size);
        continue;
      }
      if (bytes.size() < body_size_) break;
      answer_->body = std::make_shared<const std::string>(bytes.substr(0, body_size_));
      in_.consume(body_size_);
      Answer(std::move(*answer_));
      answer_.reset();
    }
    return state_ != State::kClosed;
  }

  void Answer(PeerResponse r) {
    uint32_t stream = 0;
    if (std::optional<std::string_view> v = r.headers.Get(kLinkStreamField)) {
      std::from_chars(v->data(), v->data() + v->size(), stream);
    }
    auto it = calls_.find(stream);
    if (it == calls_.end()) return;  // the call timed out: its late answer is dropped
    std::shared_ptr<Call> call = std::move(it->second);
    calls_.erase(it);
    Finish(call, std::move(r));
  }

  // Arms the timer for `earliest`, unless it is already armed for a time no later. Answered
  // calls leave nothing here: the timer may fire for a call answered since, finds nothing due
  // and looks again (calls keep their own deadlines; see OnTimer).
  // The timer runs on real time for what is left by the client's clock, and looks at the clock
  // again when it fires (OnTimer re-arms it for what is then left).
  void ArmTimer(SteadyTime earliest) {
    if (state_ == State::kClosed) return;
    if (timer_waiting_ && armed_ <= earliest) return;
    armed_ = earliest;
    timer_waiting_ = true;
    timer_.expires_after(std::max(earliest - core_->clock.Now(), SteadyTime::duration::zero()));
    timer_.async_wait([self = shared_from_this(), earliest](error_code ec) {
      if (ec || self->armed_ != earliest) return;  // re-armed or cancelled
      self->timer_waiting_ = false;
      self->OnTimer();
    });
  }

  // Fails the calls past their deadline; the link stays (a late answer is dropped). A slow
  // model is no reason to drop the link and its other calls; a peer that is gone is noticed by
  // the link's keep-alive probes or a reset, a peer that answers nothing by the forwarder's
  // outlier detection (consecutive timeouts).
  void OnTimer() {
    if (state_ == State::kClosed) return;
    const SteadyTime now = core_->clock.Now();
    std::vector<std::shared_ptr<Call>> expired;
    SteadyTime next = SteadyTime::max();
    // The open calls are few (those sent and not yet answered): a scan when the timer fires
    // costs less than keeping every call's deadline sorted.
    for (auto it = calls_.begin(); it != calls_.end();) {
      if (it->second->deadline > now) {
        next = std::min(next, it->second->deadline);
        ++it;
        continue;
      }
      expired.push_back(std::move(it->second));
      it = calls_.erase(it);
    }
    if (next != SteadyTime::max()) ArmTimer(next);
    for (const std::shared_ptr<Call>& call : expired) {
      Finish(call, TransportError(address_, {}, true));
    }
    // A link still being set up (connect, TLS handshake, upgrade) when a call's deadline passed
    // is a peer that accepts and says nothing (stopped, wedged): it is given up, so that the
    // next calls open a new link instead of queueing behind it.
    if (!expired.empty() && state_ != State::kOpen && state_ != State::kClosed) {
      Close(asio::error::timed_out);
    }
  }

  const std::shared_ptr<Core> core_;
  const int loop_;
  const std::string address_;
  const std::string key_;        // in the loop's table (PoolKey)
  const std::string peer_node_;  // the member its credential is addressed to
  const asio::any_io_executor executor_;
  IoStream stream_;
  asio::steady_timer timer_;
  State state_ = State::kConnecting;
  bool counted_ = false;  // in Core::open
  std::string upgrade_;
  beast::flat_buffer in_;
  std::optional<ResponseParser> parser_;  // the upgrade's answer only
  LinkHead head_;                         // reused: its field table keeps its capacity
  std::optional<PeerResponse> answer_;    // the answer whose head is read, until its body is
  size_t body_size_ = 0;                  // that answer's Content-Length
  uint32_t next_stream_ = 1;
  // Every call not yet answered, by stream number (written or not).
  std::map<uint32_t, std::shared_ptr<Call>> calls_;
  std::vector<std::shared_ptr<Call>> queued_;   // not yet written
  std::vector<std::shared_ptr<Call>> writing_;  // in the write under way
  std::vector<asio::const_buffer> out_;         // the buffers of the last write
  std::vector<std::string> cancels_;            // CANCEL messages not yet written
  std::vector<std::string> cancels_writing_;    // in the write under way
  bool flush_posted_ = false;
  bool writing_now_ = false;
  SteadyTime armed_;
  bool timer_waiting_ = false;
};

// PeerCancel's hook for a call on a link: on the call's loop, its link cancels it.
void CancelOnLink(const std::shared_ptr<void>& target) {
  std::shared_ptr<Call> call = std::static_pointer_cast<Call>(target);
  asio::post(call->executor, [call] {
    if (std::shared_ptr<Link> link = call->link.lock()) link->Cancel(call);
  });
}

void StartOnLink(const std::shared_ptr<Call>& call) {
  Core& core = *call->core;
  if (core.stopped.load(std::memory_order_relaxed)) return;
  const auto loop = static_cast<size_t>(call->loop);
  auto& declined = core.http_only[loop];
  if (!declined.empty()) {
    auto it = declined.find(call->request.address);
    if (it != declined.end()) {
      if (core.clock.Now() < it->second) return StartHttp(call);
      declined.erase(it);
    }
  }
  auto& links = core.links[loop];
  const std::string key = PoolKey(core, call->request);
  auto it = links.find(key);
  if (it == links.end()) {
    tcp::endpoint endpoint;
    // Not ip:port: the plain path reports it.
    if (!ParseEndpoint(call->request.address, &endpoint)) return StartHttp(call);
    auto link = std::make_shared<Link>(call->core, call->loop, call->request.address, key,
                                       call->request.peer_node, call->executor);
    it = links.emplace(key, link).first;
    link->Open(endpoint);
  }
  it->second->Submit(call);
}

void CloseLinksTo(Core& core, int loop, const std::string& peer_node) {
  std::vector<std::shared_ptr<Link>> to_close;
  for (const auto& [_, link] : core.links[static_cast<size_t>(loop)]) {
    if (link->peer_node() == peer_node) to_close.push_back(link);
  }
  for (const std::shared_ptr<Link>& link : to_close) link->Close(asio::error::operation_aborted);
}

void CloseLinks(Core& core, int loop) {
  auto links = std::move(core.links[static_cast<size_t>(loop)]);
  core.links[static_cast<size_t>(loop)].clear();
  for (auto& [_, link] : links) link->Close(asio::error::operation_aborted);
}

}  // namespace hivemesh::peer_internal
