// The server end of the h2c prototype (h2c_transport.h): each stream is a request for the
// handler; answers submitted while a read is processed leave in one write after it.
#include <algorithm>
#include <atomic>
#include <charconv>
#include <unordered_map>
#include <unordered_set>

#include "base/strings.h"
#include "h2c/h2c_transport.h"
#include "h2c/h2c_wire.h"
#include "transport/io_threads_asio.h"
#include "transport/io_write.h"

namespace hivemesh::h2c {
namespace {

using namespace h2c_internal;

class Session;

struct Core {
  Core(H2cServerOptions o, HttpHandler h, std::shared_ptr<IoThreads> i)
      : options(std::move(o)),
        handler(std::move(h)),
        io(std::move(i)),
        acceptor(AsioContext(*io, 0).get_executor()),
        sessions(static_cast<size_t>(io->size())) {}
  const H2cServerOptions options;
  const HttpHandler handler;
  const std::shared_ptr<IoThreads> io;
  tcp::acceptor acceptor;
  int next_loop = 0;  // on loop 0's thread (the acceptor's)
  // sessions[i]: the open sessions of loop i; touched only on loop i's thread.
  std::vector<std::unordered_set<std::shared_ptr<Session>>> sessions;
  std::atomic<bool> stopped{false};
};

// True if `a` equals `lower` (lower case) ignoring ASCII case.
bool EqualsLower(std::string_view a, std::string_view lower) {
  if (a.size() != lower.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char c = a[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != lower[i]) return false;
  }
  return true;
}

// One stream: the request as it arrives, then its answer until written.
class Stream final : public HttpRequest {
 public:
  std::string_view method() const override { return Text(method_); }
  std::string_view target() const override { return Text(path_); }
  std::string_view header(std::string_view name) const override {
    const Field* f = Find(name);
    return f == nullptr ? std::string_view() : Text(f->value);
  }
  bool has_header(std::string_view name) const override { return Find(name) != nullptr; }
  std::vector<std::pair<std::string_view, std::string_view>> headers() const override {
    std::vector<std::pair<std::string_view, std::string_view>> out;
    for (const Field& f : fields_) out.emplace_back(Text(f.name), Text(f.value));
    return out;
  }
  std::shared_ptr<const std::string> body() const override { return body_shared; }
  SteadyTime received() const override { return received_at; }
  std::string_view remote_address() const override { return *remote; }
  std::string_view link_member() const override { return *member; }

  // Room for the fields of a request such as a forwarded one.
  void Reserve() {
    text_.reserve(512);
    fields_.reserve(12);
  }
  void AddField(std::string_view name, std::string_view value) {
    const Span n = Append(name), v = Append(value);
    if (name == ":method") {
      method_ = v;
    } else if (name == ":path") {
      path_ = v;
    } else if (!name.starts_with(':')) {
      fields_.push_back({n, v});
    }
  }

  int32_t id = 0;
  std::shared_ptr<const std::string> remote;
  std::shared_ptr<const std::string> member;
  std::string arriving;  // the body as it arrives
  std::shared_ptr<const std::string> body_shared;
  SteadyTime received_at;
  HttpResponse response;
  size_t total = 0;   // the answer's body and tail bytes
  size_t framed = 0;  // of them, in DATA frames handed to the outbox

 private:
  struct Span {
    uint32_t at = 0, size = 0;
  };
  struct Field {
    Span name, value;
  };
  Span Append(std::string_view s) {
    Span span{static_cast<uint32_t>(text_.size()), static_cast<uint32_t>(s.size())};
    text_.append(s);
    return span;
  }
  std::string_view Text(Span s) const { return {text_.data() + s.at, s.size}; }
  const Field* Find(std::string_view name) const {
    // Names arrive in lower case (HTTP/2); `name` may not be.
    for (const Field& f : fields_) {
      if (EqualsLower(name, Text(f.name))) return &f;
    }
    return nullptr;
  }
  std::string text_;
  Span method_, path_;
  std::vector<Field> fields_;
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, std::shared_ptr<Core> core, int loop)
      : socket_(std::move(socket)),
        core_(std::move(core)),
        loop_(loop),
        executor_(AsioContext(*core_->io, loop).get_executor()),
        in_(kReadSize) {
    error_code ec;
    const tcp::endpoint remote = socket_.remote_endpoint(ec);
    remote_ = std::make_shared<const std::string>(ec ? "" : remote.address().to_string());
    member_ = std::make_shared<const std::string>();
    nghttp2_option* options = NewOptions();
    nghttp2_session_server_new2(&session_, Callbacks(), this, options);
    nghttp2_option_del(options);
  }
  ~Session() { nghttp2_session_del(session_); }

  Outbox& outbox() { return out_; }

  void Start() {
    error_code ignored;
    socket_.set_option(tcp::no_delay(true), ignored);
    socket_.non_blocking(true, ignored);
    EnableKeepAlive(socket_);
    if (SubmitSettings(session_) != 0) return Close();
    Flush();
    Read();
  }

  void Close() {
    if (closed_) return;
    closed_ = true;
    error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
    core_->sessions[static_cast<size_t>(loop_)].erase(shared_from_this());
  }

 private:
  static const nghttp2_session_callbacks* Callbacks() {
    static nghttp2_session_callbacks* callbacks = [] {
      nghttp2_session_callbacks* c = nullptr;
      nghttp2_session_callbacks_new(&c);
      nghttp2_session_callbacks_set_send_callback(c, &SendCallback<Session>);
      nghttp2_session_callbacks_set_send_data_callback(c, &Session::SendData);
      nghttp2_session_callbacks_set_data_source_read_length_callback(c, &Session::ReadLength);
      nghttp2_session_callbacks_set_on_begin_headers_callback(c, &Session::OnBeginHeaders);
      nghttp2_session_callbacks_set_on_header_callback(c, &Session::OnHeader);
      nghttp2_session_callbacks_set_on_data_chunk_recv_callback(c, &Session::OnDataChunk);
      nghttp2_session_callbacks_set_on_frame_recv_callback(c, &Session::OnFrameRecv);
      nghttp2_session_callbacks_set_on_stream_close_callback(c, &Session::OnStreamClose);
      return c;
    }();
    return callbacks;
  }

  static int OnBeginHeaders(nghttp2_session* session, const nghttp2_frame* frame, void* user) {
    Session& self = *static_cast<Session*>(user);
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    auto stream = std::make_shared<Stream>();
    stream->Reserve();
    stream->id = frame->hd.stream_id;
    stream->remote = self.remote_;
    nghttp2_session_set_stream_user_data(session, stream->id, stream.get());
    self.streams_.emplace(stream->id, std::move(stream));
    return 0;
  }

  static int OnHeader(nghttp2_session* session, const nghttp2_frame* frame, const uint8_t* name,
                      size_t namelen, const uint8_t* value, size_t valuelen, uint8_t, void*) {
    auto* stream =
        static_cast<Stream*>(nghttp2_session_get_stream_user_data(session, frame->hd.stream_id));
    if (stream == nullptr) return 0;
    const std::string_view n(reinterpret_cast<const char*>(name), namelen);
    const std::string_view v(reinterpret_cast<const char*>(value), valuelen);
    if (n == "content-length") {
      size_t length = 0;
      std::from_chars(v.data(), v.data() + v.size(), length);
      stream->arriving.reserve(std::min<size_t>(length, 64u << 20));
    }
    stream->AddField(n, v);
    return 0;
  }

  static int OnDataChunk(nghttp2_session* session, uint8_t, int32_t id, const uint8_t* data,
                         size_t len, void*) {
    if (auto* stream = static_cast<Stream*>(nghttp2_session_get_stream_user_data(session, id))) {
      stream->arriving.append(reinterpret_cast<const char*>(data), len);
    }
    return 0;
  }

  static int OnFrameRecv(nghttp2_session* session, const nghttp2_frame* frame, void* user) {
    Session& self = *static_cast<Session*>(user);
    if ((frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) ||
        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) == 0) {
      return 0;
    }
    auto* stream =
        static_cast<Stream*>(nghttp2_session_get_stream_user_data(session, frame->hd.stream_id));
    if (stream == nullptr) return 0;
    auto it = self.streams_.find(stream->id);
    if (it != self.streams_.end()) self.ready_.push_back(it->second);
    return 0;
  }

  static int OnStreamClose(nghttp2_session*, int32_t id, uint32_t, void* user) {
    static_cast<Session*>(user)->streams_.erase(id);
    return 0;
  }

  static ssize_t ReadData(nghttp2_session*, int32_t, uint8_t*, size_t length, uint32_t* flags,
                          nghttp2_data_source* source, void*) {
    const Stream& s = *static_cast<const Stream*>(source->ptr);
    const size_t left = s.total - s.framed;
    const size_t n = std::min(left, length);
    *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
    if (n == left) *flags |= NGHTTP2_DATA_FLAG_EOF;
    return static_cast<ssize_t>(n);
  }

  static ssize_t ReadLength(nghttp2_session* session, uint8_t, int32_t id, int32_t session_window,
                            int32_t stream_window, uint32_t max_frame, void*) {
    int64_t n = std::min<int64_t>({session_window, stream_window, max_frame});
    if (auto* s = static_cast<const Stream*>(nghttp2_session_get_stream_user_data(session, id))) {
      n = std::min<int64_t>(n, static_cast<int64_t>(s->total - s->framed));
    }
    return static_cast<ssize_t>(std::max<int64_t>(n, 1));
  }

  static int SendData(nghttp2_session*, nghttp2_frame* frame, const uint8_t* framehd, size_t length,
                      nghttp2_data_source* source, void* user) {
    Session& self = *static_cast<Session*>(user);
    if (self.out_.full()) return NGHTTP2_ERR_WOULDBLOCK;
    Stream& s = *static_cast<Stream*>(source->ptr);
    self.out_.Copy(framehd, 9);
    size_t from = s.framed, n = length;
    auto take = [&](std::string_view piece) {
      if (n == 0) return;
      if (from >= piece.size()) {
        from -= piece.size();
        return;
      }
      const size_t k = std::min(n, piece.size() - from);
      self.out_.Point(piece.data() + from, k);
      n -= k;
      from = 0;
    };
    take(s.response.body);
    for (const Tensor& t : s.response.tail) take(t.data());
    s.framed += length;
    // The stream may close once its last frame is handed over, before it is written.
    auto it = self.streams_.find(frame->hd.stream_id);
    if (it != self.streams_.end()) self.out_.Hold(it->second);
    return 0;
  }

  void Read() {
    socket_.async_read_some(
        asio::buffer(in_),
        [self = shared_from_this()](error_code ec, size_t n) { self->OnRead(ec, n); });
  }

  void OnRead(error_code ec, size_t n) {
    if (closed_) return;
    if (ec) return Close();
    if (nghttp2_session_mem_recv(session_, in_.data(), n) < 0) return Close();
    // The requests that ended in this read go to the handler outside nghttp2's callbacks; the
    // answers it gives now leave together, in one write after them.
    std::vector<std::shared_ptr<Stream>> ready;
    ready.swap(ready_);
    dispatching_ = true;
    for (std::shared_ptr<Stream>& stream : ready) Dispatch(std::move(stream));
    dispatching_ = false;
    ready.clear();
    ready_.swap(ready);  // keeps the capacity
    if (closed_) return;
    Flush();
    Read();
  }

  void Dispatch(std::shared_ptr<Stream> stream) {
    stream->received_at = core_->options.clock->Now();
    // The member as of now: the opening stream, dispatched first, may have just named it.
    stream->member = member_;
    stream->body_shared = std::make_shared<const std::string>(std::move(stream->arriving));
    stream->arriving.clear();
    if (!authorized_) {
      // The connection's first stream carries the link credential.
      HttpResponse r;
      if (!core_->options.authorize_link) {
        authorized_ = true;
      } else if (absl::StatusOr<std::string> member = core_->options.authorize_link(*stream);
                 member.ok()) {
        authorized_ = true;
        member_ = std::make_shared<const std::string>(*std::move(member));
        r.body = "{}";
        return Answer(stream, std::move(r));
      } else {
        r.status = 403;
        r.body = StrCat("{\"error\":\"", member.status().message(), "\"}");
        return Answer(stream, std::move(r));
      }
    }
    ++open_;
    Stream& request = *stream;
    core_->handler(request, [self = shared_from_this(),
                             stream = std::move(stream)](HttpResponse r) mutable {
      if (self->executor_.running_in_this_thread()) {
        --self->open_;
        return self->Answer(stream, std::move(r));
      }
      asio::post(self->executor_, [self, stream = std::move(stream), r = std::move(r)]() mutable {
        --self->open_;
        self->Answer(stream, std::move(r));
      });
    });
  }

  void Answer(const std::shared_ptr<Stream>& stream, HttpResponse r) {
    if (closed_) return;
    stream->response = std::move(r);
    const HttpResponse& resp = stream->response;
    stream->total = resp.body.size();
    for (const Tensor& t : resp.tail) stream->total += t.data().size();
    const std::string status = std::to_string(resp.status);
    const std::string length = std::to_string(stream->total);
    std::vector<nghttp2_nv>& nva = nva_;
    nva.clear();
    auto add = [&nva](std::string_view n, std::string_view v) {
      nva.push_back({reinterpret_cast<uint8_t*>(const_cast<char*>(n.data())),
                     reinterpret_cast<uint8_t*>(const_cast<char*>(v.data())), n.size(), v.size(),
                     FieldFlags(n)});
    };
    add(":status", status);
    add("content-type", resp.content_type);
    add("content-length", length);
    for (const auto& [k, v] : resp.headers) add(k, v);  // nghttp2 lower-cases names
    nghttp2_data_provider data{};
    data.source.ptr = stream.get();
    data.read_callback = &Session::ReadData;
    if (nghttp2_submit_response(session_, stream->id, nva.data(), nva.size(),
                                stream->total > 0 ? &data : nullptr) != 0) {
      return;  // the stream is gone (reset by the client)
    }
    if (dispatching_) return;  // OnRead flushes after the read's requests
    // An answer from another thread: alone, it goes at once; otherwise with those of this pass.
    if (open_ == 0 && !writing_ && !flush_posted_) return Flush();
    ScheduleFlush();
  }

  void ScheduleFlush() {
    if (flush_posted_ || writing_) return;
    flush_posted_ = true;
    asio::post(executor_, [self = shared_from_this()] { self->Flush(); });
  }

  void Flush() {
    flush_posted_ = false;
    if (closed_ || writing_) return;
    if (nghttp2_session_send(session_) != 0) return Close();
    if (out_.empty()) {
      if (!nghttp2_session_want_read(session_) && !nghttp2_session_want_write(session_)) Close();
      return;
    }
    writing_ = true;
    Write();
  }

  void Write() {
    bool all = false;
    const error_code ec = out_.WriteSome(socket_.native_handle(), &all);
    if (ec) return Close();
    if (!all) {
      socket_.async_wait(tcp::socket::wait_write, [self = shared_from_this()](error_code ec) {
        if (self->closed_) return;
        if (ec) return self->Close();
        self->Write();
      });
      return;
    }
    out_.Clear();
    writing_ = false;
    if (nghttp2_session_want_write(session_)) Flush();
  }

  tcp::socket socket_;
  const std::shared_ptr<Core> core_;
  const int loop_;
  const asio::io_context::executor_type executor_;
  std::shared_ptr<const std::string> remote_;
  std::shared_ptr<const std::string> member_;  // the member the connection was authorized as
  nghttp2_session* session_ = nullptr;
  std::vector<uint8_t> in_;
  Outbox out_;
  std::vector<nghttp2_nv> nva_;
  // Every stream from its first HEADERS until it closes.
  std::unordered_map<int32_t, std::shared_ptr<Stream>> streams_;
  std::vector<std::shared_ptr<Stream>> ready_;  // during a read: requests that ended
  int open_ = 0;                                // handed to the handler, not yet answered
  bool authorized_ = false;
  bool dispatching_ = false;
  bool closed_ = false;
  bool writing_ = false;
  bool flush_posted_ = false;
};

void Accept(const std::shared_ptr<Core>& core) {
  const int loop = core->next_loop;
  core->next_loop = (core->next_loop + 1) % core->io->size();
  core->acceptor.async_accept(
      AsioContext(*core->io, loop), [core, loop](error_code ec, tcp::socket socket) {
        if (core->stopped.load()) return;
        if (!ec) {
          asio::post(AsioContext(*core->io, loop), [core, loop, s = std::move(socket)]() mutable {
            if (core->stopped.load()) return;
            auto session = std::make_shared<Session>(std::move(s), core, loop);
            core->sessions[static_cast<size_t>(loop)].insert(session);
            session->Start();
          });
        }
        Accept(core);
      });
}

class ServerImpl final : public H2cServer {
 public:
  explicit ServerImpl(std::shared_ptr<Core> core) : core_(std::move(core)) {}
  ~ServerImpl() override { Stop(); }
  uint16_t port() const override { return port_; }
  void Start() override {
    core_->io->RunOn(0, [this] { Accept(core_); });
  }
  void Stop() override {
    if (core_->stopped.exchange(true)) return;
    for (int loop = 0; loop < core_->io->size(); ++loop) {
      core_->io->RunOn(loop, [&] {
        if (loop == 0) {
          error_code ignored;
          core_->acceptor.close(ignored);
        }
        auto sessions = core_->sessions[static_cast<size_t>(loop)];
        for (const auto& s : sessions) s->Close();
      });
    }
  }
  uint16_t port_ = 0;

 private:
  const std::shared_ptr<Core> core_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<H2cServer>> H2cServer::Create(const H2cServerOptions& options,
                                                             HttpHandler handler,
                                                             std::shared_ptr<IoThreads> io) {
  if (options.clock == nullptr) return absl::InvalidArgumentError("h2c server: no clock");
  auto core = std::make_shared<Core>(options, std::move(handler), io);
  error_code ec;
  const tcp::endpoint endpoint(asio::ip::make_address(options.host, ec), options.port);
  if (ec) return absl::InvalidArgumentError(StrCat("h2c server: bad host ", options.host));
  core->acceptor.open(endpoint.protocol(), ec);
  if (!ec) core->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) core->acceptor.bind(endpoint, ec);
  if (!ec) core->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return absl::UnavailableError(StrCat("h2c server: cannot listen: ", ec.message()));
  auto server = std::make_unique<ServerImpl>(core);
  server->port_ = core->acceptor.local_endpoint().port();
  return server;
}

}  // namespace hivemesh::h2c
