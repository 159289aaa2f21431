// The client end of the h2c prototype (h2c_transport.h): one HTTP/2 connection per loop and peer,
// each request a stream, answers matched by nghttp2 by stream id.
#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <unordered_map>

#include "base/strings.h"
#include "h2c/h2c_transport.h"
#include "h2c/h2c_wire.h"
#include "identity/member_credential.h"
#include "transport/io_threads_asio.h"
#include "transport/io_write.h"

namespace hivemesh::h2c {
namespace {

using namespace h2c_internal;
using SteadyClock = std::chrono::steady_clock;

class Conn;

struct Core {
  Core(int loops, CredentialFn c) : credential(std::move(c)), conns(loops) {}
  const CredentialFn credential;
  // conns[i]: loop i's connection to each peer address; touched only on loop i's thread.
  std::vector<std::unordered_map<std::string, std::shared_ptr<Conn>>> conns;
  std::atomic<bool> stopped{false};
};

struct Call {
  Call(PeerRequest r, PeerCallback d) : request(std::move(r)), done(std::move(d)) {}
  PeerRequest request;
  PeerCallback done;
  int loop = 0;
  SteadyClock::time_point deadline;
  size_t total = 0;       // body and tail bytes
  size_t framed = 0;      // of them, in DATA frames handed to the outbox
  bool finished = false;  // its callback has run or is queued
  PeerResponse response;
  std::string body;
};

absl::Status TransportError(const std::string& address, error_code ec) {
  if (ec == asio::error::connection_refused) {
    return absl::UnavailableError(StrCat("connection refused by ", address));
  }
  return absl::UnavailableError(StrCat("h2c connection to ", address, " failed: ", ec.message()));
}

bool ParseEndpoint(const std::string& address, tcp::endpoint* out) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos) return false;
  error_code ec;
  const asio::ip::address ip = asio::ip::make_address(address.substr(0, colon), ec);
  uint16_t port = 0;
  const char* end = address.data() + address.size();
  if (ec || std::from_chars(address.data() + colon + 1, end, port).ptr != end) return false;
  *out = tcp::endpoint(ip, port);
  return true;
}

// Points `out` at `n` bytes of the call's body and tail, from `from` on.
void PointAt(const PeerRequest& r, size_t from, size_t n, Outbox& out) {
  auto take = [&](std::string_view piece) {
    if (n == 0) return;
    if (from >= piece.size()) {
      from -= piece.size();
      return;
    }
    const size_t k = std::min(n, piece.size() - from);
    out.Point(piece.data() + from, k);
    n -= k;
    from = 0;
  };
  take(r.body);
  for (const Tensor& t : r.tail) take(t.data());
}

class Conn : public std::enable_shared_from_this<Conn> {
 public:
  Conn(std::shared_ptr<Core> core, int loop, std::string address, std::string peer_node,
       asio::any_io_executor executor)
      : core_(std::move(core)),
        loop_(loop),
        address_(std::move(address)),
        peer_node_(std::move(peer_node)),
        executor_(std::move(executor)),
        socket_(executor_),
        timer_(executor_),
        in_(kReadSize) {
    nghttp2_option* options = NewOptions();
    nghttp2_session_client_new2(&session_, Callbacks(), this, options);
    nghttp2_option_del(options);
  }
  ~Conn() { nghttp2_session_del(session_); }

  Outbox& outbox() { return out_; }

  void Open(const tcp::endpoint& endpoint) {
    // The session's first frames: the preface's SETTINGS, then the opening stream.
    if (SubmitSettings(session_) != 0) return Fail(asio::error::no_memory);
    std::string credential;
    if (core_->credential && !peer_node_.empty()) {
      credential = core_->credential(peer_node_, identity::kPurposeLink);
    }
    std::vector<nghttp2_nv> nva;
    AddField(nva, ":method", "GET");
    AddField(nva, ":scheme", "http");
    AddField(nva, ":authority", address_);
    AddField(nva, ":path", "/v2/health/live");
    if (!credential.empty()) AddField(nva, "hivemesh-credential", credential);
    opening_ = nghttp2_submit_request(session_, nullptr, nva.data(), nva.size(), nullptr, nullptr);
    if (opening_ < 0) return Fail(asio::error::no_memory);
    socket_.async_connect(endpoint, [self = shared_from_this()](error_code ec) {
      if (self->closed_) return;
      if (ec) return self->Close(ec);
      error_code ignored;
      self->socket_.set_option(tcp::no_delay(true), ignored);
      self->socket_.non_blocking(true, ignored);
      EnableKeepAlive(self->socket_);
      self->open_ = true;
      self->Flush();
      self->Read();
    });
  }

  void Submit(const std::shared_ptr<Call>& call) {
    const PeerRequest& r = call->request;
    call->total = r.body.size();
    for (const Tensor& t : r.tail) call->total += t.data().size();
    std::vector<nghttp2_nv>& nva = nva_;  // reused: no allocation per request
    nva.clear();
    AddField(nva, ":method", r.method);
    AddField(nva, ":scheme", "http");
    AddField(nva, ":authority", address_);
    AddField(nva, ":path", r.target);
    const std::string length = std::to_string(call->total);
    AddField(nva, "content-length", length);
    for (const auto& [k, v] : r.headers) AddField(nva, k, v);  // nghttp2 lower-cases names
    std::string left;
    if (r.send_time_left) {
      const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(call->deadline -
                                                                            SteadyClock::now());
      left = std::to_string(std::max<int64_t>(1, ms.count()));
      AddField(nva, "inference-timeout-ms", left);
    }
    nghttp2_data_provider data{};
    data.source.ptr = call.get();
    data.read_callback = &Conn::ReadData;
    // nghttp2 copies the fields; the call, its stream's user data, stays in calls_ until the
    // stream closes.
    const int32_t id = nghttp2_submit_request(session_, nullptr, nva.data(), nva.size(),
                                              call->total > 0 ? &data : nullptr, call.get());
    if (id < 0) {
      call->finished = true;
      asio::post(executor_, [call, address = address_] {
        if (call->done)
          call->done(
              absl::ResourceExhaustedError(StrCat("h2c: no stream for a request to ", address)));
      });
      return;
    }
    calls_.emplace(id, call);
    ++unanswered_;
    ArmTimer(call->deadline);
    if (!open_) return;
    // Alone on the connection, the request goes at once; otherwise with the others of this pass.
    if (unanswered_ == 1 && !writing_ && !flush_posted_) return Flush();
    ScheduleFlush();
  }

  // Ends the connection: every call not yet answered fails with what `ec` says.
  void Close(error_code ec) {
    if (closed_) return;
    closed_ = true;
    auto& conns = core_->conns[static_cast<size_t>(loop_)];
    auto it = conns.find(address_);
    if (it != conns.end() && it->second.get() == this) conns.erase(it);
    error_code ignored;
    if (socket_.is_open()) {
      socket_.shutdown(tcp::socket::shutdown_both, ignored);
      socket_.close(ignored);
    }
    timer_.cancel();
    auto calls = std::move(calls_);
    calls_.clear();
    const bool stopped = core_->stopped.load(std::memory_order_relaxed);
    for (auto& [_, call] : calls) {
      if (call->finished) continue;
      call->finished = true;
      if (!stopped && call->done) call->done(TransportError(address_, ec));
    }
  }

 private:
  static void AddField(std::vector<nghttp2_nv>& nva, std::string_view name,
                       std::string_view value) {
    nva.push_back({reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
                   reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(),
                   value.size(), FieldFlags(name)});
  }

  static const nghttp2_session_callbacks* Callbacks() {
    static nghttp2_session_callbacks* callbacks = [] {
      nghttp2_session_callbacks* c = nullptr;
      nghttp2_session_callbacks_new(&c);
      nghttp2_session_callbacks_set_send_callback(c, &SendCallback<Conn>);
      nghttp2_session_callbacks_set_send_data_callback(c, &Conn::SendData);
      nghttp2_session_callbacks_set_data_source_read_length_callback(c, &Conn::ReadLength);
      nghttp2_session_callbacks_set_on_begin_headers_callback(c, &Conn::OnBeginHeaders);
      nghttp2_session_callbacks_set_on_header_callback(c, &Conn::OnHeader);
      nghttp2_session_callbacks_set_on_data_chunk_recv_callback(c, &Conn::OnDataChunk);
      nghttp2_session_callbacks_set_on_frame_recv_callback(c, &Conn::OnFrameRecv);
      nghttp2_session_callbacks_set_on_stream_close_callback(c, &Conn::OnStreamClose);
      return c;
    }();
    return callbacks;
  }

  static ssize_t ReadData(nghttp2_session*, int32_t, uint8_t*, size_t length, uint32_t* flags,
                          nghttp2_data_source* source, void*) {
    const Call& call = *static_cast<const Call*>(source->ptr);
    const size_t left = call.total - call.framed;
    const size_t n = std::min(left, length);
    *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
    if (n == left) *flags |= NGHTTP2_DATA_FLAG_EOF;
    return static_cast<ssize_t>(n);
  }

  // As large a DATA frame as the windows and the peer allow, and no larger than what is left.
  static ssize_t ReadLength(nghttp2_session* session, uint8_t, int32_t stream,
                            int32_t session_window, int32_t stream_window, uint32_t max_frame,
                            void*) {
    int64_t n = std::min<int64_t>({session_window, stream_window, max_frame});
    if (auto* call =
            static_cast<const Call*>(nghttp2_session_get_stream_user_data(session, stream))) {
      n = std::min<int64_t>(n, static_cast<int64_t>(call->total - call->framed));
    }
    return static_cast<ssize_t>(std::max<int64_t>(n, 1));
  }

  static int SendData(nghttp2_session*, nghttp2_frame* frame, const uint8_t* framehd, size_t length,
                      nghttp2_data_source* source, void* user) {
    Conn& self = *static_cast<Conn*>(user);
    if (self.out_.full()) return NGHTTP2_ERR_WOULDBLOCK;
    Call& call = *static_cast<Call*>(source->ptr);
    self.out_.Copy(framehd, 9);  // no padding: the frame is its head and the bytes
    PointAt(call.request, call.framed, length, self.out_);
    call.framed += length;
    // The bytes stay where they are until written, even if the call ends before.
    auto it = self.calls_.find(frame->hd.stream_id);
    if (it != self.calls_.end()) self.out_.Hold(it->second);
    return 0;
  }

  static int OnBeginHeaders(nghttp2_session* session, const nghttp2_frame* frame, void*) {
    if (auto* call = static_cast<Call*>(
            nghttp2_session_get_stream_user_data(session, frame->hd.stream_id))) {
      call->response.headers.reserve(8, 256);  // a peer's answer has a handful of fields
    }
    return 0;
  }

  static int OnHeader(nghttp2_session* session, const nghttp2_frame* frame, const uint8_t* name,
                      size_t namelen, const uint8_t* value, size_t valuelen, uint8_t, void* user) {
    Conn& self = *static_cast<Conn*>(user);
    const std::string_view n(reinterpret_cast<const char*>(name), namelen);
    const std::string_view v(reinterpret_cast<const char*>(value), valuelen);
    int status = 0;
    if (n == ":status") std::from_chars(v.data(), v.data() + v.size(), status);
    auto* call =
        static_cast<Call*>(nghttp2_session_get_stream_user_data(session, frame->hd.stream_id));
    if (call == nullptr) {
      if (frame->hd.stream_id == self.opening_ && status != 0) self.opening_status_ = status;
      return 0;
    }
    if (status != 0) {
      call->response.status = status;
    } else if (!n.starts_with(':')) {
      if (n == "content-length") {
        size_t length = 0;
        std::from_chars(v.data(), v.data() + v.size(), length);
        call->body.reserve(std::min<size_t>(length, 256u << 20));
      }
      call->response.headers.Add(n, v);
    }
    return 0;
  }

  static int OnDataChunk(nghttp2_session* session, uint8_t, int32_t stream, const uint8_t* data,
                         size_t len, void*) {
    if (auto* call = static_cast<Call*>(nghttp2_session_get_stream_user_data(session, stream))) {
      call->body.append(reinterpret_cast<const char*>(data), len);
    }
    return 0;
  }

  static int OnFrameRecv(nghttp2_session* session, const nghttp2_frame* frame, void* user) {
    Conn& self = *static_cast<Conn*>(user);
    if (frame->hd.type == NGHTTP2_GOAWAY) {
      self.goaway_ = true;
      return 0;
    }
    if ((frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) ||
        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) == 0) {
      return 0;
    }
    if (frame->hd.stream_id == self.opening_) {
      // The peer refused this node's link credential: nothing on the connection will be served.
      if (self.opening_status_ != 200) self.refused_ = true;
      return 0;
    }
    auto* call =
        static_cast<Call*>(nghttp2_session_get_stream_user_data(session, frame->hd.stream_id));
    if (call == nullptr || call->finished) return 0;
    call->finished = true;
    --self.unanswered_;
    auto it = self.calls_.find(frame->hd.stream_id);
    if (it != self.calls_.end()) self.answered_.push_back(it->second);
    return 0;
  }

  static int OnStreamClose(nghttp2_session*, int32_t stream, uint32_t, void* user) {
    Conn& self = *static_cast<Conn*>(user);
    auto it = self.calls_.find(stream);
    if (it == self.calls_.end()) return 0;
    std::shared_ptr<Call> call = std::move(it->second);
    self.calls_.erase(it);
    if (!call->finished) {  // reset by the peer before its answer ended
      call->finished = true;
      --self.unanswered_;
      self.reset_.push_back(std::move(call));
    }
    return 0;
  }

  void ScheduleFlush() {
    if (flush_posted_ || writing_) return;
    flush_posted_ = true;
    // After the handlers of this pass of the loop: the requests they make go out together.
    asio::post(executor_, [self = shared_from_this()] { self->Flush(); });
  }

  void Flush() {
    flush_posted_ = false;
    if (!open_ || closed_ || writing_) return;
    if (nghttp2_session_send(session_) != 0) return Fail(asio::error::invalid_argument);
    if (out_.empty()) return;
    writing_ = true;
    Write();
  }

  void Write() {
    bool all = false;
    const error_code ec = out_.WriteSome(socket_.native_handle(), &all);
    if (ec) return Fail(ec);
    if (!all) {
      socket_.async_wait(tcp::socket::wait_write, [self = shared_from_this()](error_code ec) {
        if (self->closed_) return;
        if (ec) return self->Close(ec);
        self->Write();
      });
      return;
    }
    out_.Clear();
    writing_ = false;
    if (nghttp2_session_want_write(session_)) Flush();
  }

  // Closes from the loop, never inside the caller's Send.
  void Fail(error_code ec) {
    asio::post(executor_, [self = shared_from_this(), ec] { self->Close(ec); });
  }

  void Read() {
    socket_.async_read_some(
        asio::buffer(in_),
        [self = shared_from_this()](error_code ec, size_t n) { self->OnRead(ec, n); });
  }

  void OnRead(error_code ec, size_t n) {
    if (closed_) return;
    if (ec) return Close(ec);
    const ssize_t rv = nghttp2_session_mem_recv(session_, in_.data(), n);
    if (rv < 0) return Close(asio::error::invalid_argument);
    // The callbacks run outside nghttp2's: they may send the next requests at once.
    std::vector<std::shared_ptr<Call>> answered, reset;
    answered.swap(answered_);
    reset.swap(reset_);
    const bool stopped = core_->stopped.load(std::memory_order_relaxed);
    for (const std::shared_ptr<Call>& call : answered) {
      call->response.body = std::make_shared<const std::string>(std::move(call->body));
      if (!stopped && call->done) call->done(std::move(call->response));
      call->done = nullptr;
    }
    for (const std::shared_ptr<Call>& call : reset) {
      if (!stopped && call->done) {
        call->done(absl::UnavailableError(StrCat("h2c: ", address_, " reset the stream")));
      }
      call->done = nullptr;
    }
    answered_.swap(answered);  // keeps the capacity
    answered_.clear();
    if (refused_) return Close(asio::error::access_denied);
    if (goaway_ && unanswered_ == 0) return Close(asio::error::connection_reset);
    if (nghttp2_session_want_write(session_)) ScheduleFlush();
    Read();
  }

  // Arms the timer for `earliest`, unless it is already armed for a time no later (as the
  // link does: a call's deadline is checked when the timer fires).
  void ArmTimer(SteadyClock::time_point earliest) {
    if (closed_ || (timer_waiting_ && armed_ <= earliest)) return;
    armed_ = earliest;
    timer_waiting_ = true;
    timer_.expires_at(earliest);
    timer_.async_wait([self = shared_from_this(), earliest](error_code ec) {
      if (ec || self->armed_ != earliest) return;
      self->timer_waiting_ = false;
      self->OnTimer();
    });
  }

  // Fails the calls past their deadline and resets their streams; the connection stays.
  void OnTimer() {
    if (closed_) return;
    const auto now = SteadyClock::now();
    auto next = SteadyClock::time_point::max();
    std::vector<std::shared_ptr<Call>> expired;
    for (auto& [id, call] : calls_) {
      if (call->finished) continue;
      if (call->deadline > now) {
        next = std::min(next, call->deadline);
        continue;
      }
      call->finished = true;
      --unanswered_;
      nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
      expired.push_back(call);
    }
    if (next != SteadyClock::time_point::max()) ArmTimer(next);
    if (!expired.empty()) ScheduleFlush();
    const bool stopped = core_->stopped.load(std::memory_order_relaxed);
    for (const std::shared_ptr<Call>& call : expired) {
      if (!stopped && call->done) {
        call->done(absl::DeadlineExceededError(StrCat("h2c: no answer from ", address_)));
      }
      call->done = nullptr;
    }
  }

  const std::shared_ptr<Core> core_;
  const int loop_;
  const std::string address_;
  const std::string peer_node_;
  const asio::any_io_executor executor_;
  tcp::socket socket_;
  asio::steady_timer timer_;
  nghttp2_session* session_ = nullptr;
  std::vector<uint8_t> in_;
  Outbox out_;
  std::vector<nghttp2_nv> nva_;
  // Every call from its submission until its stream closes, by stream id.
  std::unordered_map<int32_t, std::shared_ptr<Call>> calls_;
  size_t unanswered_ = 0;                        // calls in calls_ not yet finished
  std::vector<std::shared_ptr<Call>> answered_;  // during a read: whose callbacks run after it
  std::vector<std::shared_ptr<Call>> reset_;
  int32_t opening_ = -1;  // the stream that carries the link credential
  int opening_status_ = 0;
  bool refused_ = false;
  bool goaway_ = false;
  bool open_ = false;
  bool closed_ = false;
  bool writing_ = false;
  bool flush_posted_ = false;
  SteadyClock::time_point armed_;
  bool timer_waiting_ = false;
};

void Start(const std::shared_ptr<Core>& core, const std::shared_ptr<Call>& call,
           const asio::any_io_executor& executor) {
  if (core->stopped.load(std::memory_order_relaxed)) return;
  auto& conns = core->conns[static_cast<size_t>(call->loop)];
  auto it = conns.find(call->request.address);
  if (it == conns.end()) {
    tcp::endpoint endpoint;
    if (!ParseEndpoint(call->request.address, &endpoint)) {
      asio::post(executor, [call] {
        if (call->done) call->done(absl::InvalidArgumentError("h2c: not ip:port"));
      });
      return;
    }
    auto conn = std::make_shared<Conn>(core, call->loop, call->request.address,
                                       call->request.peer_node, executor);
    it = conns.emplace(call->request.address, conn).first;
    conn->Open(endpoint);
  }
  it->second->Submit(call);
}

class ClientImpl final : public H2cClient {
 public:
  ClientImpl(std::shared_ptr<IoThreads> io, CredentialFn credential)
      : io_(std::move(io)), core_(std::make_shared<Core>(io_->size(), std::move(credential))) {}
  ~ClientImpl() override { Stop(); }

  void Send(PeerRequest request, PeerCallback done) override {
    if (core_->stopped.load(std::memory_order_relaxed)) return;
    auto call = std::make_shared<Call>(std::move(request), std::move(done));
    call->deadline = SteadyClock::now() + call->request.timeout;
    const int current = io_->CurrentLoop();
    call->loop = current >= 0 ? current : io_->NextLoop();
    asio::any_io_executor executor = AsioContext(*io_, call->loop).get_executor();
    if (current >= 0) return Start(core_, call, executor);
    asio::post(executor, [core = core_, call, executor] { Start(core, call, executor); });
  }

  void Stop() override {
    if (core_->stopped.exchange(true)) return;
    for (int loop = 0; loop < io_->size(); ++loop) {
      io_->RunOn(loop, [&] {
        auto conns = std::move(core_->conns[static_cast<size_t>(loop)]);
        core_->conns[static_cast<size_t>(loop)].clear();
        for (auto& [_, conn] : conns) conn->Close(asio::error::operation_aborted);
      });
    }
  }

 private:
  const std::shared_ptr<IoThreads> io_;
  const std::shared_ptr<Core> core_;
};

}  // namespace

std::unique_ptr<H2cClient> H2cClient::Create(std::shared_ptr<IoThreads> io,
                                             CredentialFn credential) {
  return std::make_unique<ClientImpl>(std::move(io), std::move(credential));
}

}  // namespace hivemesh::h2c
