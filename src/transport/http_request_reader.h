// RequestReader: reads HTTP/1.1 requests, one at a time, from the bytes a connection receives,
// with Boost.Beast's parser, and bounds everything it holds for them. For the HTTP server's .cc
// files and the request fuzz target only (Beast inside; the public header stays free of it).
//
// What it refuses, each with the answer's status, a message naming the limit and the reason it
// is counted under (base/rejections.h):
// - a head over `header_bytes` (431);
// - framing that could be read two ways (request smuggling, RFC 9112 section 6.3): a
//   Transfer-Encoding that is anything but exactly one `chunked` coding (all its fields taken
//   together), Transfer-Encoding with Content-Length, Transfer-Encoding on HTTP/1.0, and a
//   header field folded over several lines (obs-fold) (400);
// - a body read whole over `max_body_bytes` (413); a streamed body (StreamBody) has no limit:
//   it is never held, only passed on piece by piece;
// - a chunk-size line, extensions included, over `chunk_line_bytes` (400), and a trailer
//   section over `trailer_bytes` (431): neither is body, so the body limit does not bound them;
// - a body the node's memory budget cannot hold (503, Retry-After): a Content-Length body is
//   reserved whole once its head has been read (WholeBody), before any of it is read; a chunked
//   one grows
//   its reservation with the buffer that receives it (and reserves the old buffer too while it
//   is copied into the new). TakeBody() hands the reservation to the body, so it lasts as long
//   as anything views the body.
// Trailer fields are read and dropped; they never become header fields of the request.
//
// Bounds: when Feed asks for more, the buffer holds fewer than max_unparsed() bytes, and a body
// read whole is at most max_body_bytes (a streamed one holds only what one Feed parsed); so a
// connection holds at most that, plus one read, whatever a client sends. A refusal is final:
// Feed answers kRefused until the next Start.
//
// Thread safety: none; one connection's reader is used by one thread at a time.
#pragma once

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/basic_parser.hpp>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/memory_budget.h"
#include "base/rejections.h"

namespace hivemesh::http_internal {

namespace beast = boost::beast;
namespace http = beast::http;

// Largest request head, and largest trailer section.
inline constexpr uint32_t kHeaderLimit = 64 * 1024;
// Largest chunk-size line, its extensions included: a chunk's size takes at most 16 hex digits;
// the rest leaves ample room for any extension a real client sends (few send any).
inline constexpr size_t kChunkLineLimit = 4096;

// What HttpRequest shows of a request's head: method, target and header fields, kept in storage
// that the connection reuses from one request to the next (no allocation per request once it
// has grown to the usual size).
struct RequestHead {
  struct Field {
    uint32_t name, name_size, value, value_size;  // offsets into `text`
  };
  std::string text;  // the method, the target, then each field's name and value
  size_t method_size = 0, target_size = 0;
  std::vector<Field> fields;  // in arrival order

  void Clear() {
    text.clear();
    fields.clear();
    method_size = target_size = 0;
  }
  std::string_view method() const { return std::string_view(text).substr(0, method_size); }
  std::string_view target() const {
    return std::string_view(text).substr(method_size, target_size);
  }
  // The first field named `name` (case-insensitive), or null.
  const Field* Find(std::string_view name) const;
  std::string_view Value(const Field& f) const {
    return std::string_view(text.data() + f.value, f.value_size);
  }
  std::string_view Name(const Field& f) const {
    return std::string_view(text.data() + f.name, f.name_size);
  }
  std::vector<std::pair<std::string_view, std::string_view>> All() const {
    std::vector<std::pair<std::string_view, std::string_view>> out;
    out.reserve(fields.size());
    for (const Field& f : fields) out.emplace_back(Name(f), Value(f));
    return out;
  }
};

struct RequestLimits {
  // A body's bytes (HttpServerOptions::max_body_bytes): 413 beyond.
  uint64_t max_body_bytes = 64ull << 20;
  // The request line and header fields together: 431 beyond.
  uint32_t header_bytes = kHeaderLimit;
  // One chunk-size line, extensions included, without its CRLF: 400 beyond.
  size_t chunk_line_bytes = kChunkLineLimit;
  // The trailer section (what follows the last chunk): 431 beyond. As much as a head may hold.
  size_t trailer_bytes = kHeaderLimit;
};

// Why a request is refused: the answer it gets (the connection then closes) and the reason it
// is counted under.
struct RequestRefusal {
  int status = 400;
  Rejection reason = Rejection::kMalformedHttp;
  std::string message;
  bool retry_after = false;  // the node is busy, not the request wrong (503)
};

// Beast's parser callbacks for RequestReader: the head into a RequestHead, the body into a
// string (as Beast's string_body would), with no field container in between; the checks above
// that concern one field or one chunk.
class RequestParser final : public http::basic_parser<true> {
 public:
  // `budget` (may be null) is what `reservation` is of.
  RequestParser(RequestHead* head, std::string* body, MemoryBudget* budget,
                MemoryBudget::Reservation* reservation, const RequestLimits& limits);
  // The bytes the next put() parses: a field value outside them is an unfolded obs-fold.
  void SetInput(const char* data, size_t size) {
    input_ = data;
    input_size_ = size;
  }
  const std::optional<RequestRefusal>& refusal() const { return refusal_; }
  bool saw_transfer_encoding() const { return saw_transfer_encoding_; }
  // The body is taken piece by piece as it is parsed (RequestReader::StreamBody).
  void set_streaming(bool on) { streaming_ = on; }
  int version() const { return version_; }  // 11 for HTTP/1.1, 10 for HTTP/1.0

 private:
  void on_request_impl(http::verb, beast::string_view method, beast::string_view target,
                       int version, beast::error_code&) override;
  void on_response_impl(int, beast::string_view, int, beast::error_code&) override {}
  void on_field_impl(http::field f, beast::string_view name, beast::string_view value,
                     beast::error_code& ec) override;
  void on_header_impl(beast::error_code&) override { header_done_ = true; }
  void on_body_init_impl(const boost::optional<std::uint64_t>& length,
                         beast::error_code& ec) override;
  size_t on_body_impl(beast::string_view piece, beast::error_code&) override;
  void on_chunk_header_impl(std::uint64_t, beast::string_view extensions,
                            beast::error_code& ec) override;
  size_t on_chunk_body_impl(std::uint64_t, beast::string_view piece,
                            beast::error_code& ec) override;
  void on_finish_impl(beast::error_code&) override {}

  void Refuse(beast::error_code& ec, int status, Rejection reason, std::string message);

  RequestHead* const head_;
  std::string* const body_;
  MemoryBudget* const budget_;
  MemoryBudget::Reservation* const reservation_;
  const RequestLimits& limits_;
  const char* input_ = nullptr;
  size_t input_size_ = 0;
  int version_ = 11;
  bool header_done_ = false;
  bool saw_transfer_encoding_ = false;
  bool streaming_ = false;
  size_t trailer_bytes_ = 0;
  std::optional<RequestRefusal> refusal_;
};

class RequestReader {
 public:
  enum class Step {
    kNeedMore,  // read more bytes into the buffer and Feed again
    kHead,      // the head is in: StreamBody() or WholeBody() (the default), then Feed again
    kDone,      // the request is whole: TakeBody(); the buffer keeps any bytes after it
    kRefused,   // see refusal(); the connection answers and closes
  };

  // `budget` may be null: bodies are then bounded by max_body_bytes alone. It must outlive the
  // reader.
  RequestReader(const RequestLimits& limits, MemoryBudget* budget)
      : limits_(limits), budget_(budget) {}

  // Begins the next request, read into `head` (cleared).
  void Start(RequestHead* head);
  // Parses what `buffer` holds and consumes what it parsed.
  Step Feed(beast::flat_buffer& buffer);

  const RequestRefusal& refusal() const { return refusal_; }
  // Some bytes of the current request have been parsed.
  bool started() const { return parser_ && parser_->got_some(); }
  // REQUIRES: Feed returned kHead, or kDone.
  bool keep_alive() const { return parser_->keep_alive(); }
  std::optional<uint64_t> content_length() const;
  // The body, with its reservation. REQUIRES: Feed returned kDone.
  std::shared_ptr<const std::string> TakeBody();
  // Reads the current request's body whole (REQUIRES: Feed returned kHead): checks its length
  // against max_body_bytes (413) and reserves it from the budget (503). kRefused, or kHead.
  // Feed does this itself when neither this nor StreamBody was called after kHead; a server
  // calls it before it answers `100 Continue`, so a body it would refuse is never sent. After
  // StreamBody, it reads the rest whole only if no piece was taken yet (else 500).
  Step WholeBody();
  // Streams the current request's body (REQUIRES: Feed returned kHead): from now on Feed keeps
  // only what it parsed since the last TakePiece; nothing is reserved and max_body_bytes does
  // not apply (a streamed body is never held whole). The framing checks stay.
  void StreamBody();
  // Appends the body's bytes parsed since the last call to `out` (streaming); false if none.
  bool TakePiece(std::string* out);
  // The request's body is chunked. REQUIRES: Feed returned kHead.
  bool chunked() const;
  // The request's HTTP version: 11 for HTTP/1.1. REQUIRES: Feed returned kHead.
  int version() const { return parser_->version(); }
  // Bytes held for the body now, and reserved for it from the budget.
  size_t body_capacity() const { return body_.capacity(); }
  uint64_t reserved() const { return reservation_.bytes(); }
  // Feed leaves fewer bytes than this in the buffer when it asks for more.
  size_t max_unparsed() const;

 private:
  Step Refused(RequestRefusal refusal);
  // The head is in: kHead.
  Step HeadDone();
  // The bytes a chunked body's parser left when it asked for more: the end of the last chunk's
  // data, then a chunk-size line, and after the last chunk's, the trailer section.
  std::optional<RequestRefusal> CheckUnparsedChunked(std::string_view rest) const;

  const RequestLimits limits_;
  MemoryBudget* const budget_;
  std::string body_;
  MemoryBudget::Reservation reservation_;
  std::optional<RequestParser> parser_;
  bool head_seen_ = false;
  bool refused_ = false;      // refusal_ is the answer until Start
  bool piece_taken_ = false;  // TakePiece took some of a streamed body
  enum class BodyMode { kUndecided, kWhole, kStreamed } body_mode_ = BodyMode::kUndecided;
  RequestRefusal refusal_;
};

// The 413 message for a request body over `limit`, of `length` bytes if it is known.
std::string BodyTooLarge(std::optional<uint64_t> length, uint64_t limit);

}  // namespace hivemesh::http_internal
