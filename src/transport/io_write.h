// Helpers for TCP sockets on IoThreads, for .cc files of components that run on them only.
//
// WriteNowOrLater: sends a gather of buffers on a connected TCP socket, completing at once when
// the kernel takes it all (the usual case for responses and requests that fit its send buffer),
// and otherwise finishing with an asynchronous write. An immediate completion calls `done` before
// returning, without a trip through the event loop: that saves the loop a poll and a queued
// handler per message.
#pragma once

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <string_view>
#include <vector>

namespace hivemesh {

// Removes the first `n` bytes of a gather write from `buffers` (n at most their total size).
inline void DropFront(std::vector<boost::asio::const_buffer>& buffers, size_t n) {
  size_t whole = 0;  // buffers written completely
  while (whole < buffers.size() && n >= buffers[whole].size()) n -= buffers[whole++].size();
  buffers.erase(buffers.begin(), buffers.begin() + static_cast<ptrdiff_t>(whole));
  if (!buffers.empty()) buffers.front() += n;
}

// `done(error_code)` runs exactly once: inline if everything was written at once, else from the
// event loop (failures always from the event loop, so a caller never sees its own callback run
// with an error inside the call that started the write). `buffers` is any sequence of
// const_buffer (e.g. a small_vector kept on the stack); the memory it points to must stay valid
// until `done` runs, the sequence itself need not.
template <typename Buffers, typename Done>
void WriteNowOrLater(boost::asio::ip::tcp::socket& socket, const Buffers& buffers, Done&& done) {
  boost::system::error_code ec;
  if (!socket.non_blocking()) socket.non_blocking(true, ec);
  size_t total = 0;
  for (const auto& b : buffers) total += b.size();
  size_t written = 0;
  if (!ec) written = socket.write_some(buffers, ec);
  if (!ec && written == total) return done(ec);
  if (ec && ec != boost::asio::error::would_block && ec != boost::asio::error::try_again) {
    boost::asio::post(socket.get_executor(),
                      [done = std::forward<Done>(done), ec]() mutable { done(ec); });
    return;
  }
  // Drop what was written; write the rest when the socket can take it.
  std::vector<boost::asio::const_buffer> rest(buffers.begin(), buffers.end());
  DropFront(rest, written);
  boost::asio::async_write(socket, std::move(rest),
                           [done = std::forward<Done>(done)](boost::system::error_code wec,
                                                             size_t) mutable { done(wec); });
}

// Appends one HTTP message's gather write to `buffers`: its `head`, then `body` and the bytes of
// each tensor in `tail` (anything with data() giving bytes), empty pieces left out.
template <typename Buffers, typename Tail>
void AppendMessageBuffers(Buffers& buffers, std::string_view head, std::string_view body,
                          const Tail& tail) {
  buffers.emplace_back(head.data(), head.size());
  if (!body.empty()) buffers.emplace_back(body.data(), body.size());
  for (const auto& t : tail) {
    if (!t.data().empty()) buffers.emplace_back(t.data().data(), t.data().size());
  }
}

// Turns on TCP keep-alive probes for a long-lived connection (a mesh link): after `idle_s`
// seconds without traffic the kernel probes the other side every `interval_s` seconds, and
// after `count` unanswered probes the connection fails, so a peer that vanished without closing
// (power loss, a cut cable) does not hold it open forever.
inline void EnableKeepAlive(boost::asio::ip::tcp::socket& socket, int idle_s = 30,
                            int interval_s = 10, int count = 3) {
  boost::system::error_code ignored;
  socket.set_option(boost::asio::socket_base::keep_alive(true), ignored);
  const int fd = socket.native_handle();
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle_s, sizeof idle_s);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval_s, sizeof interval_s);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count);
}

}  // namespace hivemesh
