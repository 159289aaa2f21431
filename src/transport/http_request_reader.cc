#include "transport/http_request_reader.h"

#include <limits>

#include <algorithm>
#include <cstring>
#include <functional>

#include "base/strings.h"

namespace hivemesh::http_internal {
namespace {

bool IEquals(std::string_view a, std::string_view b) {
  return beast::iequals(beast::string_view(a.data(), a.size()),
                        beast::string_view(b.data(), b.size()));
}

std::string_view TrimSpaces(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

constexpr std::string_view kOnlyChunked =
    "; this node takes only `Transfer-Encoding: chunked` (or Content-Length)";

}  // namespace

const RequestHead::Field* RequestHead::Find(std::string_view name) const {
  for (const Field& f : fields) {
    if (IEquals(std::string_view(text.data() + f.name, f.name_size), name)) return &f;
  }
  return nullptr;
}

std::string BodyTooLarge(std::optional<uint64_t> length, uint64_t limit) {
  return length ? StrCat("request body of ", *length, " bytes is larger than the limit of ", limit,
                         " bytes")
                : StrCat("request body is larger than the limit of ", limit, " bytes");
}

RequestParser::RequestParser(RequestHead* head, std::string* body, MemoryBudget* budget,
                             MemoryBudget::Reservation* reservation, const RequestLimits& limits)
    : head_(head), body_(body), budget_(budget), reservation_(reservation), limits_(limits) {
  head_->Clear();
  body_->clear();
  header_limit(limits.header_bytes);
  // The body's limit is checked here, not by Beast: a streamed body has none (RequestReader).
  // Not boost::none: Beast 1.74 compares an empty limit as smaller than any length.
  body_limit(std::numeric_limits<std::uint64_t>::max());
}

void RequestParser::Refuse(beast::error_code& ec, int status, Rejection reason,
                           std::string message) {
  refusal_ = RequestRefusal{status, reason, std::move(message), status == 503};
  ec = http::error::bad_value;  // ends the parse; refusal_ says why
}

void RequestParser::on_request_impl(http::verb, beast::string_view method,
                                    beast::string_view target, int version, beast::error_code&) {
  version_ = version;
  head_->text.append(method.data(), method.size());
  head_->text.append(target.data(), target.size());
  head_->method_size = method.size();
  head_->target_size = target.size();
}

void RequestParser::on_field_impl(http::field f, beast::string_view name, beast::string_view value,
                                  beast::error_code& ec) {
  if (header_done_) {
    // A trailer field: bounded, then dropped (never merged into the head).
    trailer_bytes_ += name.size() + value.size() + 4;
    if (trailer_bytes_ > limits_.trailer_bytes) {
      Refuse(ec, 431, Rejection::kChunkHeaderTooLarge,
             StrCat("the request's trailer section is larger than the limit of ",
                    limits_.trailer_bytes / 1024, " KiB"));
    }
    return;
  }
  const bool transfer_encoding = f == http::field::transfer_encoding;
  const Rejection reason =
      transfer_encoding ? Rejection::kBadTransferEncoding : Rejection::kMalformedHttp;
  // Beast unfolds an obs-fold into a buffer of its own, or (after an empty first line) skips
  // the fold: either way the value is not where the field's line continues. Rejected, as RFC
  // 9112 section 5.2 allows, so that no folded field is read two ways.
  const auto in = std::less_equal<const char*>();
  const char* const name_end = name.data() + name.size();
  const bool inside = in(input_, value.data()) &&
                      in(value.data() + value.size(), input_ + input_size_) &&
                      in(name_end, value.data());
  if (!inside || std::memchr(name_end, '\n', static_cast<size_t>(value.data() - name_end))) {
    return Refuse(ec, 400, reason,
                  StrCat("the header field ", std::string_view(name.data(), name.size()),
                         " is folded over several lines (obs-fold), which this node does not "
                         "accept; send each field on one line"));
  }
  if (transfer_encoding) {
    saw_transfer_encoding_ = true;
    if (version_ < 11) {
      return Refuse(ec, 400, reason,
                    "Transfer-Encoding in an HTTP/1.0 request; send it as "
                    "HTTP/1.1, or with Content-Length");
    }
    const std::string_view v(value.data(), value.size());
    if (!IEquals(TrimSpaces(v), "chunked")) {
      return Refuse(
          ec, 400, reason,
          StrCat("Transfer-Encoding '", v.substr(0, 64), "' is not accepted", kOnlyChunked));
    }
  }
  std::string& text = head_->text;
  const auto at = static_cast<uint32_t>(text.size());
  text.append(name.data(), name.size());
  text.append(value.data(), value.size());
  head_->fields.push_back({at, static_cast<uint32_t>(name.size()),
                           at + static_cast<uint32_t>(name.size()),
                           static_cast<uint32_t>(value.size())});
}

void RequestParser::on_body_init_impl(const boost::optional<std::uint64_t>& length,
                                      beast::error_code& ec) {
  if (!length || streaming_) return;  // a streamed body is never held whole
  if (*length > body_->max_size()) {
    ec = http::error::buffer_overflow;
    return;
  }
  body_->reserve(static_cast<size_t>(*length));  // reserved from the budget with the head
}

size_t RequestParser::on_body_impl(beast::string_view piece, beast::error_code&) {
  body_->append(piece.data(), piece.size());
  return piece.size();
}

void RequestParser::on_chunk_header_impl(std::uint64_t, beast::string_view extensions,
                                         beast::error_code& ec) {
  // A chunk-size line that arrived whole in one read; longer ones are refused while they
  // arrive (RequestReader::CheckUnparsedChunked).
  if (extensions.size() > limits_.chunk_line_bytes) {
    Refuse(ec, 400, Rejection::kChunkHeaderTooLarge,
           StrCat("a chunk-size line (with its extensions) is longer than the limit of ",
                  limits_.chunk_line_bytes, " bytes"));
  }
}

size_t RequestParser::on_chunk_body_impl(std::uint64_t, beast::string_view piece,
                                         beast::error_code& ec) {
  // Streamed: the consumer takes each piece as it is parsed, so nothing grows to be reserved,
  // and nothing bounds the whole.
  if (streaming_) {
    body_->append(piece.data(), piece.size());
    return piece.size();
  }
  const size_t needed = body_->size() + piece.size();
  if (needed > limits_.max_body_bytes) {
    Refuse(ec, 413, Rejection::kBodyTooLarge, BodyTooLarge(std::nullopt, limits_.max_body_bytes));
    return 0;
  }
  if (needed > body_->capacity()) {
    // Grown as a string grows (doubling), but reserved from the budget first.
    const size_t capacity =
        std::max<size_t>(needed, std::min<uint64_t>(2 * body_->capacity(), limits_.max_body_bytes));
    // While the old buffer is copied into the new one, both are held.
    absl::StatusOr<MemoryBudget::Reservation> copying = budget_ != nullptr && !body_->empty()
                                                            ? budget_->Reserve(body_->capacity())
                                                            : MemoryBudget::Reservation();
    absl::Status grown = copying.status();
    if (grown.ok() && capacity > reservation_->bytes()) {
      grown = reservation_->Grow(capacity - reservation_->bytes());
    }
    if (!grown.ok()) {
      Refuse(ec, 503, Rejection::kMemoryBudget, std::string(grown.message()));
      return 0;
    }
    body_->reserve(capacity);
  }
  body_->append(piece.data(), piece.size());
  return piece.size();
}

void RequestReader::Start(RequestHead* head) {
  reservation_.Release();
  parser_.reset();
  parser_.emplace(head, &body_, budget_, &reservation_, limits_);
  head_seen_ = false;
  refused_ = false;
  piece_taken_ = false;
  body_mode_ = BodyMode::kUndecided;
}

RequestReader::Step RequestReader::WholeBody() {
  if (refused_) return Step::kRefused;
  if (body_mode_ == BodyMode::kStreamed) {
    if (piece_taken_) {
      return Refused({500, Rejection::kMalformedHttp,
                      "part of the request's body was already passed on; it cannot be read "
                      "whole"});
    }
    parser_->set_streaming(false);
  }
  body_mode_ = BodyMode::kWhole;
  const std::optional<uint64_t> length = content_length();
  if (length && *length > limits_.max_body_bytes) {
    return Refused({413, Rejection::kBodyTooLarge, BodyTooLarge(length, limits_.max_body_bytes)});
  }
  if (budget_ == nullptr || (length && *length == 0)) return Step::kHead;
  // Chunked: an empty reservation of the budget's, grown as the body grows.
  absl::StatusOr<MemoryBudget::Reservation> r = budget_->Reserve(length ? *length : 0);
  if (!r.ok()) {
    return Refused({503, Rejection::kMemoryBudget, std::string(r.status().message()), true});
  }
  reservation_ = *std::move(r);
  return Step::kHead;
}

void RequestReader::StreamBody() {
  body_mode_ = BodyMode::kStreamed;
  reservation_.Release();
  // The room made for a body of known length goes too: only pieces pass through now.
  std::string().swap(body_);
  parser_->set_streaming(true);
}

bool RequestReader::TakePiece(std::string* out) {
  if (body_.empty()) return false;
  piece_taken_ = true;
  out->append(body_);
  body_.clear();  // its capacity stays, for the next piece
  return true;
}

bool RequestReader::chunked() const { return parser_->chunked(); }

std::optional<uint64_t> RequestReader::content_length() const {
  const boost::optional<uint64_t> length = parser_->content_length();
  return length ? std::optional<uint64_t>(*length) : std::nullopt;
}

size_t RequestReader::max_unparsed() const {
  // A head; or the end of a chunk's data, the last chunk-size line and the trailers (CRLFs).
  return std::max<size_t>(limits_.header_bytes,
                          limits_.chunk_line_bytes + limits_.trailer_bytes + 6);
}

RequestReader::Step RequestReader::Refused(RequestRefusal refusal) {
  refused_ = true;
  refusal_ = std::move(refusal);
  std::string().swap(body_);  // its bytes go with its reservation
  reservation_.Release();
  return Step::kRefused;
}

RequestReader::Step RequestReader::HeadDone() {
  head_seen_ = true;
  return Step::kHead;
}

std::optional<RequestRefusal> RequestReader::CheckUnparsedChunked(std::string_view rest) const {
  if (rest.substr(0, 2) == "\r\n") rest.remove_prefix(2);
  const size_t eol = rest.find('\n');
  // The line without its CRLF.
  const size_t line = eol == std::string_view::npos ? rest.size() : eol;
  if (line > limits_.chunk_line_bytes + 1) {
    return RequestRefusal{400, Rejection::kChunkHeaderTooLarge,
                          StrCat("a chunk-size line (with its extensions) is longer than the "
                                 "limit of ",
                                 limits_.chunk_line_bytes, " bytes")};
  }
  // A whole line left unparsed is the last chunk's: the trailers follow it.
  if (eol != std::string_view::npos && rest.size() - eol - 1 > limits_.trailer_bytes + 2) {
    return RequestRefusal{431, Rejection::kChunkHeaderTooLarge,
                          StrCat("the request's trailer section is larger than the limit of ",
                                 limits_.trailer_bytes / 1024, " KiB")};
  }
  return std::nullopt;
}

RequestReader::Step RequestReader::Feed(beast::flat_buffer& buffer) {
  if (refused_) return Step::kRefused;
  // The consumer did not say how it takes the body: whole.
  if (head_seen_ && body_mode_ == BodyMode::kUndecided && WholeBody() == Step::kRefused) {
    return Step::kRefused;
  }
  RequestParser& parser = *parser_;
  while (!parser.is_done() && buffer.size() > 0) {
    const auto* data = static_cast<const char*>(buffer.data().data());
    parser.SetInput(data, buffer.size());
    beast::error_code ec;
    const size_t used = parser.put(buffer.data(), ec);
    buffer.consume(used);
    if (ec == http::error::need_more) {
      if (parser.is_header_done() && parser.chunked()) {
        const std::string_view rest(static_cast<const char*>(buffer.data().data()), buffer.size());
        if (std::optional<RequestRefusal> r = CheckUnparsedChunked(rest)) {
          return Refused(*std::move(r));
        }
      }
      break;
    }
    if (ec) {
      if (parser.refusal()) return Refused(*parser.refusal());
      if (ec == http::error::header_limit) {
        return Refused({431, Rejection::kHeaderTooLarge,
                        StrCat("request headers are larger than the limit of ",
                               limits_.header_bytes / 1024, " KiB")});
      }
      if (ec == http::error::body_limit) {
        return Refused({413, Rejection::kBodyTooLarge,
                        BodyTooLarge(parser.is_header_done() ? content_length() : std::nullopt,
                                     limits_.max_body_bytes)});
      }
      if (ec == http::error::bad_transfer_encoding ||
          (ec == http::error::bad_content_length && parser.saw_transfer_encoding())) {
        return Refused(
            {400, Rejection::kBadTransferEncoding,
             StrCat("Transfer-Encoding repeated, or with Content-Length", kOnlyChunked)});
      }
      return Refused(
          {400, Rejection::kMalformedHttp, StrCat("malformed HTTP request: ", ec.message())});
    }
    if (!head_seen_ && parser.is_header_done()) {
      // Beast parses the rest eagerly, as its own read loop does.
      parser.eager(true);
      return HeadDone();
    }
    if (used == 0) break;
  }
  if (!head_seen_ && parser.is_header_done()) {
    parser.eager(true);
    return HeadDone();
  }
  return parser.is_done() ? Step::kDone : Step::kNeedMore;
}

std::shared_ptr<const std::string> RequestReader::TakeBody() {
  if (reservation_.bytes() == 0) return std::make_shared<const std::string>(std::move(body_));
  return MemoryBudget::Hold(std::move(body_), std::move(reservation_));
}

}  // namespace hivemesh::http_internal
