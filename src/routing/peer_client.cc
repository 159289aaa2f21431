#include "routing/peer_client.h"

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <deque>
#include <mutex>
#include <thread>

#include "base/strings.h"

namespace hivemesh::routing {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using boost::system::error_code;

constexpr std::string_view kRefused = "connection refused";

struct Connection {
  explicit Connection(asio::io_context& ioc) : stream(ioc) {}
  beast::tcp_stream stream;
  beast::flat_buffer buffer;
};

class PeerClientImpl final : public PeerClient {
 public:
  PeerClientImpl() : work_(asio::make_work_guard(ioc_)), thread_([this] { ioc_.run(); }) {}
  ~PeerClientImpl() override { Stop(); }

  void Stop() override {
    if (!thread_.joinable()) return;
    work_.reset();
    ioc_.stop();
    thread_.join();
  }

  int open_connections() const override { return open_.load(); }

  void Send(PeerRequest request, PeerCallback done) override {
    auto call = std::make_shared<Call>(std::move(request), std::move(done));
    asio::post(ioc_, [this, call] { Start(call); });
  }

 private:
  struct Call {
    Call(PeerRequest r, PeerCallback d) : request(std::move(r)), done(std::move(d)) {}
    PeerRequest request;
    PeerCallback done;
    std::string head;
    std::shared_ptr<Connection> conn;
    std::optional<http::response_parser<http::string_body>> parser;
    bool reused = false;
  };

  void Finish(const std::shared_ptr<Call>& call, absl::StatusOr<PeerResponse> result) {
    PeerCallback done = std::move(call->done);
    call->done = nullptr;
    if (done) done(std::move(result));
  }

  void Start(const std::shared_ptr<Call>& call) {
    auto& idle = idle_[call->request.address];
    if (!idle.empty()) {
      call->conn = std::move(idle.back());
      idle.pop_back();
      call->reused = true;
      Write(call);
      return;
    }
    Connect(call);
  }

  void Connect(const std::shared_ptr<Call>& call) {
    const std::string& addr = call->request.address;
    const size_t colon = addr.rfind(':');
    error_code ec;
    const asio::ip::address ip = asio::ip::make_address(addr.substr(0, colon), ec);
    int port = colon == std::string::npos ? -1 : std::atoi(addr.c_str() + colon + 1);
    if (ec || port <= 0 || port > 65535) {
      return Finish(call, absl::InvalidArgumentError("peer address '" + addr + "' is not ip:port"));
    }
    call->conn = std::make_shared<Connection>(ioc_);
    call->reused = false;
    call->conn->stream.expires_after(call->request.timeout);
    call->conn->stream.async_connect(
        tcp::endpoint(ip, static_cast<uint16_t>(port)), [this, call](error_code ec) {
          if (ec) return Fail(call, ec);
          ++open_;
          error_code ignored;
          call->conn->stream.socket().set_option(tcp::no_delay(true), ignored);
          Write(call);
        });
  }

  void Write(const std::shared_ptr<Call>& call) {
    const PeerRequest& r = call->request;
    size_t length = r.body.size();
    for (const Tensor& t : r.tail) length += t.data().size();
    call->head = StrCat(r.method, " ", r.target, " HTTP/1.1\r\nHost: ", r.address,
                        "\r\nContent-Length: ", length, "\r\n");
    for (const auto& [k, v] : r.headers) StrAppend(&call->head, k, ": ", v, "\r\n");
    call->head += "\r\n";
    std::vector<asio::const_buffer> buffers;
    buffers.emplace_back(call->head.data(), call->head.size());
    if (!r.body.empty()) buffers.emplace_back(r.body.data(), r.body.size());
    for (const Tensor& t : r.tail) {
      if (!t.data().empty()) buffers.emplace_back(t.data().data(), t.data().size());
    }
    call->conn->stream.expires_after(r.timeout);
    asio::async_write(call->conn->stream, buffers, [this, call](error_code ec, size_t) {
      if (ec) return Fail(call, ec);
      call->parser.emplace();
      call->parser->body_limit(256u << 20);
      http::async_read(call->conn->stream, call->conn->buffer, *call->parser,
                       [this, call](error_code ec, size_t) {
                         if (ec) return Fail(call, ec);
                         Done(call);
                       });
    });
  }

  void Done(const std::shared_ptr<Call>& call) {
    auto& msg = call->parser->get();
    PeerResponse resp;
    resp.status = static_cast<int>(msg.result_int());
    for (const auto& field : msg) {
      std::string name(field.name_string());
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      resp.headers[name] = std::string(field.value());
    }
    resp.body = std::make_shared<const std::string>(std::move(msg.body()));
    const bool keep = msg.keep_alive();
    call->conn->stream.expires_never();
    if (keep) {
      idle_[call->request.address].push_back(std::move(call->conn));
    } else {
      Close(call);
    }
    Finish(call, std::move(resp));
  }

  void Close(const std::shared_ptr<Call>& call) {
    if (!call->conn) return;
    error_code ignored;
    call->conn->stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    call->conn->stream.close();
    call->conn.reset();
    --open_;
  }

  void Fail(const std::shared_ptr<Call>& call, error_code ec) {
    const bool connected = call->conn && call->conn->stream.socket().is_open();
    if (connected) {
      Close(call);
    } else {
      call->conn.reset();
    }
    // A pooled connection the peer closed while idle: try once more on a fresh one.
    if (call->reused && (ec == http::error::end_of_stream || ec == asio::error::connection_reset ||
                         ec == asio::error::eof || ec == asio::error::broken_pipe)) {
      Connect(call);
      return;
    }
    if (ec == asio::error::connection_refused) {
      return Finish(call, absl::UnavailableError(StrCat(kRefused, " by ", call->request.address)));
    }
    if (ec == beast::error::timeout) {
      return Finish(call, absl::DeadlineExceededError(
                              StrCat("no answer from ", call->request.address, " in time")));
    }
    Finish(call, absl::UnavailableError(
                     StrCat("connection to ", call->request.address, " failed: ", ec.message())));
  }

  asio::io_context ioc_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::map<std::string, std::vector<std::shared_ptr<Connection>>> idle_;  // client thread only
  std::atomic<int> open_{0};
  std::thread thread_;
};

}  // namespace

bool IsConnectionRefused(const absl::Status& status) {
  return status.code() == absl::StatusCode::kUnavailable && MessageOf(status).starts_with(kRefused);
}

std::unique_ptr<PeerClient> PeerClient::Create() { return std::make_unique<PeerClientImpl>(); }

}  // namespace hivemesh::routing
