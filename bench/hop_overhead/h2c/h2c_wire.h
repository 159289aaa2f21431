// What the two ends of the h2c prototype share (h2c_client.cc, h2c_server.cc only): the
// settings each end sends, and the outbox that gathers a connection's next write from nghttp2.
//
// nghttp2 hands over its serialized frames (HEADERS, SETTINGS, WINDOW_UPDATE, DATA frame heads)
// in a buffer that is valid only during the callback: the outbox copies those bytes, coalescing
// neighbours. Body bytes (NGHTTP2_DATA_FLAG_NO_COPY) it only points at, holding their owner until
// the write is done. One sendmsg then takes the whole gather.
#pragma once

// First: Boost 1.74's Asio uses std::exchange without including <utility>.
#include <utility>

#include <nghttp2/nghttp2.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <boost/asio.hpp>
#include <cerrno>
#include <climits>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace hivemesh::h2c_internal {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;

// Windows and frame size (h2c_transport.h says why).
inline constexpr int32_t kStreamWindow = 16 << 20;
inline constexpr int32_t kConnectionWindow = 1 << 30;
inline constexpr uint32_t kMaxFrame = 1 << 20;
inline constexpr uint32_t kMaxStreams = 1024;
inline constexpr size_t kReadSize = 64 * 1024;  // as the link's
// One write takes at most this much; nghttp2 keeps the rest for the next.
inline constexpr size_t kMaxWriteBytes = 4 << 20;
inline constexpr size_t kMaxWritePieces = 512;

// Options for a session of either end: no closed streams kept (no priority tree).
inline nghttp2_option* NewOptions() {
  nghttp2_option* o = nullptr;
  nghttp2_option_new(&o);
  nghttp2_option_set_no_closed_streams(o, 1);
  return o;
}

// Queues this end's SETTINGS and widens the connection's receive window. 0 or an nghttp2 error.
inline int SubmitSettings(nghttp2_session* session) {
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, kMaxStreams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, static_cast<uint32_t>(kStreamWindow)},
      {NGHTTP2_SETTINGS_MAX_FRAME_SIZE, kMaxFrame},
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES, 1},
  };
  int rv = nghttp2_submit_settings(session, NGHTTP2_FLAG_NONE, settings,
                                   sizeof settings / sizeof settings[0]);
  if (rv != 0) return rv;
  return nghttp2_session_set_local_window_size(session, NGHTTP2_FLAG_NONE, 0, kConnectionWindow);
}

// HPACK flags for a field: values that differ on every message (a trace id, the time left, a
// load report) are sent as literals never indexed, so they do not churn the dynamic table that
// the repeating fields hit. Against indexing everything, this took about 3,800 instructions per
// request off the two ends together (callgrind); a table of size 0 cost more than both.
inline uint8_t FieldFlags(std::string_view name) {
  const auto is = [name](std::string_view lower) {
    if (name.size() != lower.size()) return false;
    for (size_t i = 0; i < name.size(); ++i) {
      char c = name[i];
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
      if (c != lower[i]) return false;
    }
    return true;
  };
  return is("hivemesh-trace") || is("inference-timeout-ms") || is("hivemesh-load")
             ? NGHTTP2_NV_FLAG_NO_INDEX
             : NGHTTP2_NV_FLAG_NONE;
}

class Outbox {
 public:
  // Bytes valid only now: copied.
  void Copy(const uint8_t* data, size_t n) {
    if (n == 0) return;
    if (!pieces_.empty() && pieces_.back().external == nullptr &&
        pieces_.back().offset + pieces_.back().size == own_.size()) {
      pieces_.back().size += n;
    } else {
      pieces_.push_back({nullptr, own_.size(), n});
    }
    own_.append(reinterpret_cast<const char*>(data), n);
    bytes_ += n;
  }
  // Bytes that stay valid until the write is done (their owner is held or outlives it).
  void Point(const char* data, size_t n) {
    if (n == 0) return;
    pieces_.push_back({data, 0, n});
    bytes_ += n;
  }
  void Hold(std::shared_ptr<const void> owner) { holds_.push_back(std::move(owner)); }
  bool full() const { return bytes_ >= kMaxWriteBytes || pieces_.size() >= kMaxWritePieces; }
  bool empty() const { return pieces_.empty(); }

  // Writes what the socket `fd` takes now. Sets *all when everything is written; an error other
  // than "would block" is returned.
  error_code WriteSome(int fd, bool* all) {
    *all = false;
    while (true) {
      iov_.clear();
      for (size_t i = next_; i < pieces_.size() && iov_.size() < IOV_MAX; ++i) {
        const Piece& p = pieces_[i];
        const char* base = p.external != nullptr ? p.external : own_.data() + p.offset;
        const size_t skip = i == next_ ? skip_ : 0;
        iov_.push_back({const_cast<char*>(base + skip), p.size - skip});
      }
      msghdr msg{};
      msg.msg_iov = iov_.data();
      msg.msg_iovlen = iov_.size();
      const ssize_t n = ::sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return {};
        return error_code(errno, boost::system::system_category());
      }
      Advance(static_cast<size_t>(n));
      if (next_ == pieces_.size()) {
        *all = true;
        return {};
      }
    }
  }

  // After a complete write: empty again, owners released (capacity kept).
  void Clear() {
    own_.clear();
    pieces_.clear();
    holds_.clear();
    bytes_ = 0;
    next_ = 0;
    skip_ = 0;
  }

 private:
  struct Piece {
    const char* external;  // null: `size` bytes of own_ at `offset`
    size_t offset;
    size_t size;
  };
  void Advance(size_t n) {
    while (n > 0) {
      const size_t left = pieces_[next_].size - skip_;
      if (n < left) {
        skip_ += n;
        return;
      }
      n -= left;
      ++next_;
      skip_ = 0;
    }
  }
  std::string own_;
  std::vector<Piece> pieces_;
  std::vector<std::shared_ptr<const void>> holds_;
  std::vector<iovec> iov_;
  size_t bytes_ = 0;
  size_t next_ = 0;  // the first piece not completely written
  size_t skip_ = 0;  // bytes of it written
};

// nghttp2's callbacks that copy frames into an outbox: the session's user data is `Owner`, which
// has `Outbox out_` reachable through Owner::outbox().
template <typename Owner>
ssize_t SendCallback(nghttp2_session*, const uint8_t* data, size_t length, int, void* user) {
  Outbox& out = static_cast<Owner*>(user)->outbox();
  if (out.full()) return NGHTTP2_ERR_WOULDBLOCK;
  out.Copy(data, length);
  return static_cast<ssize_t>(length);
}

}  // namespace hivemesh::h2c_internal
