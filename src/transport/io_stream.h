// IoStream: a connection's byte stream, plain TCP or TLS over it (transport/tls.h), for the
// transport's .cc files only (Asio's SSL stream and OpenSSL inside). It reads and writes as an
// Asio stream, so Beast's and Asio's composed reads and writes take it either way.
//
// A stream starts plain; StartTls puts TLS over its socket before the handshake. The socket
// stays reachable (socket()) for what TLS leaves to TCP: options, the peer's address, shutdown
// and close.
//
// Thread safety: none; one loop's thread uses it.
#pragma once

// First: Boost 1.74's Asio uses std::exchange without including <utility>.
#include <utility>

#include <openssl/ssl.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>
#include <memory>
#include <string>
#include <vector>

#include "transport/io_write.h"
#include "transport/tls.h"

namespace hivemesh {

class IoStream {
 public:
  using tcp = boost::asio::ip::tcp;
  using executor_type = tcp::socket::executor_type;
  using TlsStream = boost::asio::ssl::stream<tcp::socket>;

  explicit IoStream(tcp::socket socket) : socket_(std::move(socket)) {}
  explicit IoStream(const executor_type& executor) : socket_(executor) {}

  executor_type get_executor() { return socket().get_executor(); }
  tcp::socket& socket() { return tls_ ? tls_->next_layer() : socket_; }
  bool tls() const { return tls_ != nullptr; }
  SSL* ssl() { return tls_ ? tls_->native_handle() : nullptr; }

  // Puts TLS with `ctx` over the socket (its OpenSSL object holds its own reference to `ctx`).
  void StartTls(SSL_CTX* ctx) {
    SSL_CTX_up_ref(ctx);
    boost::asio::ssl::context wrapper(ctx);  // gives its reference back when it goes
    tls_ = std::make_unique<TlsStream>(std::move(socket_), wrapper);
  }

  template <typename Handler>
  void async_handshake(boost::asio::ssl::stream_base::handshake_type type, Handler&& handler) {
    tls_->async_handshake(type, std::forward<Handler>(handler));
  }
  // The same, starting from bytes already read from the socket (`handler(ec, bytes used)`).
  template <typename Buffers, typename Handler>
  void async_handshake(boost::asio::ssl::stream_base::handshake_type type, const Buffers& buffered,
                       Handler&& handler) {
    tls_->async_handshake(type, buffered, std::forward<Handler>(handler));
  }

  template <typename Buffers, typename Handler>
  void async_read_some(const Buffers& buffers, Handler&& handler) {
    if (tls_) {
      tls_->async_read_some(buffers, std::forward<Handler>(handler));
    } else {
      socket_.async_read_some(buffers, std::forward<Handler>(handler));
    }
  }

  template <typename Buffers, typename Handler>
  void async_write_some(const Buffers& buffers, Handler&& handler) {
    if (tls_) {
      tls_->async_write_some(buffers, std::forward<Handler>(handler));
    } else {
      socket_.async_write_some(buffers, std::forward<Handler>(handler));
    }
  }

  // A blocking write (a byte or two that fit the send buffer), as Asio's synchronous write wants.
  template <typename Buffers>
  size_t write_some(const Buffers& buffers, boost::system::error_code& ec) {
    return tls_ ? tls_->write_some(buffers, ec) : socket_.write_some(buffers, ec);
  }

  // Closes the socket (no TLS close_notify: every message on a node's connections is framed by
  // its length, so a cut is seen as one).
  void Close() {
    boost::system::error_code ignored;
    tcp::socket& s = socket();
    if (!s.is_open()) return;
    s.shutdown(tcp::socket::shutdown_both, ignored);
    s.close(ignored);
  }

  // The TLS session to resume on the next connection to the same peer (a client's), or null:
  // not TLS, or not resumable. A copy: OpenSSL marks a connection's own session unusable when
  // the connection ends without a TLS close (a node's connections end by a TCP close). Taken
  // after the first read: TLS 1.3 tickets arrive after the handshake, and a resumed connection
  // gets a fresh one (tickets are best used once).
  std::shared_ptr<SSL_SESSION> ResumableSession() {
    SSL_SESSION* current = tls_ ? SSL_get0_session(ssl()) : nullptr;
    if (current == nullptr || SSL_SESSION_is_resumable(current) != 1) return nullptr;
    SSL_SESSION* copy = SSL_SESSION_dup(current);
    return copy == nullptr ? nullptr : std::shared_ptr<SSL_SESSION>(copy, SSL_SESSION_free);
  }
  // Offers `session` (ResumableSession's) in the handshake to come. REQUIRES: after StartTls.
  void Resume(SSL_SESSION* session) { SSL_set_session(ssl(), session); }

  // What the peer presented (PeerChainOf; empty if none, or not TLS).
  PeerChain PeerCertificates() { return PeerChainOf(ssl()); }

 private:
  tcp::socket socket_;              // the socket while plain; moved under tls_ by StartTls
  std::unique_ptr<TlsStream> tls_;  // null: plain
};

// WriteNowOrLater (io_write.h) on either kind of stream. Over TLS the gather is copied into one
// buffer first: OpenSSL encrypts one buffer at a time, and a head, a body and each tensor apart
// would each become a record and a system call of their own. `done` then always runs from the
// event loop.
template <typename Buffers, typename Done>
void WriteNowOrLater(IoStream& stream, const Buffers& buffers, Done&& done) {
  if (!stream.tls()) return WriteNowOrLater(stream.socket(), buffers, std::forward<Done>(done));
  size_t total = 0;
  for (const auto& b : buffers) total += b.size();
  auto flat = std::make_shared<std::string>();
  flat->reserve(total);
  for (const auto& b : buffers) flat->append(static_cast<const char*>(b.data()), b.size());
  boost::asio::async_write(stream, boost::asio::buffer(*flat),
                           [flat, done = std::forward<Done>(done)](boost::system::error_code ec,
                                                                   size_t) mutable { done(ec); });
}

}  // namespace hivemesh
