// The server side of a mesh link (docs/routing.md, "The mesh link"): after `Upgrade:
// hivemesh-link/1`, a connection carries HTTP/1.1 requests back to back, each with a
// `Hivemesh-Stream` number, and the answers go back in the order they are ready, each with its
// request's number. Answers that become ready together (in one pass of the event loop) leave in
// one write; the answer to a link's only open request is written by the thread that gives it
// (a model's worker), without waking the loop first.
//
// Bounds: a request's body is reserved from the node's memory budget when its head has been
// read (503 on its stream if it does not fit; the body is then read and dropped, as one over
// max_body_bytes is with 413, and the link goes on) and read straight into its own buffer, so
// the link's read buffer holds at most a head and one read. A message must arrive whole within
// body_timeout once it has begun, and answers must be taken within body_timeout once a write
// waits for the socket; a link with no open request and no bytes for idle_link_timeout closes.
#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <boost/container/small_vector.hpp>
#include <chrono>
#include <optional>
#include <unordered_map>
#include <vector>

#include "base/strings.h"
#include "transport/http_server_internal.h"
#include "transport/io_deadline.h"
#include "transport/io_write.h"
#include "transport/link_head.h"

namespace hivemesh::http_internal {

class LinkSession final : public std::enable_shared_from_this<LinkSession> {
 public:
  LinkSession(IoStream stream, beast::flat_buffer buffered, std::shared_ptr<Core> core, int loop,
              ConnectionLimits::Slot slot, std::string member);
  ~LinkSession();
  void Start();
  void Close();
  // The server drains: an idle link ends now, a busy one once its open requests are answered.
  void Drain();
  const std::string& member() const { return *member_; }

 private:
  // One request of the link; it lives until its answer has been written (or dropped).
  class Request final : public HttpRequest {
   public:
    std::string_view method() const override { return head.method(); }
    std::string_view target() const override { return head.target(); }
    std::string_view header(std::string_view name) const override {
      const RequestHead::Field* f = head.Find(name);
      return f == nullptr ? std::string_view() : head.Value(*f);
    }
    bool has_header(std::string_view name) const override { return head.Find(name) != nullptr; }
    std::vector<std::pair<std::string_view, std::string_view>> headers() const override {
      return head.All();
    }
    std::shared_ptr<const std::string> body() const override { return body_shared; }
    SteadyTime received() const override { return received_at; }
    std::string_view remote_address() const override { return remote; }
    std::string_view link_member() const override { return *member; }
    const std::atomic<bool>* cancelled() const override { return &cancel; }

    RequestHead head;
    std::string remote;  // the link's peer IP address
    // The member the link was authorized as: shared with the link, so that a request costs no
    // copy of it, and kept alive by the request, which may outlive the link.
    std::shared_ptr<const std::string> member;
    std::string_view stream;  // its Hivemesh-Stream value (in `head`)
    std::shared_ptr<const std::string> body_shared;
    SteadyTime received_at;
    std::atomic<bool> cancel{false};  // a CANCEL named its stream
  };
  struct Answer {
    std::shared_ptr<Request> request;
    std::string head;
    HttpResponse response;
    size_t bytes = 0;  // head, body and tail
  };

  void Read();
  void OnRead(beast::error_code ec, size_t n);
  // Dispatches every complete request in the buffer; false if the link was closed.
  bool ParseBuffered();
  // The head parsed is a CANCEL: marks its stream's request cancelled. False if the link was
  // closed (a CANCEL with a body, or without a stream).
  bool Cancel();
  // Counts the request as open on the link and hands it to the server's handler, or answers it
  // with `refusal` at once instead (as it does while the server drains).
  void Dispatch(std::shared_ptr<Request> request, std::optional<HttpResponse> refusal = {});
  void Answered(Answer answer);
  // On the thread that gives the answer (a model's worker), when its request is the link's only
  // open one: writes the answer to the socket from this thread, so that it leaves without first
  // waking the loop's thread. False, with `answer` untouched, when other requests are open
  // (their answers share the loop's writes), the socket is closed, another write is under way
  // or the kernel takes none of it: the loop then writes it as usual. Otherwise the request is
  // retired here, or, after a partial write, the loop writes the rest and retires it.
  bool SendFromWorker(Answer& answer);
  // On the loop, after SendFromWorker wrote `written` bytes of `answer`.
  void SentFromWorker(Answer answer, size_t written);
  Answer MakeAnswer(std::shared_ptr<Request> request, HttpResponse response);
  void Flush();
  void OnFlushed(beast::error_code ec);
  // One request fewer is open on the link.
  void Retire();
  // The count half of Retire, for any thread: true if that was the last open request of a
  // draining server's link (which the loop then ends with HalfClose).
  bool Release();
  // Ends a draining link gently: every answer already written goes out, then the write side
  // shuts (the other node reads the end after its answers and opens no new request here);
  // whatever arrives meanwhile is read and dropped until the other side closes too, so that no
  // unread data turns the close into a reset that could destroy answers still in flight.
  void HalfClose();
  // Refuses the request whose head was just read with `status` and `message` on its stream; its
  // body is read and dropped.
  void RefuseBody(Rejection reason, int status, std::string message);
  // The link's one deadline, set to the earliest of what applies now: the message under way
  // must be whole within body_timeout of its start, a write that waits for the socket must end
  // within body_timeout, and an idle link lives idle_link_timeout past its last bytes.
  void ArmDeadline();
  void OnDeadline();

  IoStream stream_;
  const bool tls_;  // stream_ is TLS (a worker never writes to it: OpenSSL's state is the loop's)
  const std::string remote_;  // the peer's IP address
  // The member the link was authorized as (empty: none).
  const std::shared_ptr<const std::string> member_;
  beast::flat_buffer buffer_;
  const std::shared_ptr<Core> core_;
  ConnectionLimits::Slot slot_;  // in core_'s limits: declared after core_, released before it
  const int loop_;
  const asio::io_context::executor_type executor_;
  LinkHead head_;                               // reused: its field table keeps its capacity
  std::shared_ptr<Request> parsing_;            // the request whose head is read, until its body is
  size_t body_size_ = 0;                        // that request's Content-Length
  std::string body_;                            // that request's body as it arrives
  MemoryBudget::Reservation body_reservation_;  // of the budget, for body_
  size_t discard_ = 0;                          // body bytes still to drop of a request refused
  IoDeadline deadline_;
  bool timing_ = false;  // a message is under way (since message_since_)
  SteadyTime message_since_;
  SteadyTime last_read_;                 // when bytes last arrived
  SteadyTime write_since_;               // when the write under way began to wait for the socket
  std::vector<Answer> queued_;           // ready, not yet written
  std::vector<Answer> writing_;          // being written
  std::vector<asio::const_buffer> out_;  // the buffers of the last write
  bool flush_posted_ = false;
  bool writing_now_ = false;
  // Guards the socket's descriptor between the loop and the model workers that write answers
  // from their own thread: a worker writes only under it, and Close() closes the socket only
  // under it, so a descriptor is never written after it was closed (and perhaps reused).
  absl::Mutex wire_mu_;
  bool wire_open_ ABSL_GUARDED_BY(wire_mu_) = true;  // the socket is not closed
  // A write is under way (the loop's, or the rest of a worker's).
  bool wire_taken_ ABSL_GUARDED_BY(wire_mu_) = false;
  bool closed_ = false;
  bool half_closed_ = false;  // the write side is shut (draining)
  size_t unsent_bytes_ = 0;   // of the answers in queued_ and writing_
  bool paused_ = false;       // over kMaxUnsentBytes: no request is read until they drain
  // Dispatched and not yet written or dropped; raised on the loop, lowered there or by a worker
  // that wrote its answer.
  std::atomic<int> open_requests_{0};
  // Requests dispatched, by stream, for CANCEL (loop only). Answered ones expire; they are
  // pruned when the table outgrows the open requests.
  std::unordered_map<uint64_t, std::weak_ptr<Request>> by_stream_;
};

namespace {
constexpr size_t kReadSize = 64 * 1024;
// Answers ready but not yet taken by the other side, in bytes: past this the link reads no new
// request until half of them are gone, so a node that stops reading holds a bounded amount here.
constexpr size_t kMaxUnsentBytes = 8 * 1024 * 1024;
// Buffers per write: Asio hands a socket at most 64 buffers per system call. An answer takes two
// (head and body) plus one per binary tensor.
constexpr size_t kBuffersPerWrite = 64;
}  // namespace

LinkSession::LinkSession(IoStream stream, beast::flat_buffer buffered, std::shared_ptr<Core> core,
                         int loop, ConnectionLimits::Slot slot, std::string member)
    : stream_(std::move(stream)),
      tls_(stream_.tls()),
      remote_(RemoteAddress(stream_.socket())),
      member_(std::make_shared<const std::string>(std::move(member))),
      buffer_(std::move(buffered)),
      core_(std::move(core)),
      slot_(std::move(slot)),
      loop_(loop),
      executor_(core_->loops[static_cast<size_t>(loop)].ioc->get_executor()),
      deadline_(executor_, core_->clock) {
  Core::Loop& l = core_->loops[static_cast<size_t>(loop_)];
  absl::MutexLock lock(&l.mu);
  l.links.insert(this);
}

LinkSession::~LinkSession() {
  Core::Loop& l = core_->loops[static_cast<size_t>(loop_)];
  absl::MutexLock lock(&l.mu);
  l.links.erase(this);
}

void LinkSession::Start() {
  EnableKeepAlive(stream_.socket());  // notice a peer that vanished while the link was busy
  last_read_ = core_->clock.Now();
  if (ParseBuffered() && !paused_) Read();
}

void LinkSession::Close() {
  if (closed_) return;
  closed_ = true;
  deadline_.Cancel();
  {
    absl::MutexLock lock(&wire_mu_);
    wire_open_ = false;
    stream_.Close();
  }
  // Answers not yet written are dropped: the other side sees the link fail and retries them.
  for (size_t i = 0; i < queued_.size(); ++i) Retire();
  queued_.clear();
}

void LinkSession::Read() {
  stream_.async_read_some(
      buffer_.prepare(kReadSize),
      [self = shared_from_this()](beast::error_code ec, size_t n) { self->OnRead(ec, n); });
}

void LinkSession::OnRead(beast::error_code ec, size_t n) {
  if (closed_) return;
  if (ec) {
    Close();  // the other side closed the link or it broke
    return;
  }
  buffer_.commit(n);
  last_read_ = core_->clock.Now();
  if (half_closed_) {
    buffer_.consume(buffer_.size());  // no answer can go out any more
    ArmDeadline();
    Read();
    return;
  }
  if (ParseBuffered() && !paused_) Read();
}

bool LinkSession::ParseBuffered() {
  bool completed = false;  // a message ended in this call: the next one gets its own deadline
  while (!closed_) {
    if (unsent_bytes_ > kMaxUnsentBytes && parsing_ == nullptr && discard_ == 0) {
      paused_ = true;  // between two requests: the next waits until the answers drain
      break;
    }
    const std::string_view bytes(static_cast<const char*>(buffer_.data().data()), buffer_.size());
    if (discard_ > 0) {
      const size_t n = std::min(discard_, bytes.size());
      buffer_.consume(n);
      discard_ -= n;
      if (discard_ > 0) break;
      completed = true;
      continue;
    }
    if (parsing_ == nullptr) {
      std::string why;
      const LinkParse p = ParseLinkHead(bytes, /*request=*/true, kHeaderLimit, &head_, &why);
      if (p == LinkParse::kNeedMore) break;
      if (p == LinkParse::kBad) {
        // Framing is lost: nothing later on the link can be trusted.
        core_->rejections->Note(Rejection::kMalformedHttp, remote_,
                                StrCat("closing a mesh link: ", why));
        Close();
        return false;
      }
      if (head_.method == kLinkCancelMethod) {
        if (!Cancel()) return false;
        buffer_.consume(head_.head_size);
        completed = true;
        continue;
      }
      parsing_ = std::make_shared<Request>();
      parsing_->remote = remote_;
      parsing_->member = member_;
      RequestHead& h = parsing_->head;
      h.text.reserve(head_.head_size);
      h.text.append(head_.method).append(head_.target);
      h.method_size = head_.method.size();
      h.target_size = head_.target.size();
      h.fields.reserve(head_.fields.size());
      for (const LinkField& f : head_.fields) {
        const auto at = static_cast<uint32_t>(h.text.size());
        h.text.append(f.name).append(f.value);
        h.fields.push_back({at, static_cast<uint32_t>(f.name.size()),
                            at + static_cast<uint32_t>(f.name.size()),
                            static_cast<uint32_t>(f.value.size())});
      }
      body_size_ = static_cast<size_t>(head_.content_length);
      buffer_.consume(head_.head_size);
      if (head_.content_length > core_->options.max_body_bytes) {
        RefuseBody(Rejection::kBodyTooLarge, 413,
                   BodyTooLarge(head_.content_length, core_->options.max_body_bytes));
        continue;
      }
      if (core_->options.memory_budget != nullptr && body_size_ > 0) {
        absl::StatusOr<MemoryBudget::Reservation> r =
            core_->options.memory_budget->Reserve(body_size_);
        if (!r.ok()) {
          RefuseBody(Rejection::kMemoryBudget, 503, std::string(r.status().message()));
          continue;
        }
        body_reservation_ = *std::move(r);
      }
      body_.clear();
      body_.reserve(body_size_);
      continue;
    }
    // The body goes straight into its own buffer, not the link's.
    const size_t take = std::min(body_size_ - body_.size(), bytes.size());
    body_.append(bytes.data(), take);
    buffer_.consume(take);
    if (body_.size() < body_size_) break;
    parsing_->body_shared = body_reservation_.bytes() > 0
                                ? MemoryBudget::Hold(std::move(body_), std::move(body_reservation_))
                                : std::make_shared<const std::string>(std::move(body_));
    body_.clear();
    parsing_->received_at = core_->clock.Now();
    Dispatch(std::move(parsing_));
    completed = true;
  }
  if (closed_) return false;
  // A paused link is waiting for the other side to read, not for it to write.
  const bool under_way = !paused_ && (buffer_.size() > 0 || parsing_ != nullptr || discard_ > 0);
  if (under_way && (!timing_ || completed)) message_since_ = core_->clock.Now();
  timing_ = under_way;
  ArmDeadline();
  return true;
}

void LinkSession::RefuseBody(Rejection reason, int status, std::string message) {
  // Answered at once; the body is read and dropped, and the link goes on.
  core_->rejections->Note(reason, remote_, message);
  discard_ = body_size_;
  parsing_->body_shared = std::make_shared<const std::string>();
  parsing_->received_at = core_->clock.Now();
  HttpResponse refusal;
  refusal.status = status;
  refusal.body = ErrorJson(message);
  if (status == 503) refusal.headers.emplace_back("Retry-After", "1");
  Dispatch(std::move(parsing_), std::move(refusal));
}

void LinkSession::ArmDeadline() {
  const HttpServerOptions& o = core_->options;
  SteadyTime at = timing_ ? message_since_ + o.body_timeout : last_read_ + o.idle_link_timeout;
  if (writing_now_) at = std::min(at, write_since_ + o.body_timeout);
  deadline_.ExpiresAt(
      at, [this] { return shared_from_this(); }, [this] { OnDeadline(); });
}

void LinkSession::OnDeadline() {
  if (closed_) return;
  const HttpServerOptions& o = core_->options;
  const SteadyTime now = core_->clock.Now();
  if (timing_ && now >= message_since_ + o.body_timeout) {
    core_->rejections->Note(
        Rejection::kSlowClient, remote_,
        StrCat("a request on a mesh link took over ", o.body_timeout.count(), " ms to arrive"));
    return Close();
  }
  if (writing_now_ && now >= write_since_ + o.body_timeout) {
    core_->rejections->Note(
        Rejection::kSlowClient, remote_,
        StrCat("answers on a mesh link were not taken within ", o.body_timeout.count(), " ms"));
    return Close();
  }
  if (!timing_ && now >= last_read_ + o.idle_link_timeout) {
    // Requests still open or answers still going out: not idle; look again a period later.
    if (open_requests_.load(std::memory_order_acquire) > 0 || writing_now_ || !queued_.empty()) {
      last_read_ = now;
    } else {
      if (!half_closed_) {
        core_->rejections->Note(Rejection::kIdleLinkClosed, remote_,
                                StrCat("no request for ", o.idle_link_timeout.count(), " ms"));
      }
      return Close();
    }
  }
  ArmDeadline();
}

void LinkSession::Dispatch(std::shared_ptr<Request> request, std::optional<HttpResponse> refusal) {
  if (core_->stopped.load()) {
    Close();
    return;
  }
  const RequestHead::Field* stream = request->head.Find(kLinkStreamHeader);
  if (stream == nullptr) {
    core_->rejections->Note(Rejection::kMalformedHttp, remote_,
                            StrCat("closing a mesh link: a request without ", kLinkStreamHeader));
    Close();
    return;
  }
  request->stream = request->head.Value(*stream);
  if (by_stream_.size() > 2 * static_cast<size_t>(open_requests_.load()) + 64) {
    std::erase_if(by_stream_, [](const auto& e) { return e.second.expired(); });
  }
  if (std::optional<uint64_t> n = ParseUint(request->stream))
    by_stream_.insert_or_assign(*n, request);
  open_requests_.fetch_add(1, std::memory_order_relaxed);
  core_->busy.fetch_add(1);
  if (!refusal && core_->draining.load(std::memory_order_relaxed)) {
    refusal.emplace();
    refusal->status = 503;
    refusal->body = ErrorJson(kShuttingDown);
  }
  if (refusal) {
    Answered(MakeAnswer(std::move(request), *std::move(refusal)));
    return;
  }
  Request& req = *request;
  core_->handler(req, [self = shared_from_this(), request = std::move(request)](HttpResponse r) {
    if (self->executor_.running_in_this_thread()) {
      self->Answered(self->MakeAnswer(request, std::move(r)));
      return;
    }
    Answer a = self->MakeAnswer(request, std::move(r));
    if (self->SendFromWorker(a)) return;
    asio::post(self->executor_,
               [self, a = std::move(a)]() mutable { self->Answered(std::move(a)); });
  });
}

bool LinkSession::Cancel() {
  std::optional<uint64_t> stream;
  for (const LinkField& f : head_.fields) {
    if (beast::iequals(beast::string_view(f.name.data(), f.name.size()),
                       beast::string_view(kLinkStreamHeader.data(), kLinkStreamHeader.size()))) {
      stream = ParseUint(f.value);
    }
  }
  if (head_.content_length != 0 || !stream) {
    core_->rejections->Note(Rejection::kMalformedHttp, remote_,
                            "closing a mesh link: a CANCEL with a body or without a stream");
    Close();
    return false;
  }
  // A request already answered (or never seen) is nothing to cancel: no answer either way.
  if (auto it = by_stream_.find(*stream); it != by_stream_.end()) {
    if (std::shared_ptr<Request> r = it->second.lock()) r->cancel.store(true);
    by_stream_.erase(it);
  }
  return true;
}

LinkSession::Answer LinkSession::MakeAnswer(std::shared_ptr<Request> request,
                                            HttpResponse response) {
  Answer a;
  if (response.stream) {
    // A link answers whole: a streamed answer is closed, and what it began with is the answer.
    response.stream->Close();
    response.stream.reset();
  }
  AppendResponseHead(&a.head, response);
  StrAppend(&a.head, kLinkStreamHeader, ": ", request->stream, "\r\n\r\n");
  a.request = std::move(request);
  a.response = std::move(response);
  a.bytes = a.head.size() + a.response.body.size();
  for (const Tensor& t : a.response.tail) a.bytes += t.data().size();
  return a;
}

bool LinkSession::SendFromWorker(Answer& a) {
  // Only the link's one open request: answers that are ready together leave in one write from
  // the loop instead, which takes fewer system calls than one per worker.
  // Over TLS only the loop's thread may drive OpenSSL.
  if (tls_ || open_requests_.load(std::memory_order_relaxed) != 1) return false;
  boost::container::small_vector<iovec, 8> iov;
  const auto add = [&iov](std::string_view piece) {
    if (!piece.empty()) iov.push_back({const_cast<char*>(piece.data()), piece.size()});
  };
  add(a.head);
  add(a.response.body);
  for (const Tensor& t : a.response.tail) add(t.data());
  if (iov.size() > kBuffersPerWrite) return false;
  msghdr msg{};
  msg.msg_iov = iov.data();
  msg.msg_iovlen = iov.size();
  ssize_t n;
  {
    absl::MutexLock lock(&wire_mu_);
    if (!wire_open_ || wire_taken_) return false;
    n = ::sendmsg(stream_.socket().native_handle(), &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n <= 0) return false;  // full, or failed: the loop writes it, and sees any failure
    if (static_cast<size_t>(n) < a.bytes) {
      wire_taken_ = true;  // the rest goes before any other answer
    } else if (a.response.on_sent && !core_->stopped.load(std::memory_order_relaxed)) {
      // Under the lock: Stop() closes the link, so it returns only after this call.
      a.response.on_sent(core_->clock.Now());
    }
  }
  if (static_cast<size_t>(n) < a.bytes) {
    asio::post(executor_, [self = shared_from_this(), a = std::move(a), n]() mutable {
      self->SentFromWorker(std::move(a), static_cast<size_t>(n));
    });
    return true;
  }
  if (Release()) asio::post(executor_, [self = shared_from_this()] { self->HalfClose(); });
  return true;
}

void LinkSession::SentFromWorker(Answer a, size_t written) {
  if (closed_) {
    {
      absl::MutexLock lock(&wire_mu_);
      wire_taken_ = false;
    }
    Retire();
    return;
  }
  unsent_bytes_ += a.bytes;
  writing_.push_back(std::move(a));
  const Answer& w = writing_.back();
  std::vector<asio::const_buffer> rest;
  AppendMessageBuffers(rest, w.head, w.response.body, w.response.tail);
  DropFront(rest, written);
  writing_now_ = true;
  write_since_ = core_->clock.Now();
  ArmDeadline();
  asio::async_write(
      stream_, std::move(rest),
      [self = shared_from_this()](beast::error_code ec, size_t) { self->OnFlushed(ec); });
}

void LinkSession::Answered(Answer answer) {
  if (closed_) {
    Retire();
    return;
  }
  unsent_bytes_ += answer.bytes;
  queued_.push_back(std::move(answer));
  if (flush_posted_ || writing_now_) return;
  // The link's only open request: nothing else can share the write, so it goes at once.
  if (open_requests_.load(std::memory_order_relaxed) == 1) return Flush();
  // Otherwise once this pass of the event loop is over, together with the other answers it
  // makes ready.
  flush_posted_ = true;
  asio::post(executor_, [self = shared_from_this()] { self->Flush(); });
}

void LinkSession::Flush() {
  flush_posted_ = false;
  if (closed_ || writing_now_ || queued_.empty()) return;
  {
    absl::MutexLock lock(&wire_mu_);
    if (wire_taken_) return;  // the rest of a worker's partial write: it ends with a Flush
    wire_taken_ = true;
  }
  // As many answers as fit in one write.
  size_t n = 0, count = 0;
  for (; n < queued_.size(); ++n) {
    const size_t needed = 2 + queued_[n].response.tail.size();
    if (n > 0 && count + needed > kBuffersPerWrite) break;
    count += needed;
  }
  writing_.assign(std::make_move_iterator(queued_.begin()),
                  std::make_move_iterator(queued_.begin() + static_cast<ptrdiff_t>(n)));
  queued_.erase(queued_.begin(), queued_.begin() + static_cast<ptrdiff_t>(n));
  // Buffers into the answers where they now stay until written (a short string's bytes live
  // inside it, so they are taken only after the move).
  std::vector<asio::const_buffer>& buffers = out_;  // reused: no allocation per write
  buffers.clear();
  for (const Answer& a : writing_) {
    AppendMessageBuffers(buffers, a.head, a.response.body, a.response.tail);
  }
  writing_now_ = true;
  WriteNowOrLater(stream_, buffers,
                  [self = shared_from_this()](beast::error_code ec) { self->OnFlushed(ec); });
  if (writing_now_ && !closed_) {
    // The socket did not take it all at once: the rest must go within body_timeout.
    write_since_ = core_->clock.Now();
    ArmDeadline();
  }
}

void LinkSession::OnFlushed(beast::error_code ec) {
  writing_now_ = false;
  {
    absl::MutexLock lock(&wire_mu_);
    wire_taken_ = false;
  }
  const bool report = !ec && !core_->stopped.load(std::memory_order_relaxed);
  const SteadyTime now = core_->clock.Now();
  for (Answer& a : writing_) {
    if (report && a.response.on_sent) a.response.on_sent(now);
    unsent_bytes_ -= a.bytes;
    Retire();
  }
  writing_.clear();
  if (ec) {
    Close();
    return;
  }
  if (!queued_.empty()) Flush();
  if (paused_ && unsent_bytes_ <= kMaxUnsentBytes / 2) {
    paused_ = false;
    if (ParseBuffered() && !paused_) Read();
  }
}

bool LinkSession::Release() {
  core_->busy.fetch_sub(1);
  return open_requests_.fetch_sub(1, std::memory_order_acq_rel) == 1 &&
         core_->draining.load(std::memory_order_relaxed);
}

void LinkSession::Retire() {
  if (Release()) HalfClose();
}

void LinkSession::Drain() {
  if (open_requests_.load(std::memory_order_acquire) == 0) HalfClose();
}

void LinkSession::HalfClose() {
  if (closed_ || half_closed_ || writing_now_ || !queued_.empty()) return;
  half_closed_ = true;
  beast::error_code ec;
  stream_.socket().shutdown(tcp::socket::shutdown_send, ec);  // over TLS too: framing shows a cut
  if (ec) Close();
}

void StartLink(IoStream stream, beast::flat_buffer buffered, std::shared_ptr<Core> core, int loop,
               ConnectionLimits::Slot slot, std::string member) {
  auto link = std::make_shared<LinkSession>(std::move(stream), std::move(buffered), std::move(core),
                                            loop, std::move(slot), std::move(member));
  link->Start();
}

std::shared_ptr<LinkSession> LinkPtr(LinkSession& link) { return link.weak_from_this().lock(); }

void CloseLink(LinkSession& link) { link.Close(); }

const std::string& LinkMember(const LinkSession& link) { return link.member(); }

void DrainLink(LinkSession& link) { link.Drain(); }

}  // namespace hivemesh::http_internal
