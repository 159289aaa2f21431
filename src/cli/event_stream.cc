#include "cli/event_stream.h"

#include <cctype>

#include "base/strings.h"

namespace hivemesh::cli {
namespace {

constexpr size_t kMaxSizeLine = 32;
constexpr size_t kMaxChunk = 1 << 20;
constexpr size_t kMaxEvent = 1 << 20;

absl::Status Broken(std::string_view why) {
  return absl::InvalidArgumentError(StrCat("the node's event stream is malformed: ", why));
}

}  // namespace

absl::Status EventStream::Feed(std::string_view bytes, std::vector<std::string>& events) {
  while (!bytes.empty()) {
    switch (state_) {
      case State::kBroken:
        return Broken("after an earlier error");
      case State::kEnded:
        return absl::OkStatus();  // bytes after the last chunk: not ours
      case State::kSize: {
        const size_t lf = bytes.find('\n');
        line_.append(bytes.substr(0, lf));
        if (line_.size() > kMaxSizeLine) {
          state_ = State::kBroken;
          return Broken("a chunk-size line is too long");
        }
        if (lf == std::string_view::npos) return absl::OkStatus();
        bytes.remove_prefix(lf + 1);
        std::string_view size = line_;
        if (!size.empty() && size.back() == '\r') size.remove_suffix(1);
        size = size.substr(0, size.find(';'));  // chunk extensions
        size_t n = 0;
        if (size.empty() || size.size() > 8) {
          state_ = State::kBroken;
          return Broken("a chunk size is not 1 to 8 hex digits");
        }
        for (char c : size) {
          if (!std::isxdigit(static_cast<unsigned char>(c))) {
            state_ = State::kBroken;
            return Broken("a chunk size is not hex");
          }
          n = n * 16 +
              static_cast<size_t>(std::isdigit(static_cast<unsigned char>(c))
                                      ? c - '0'
                                      : std::tolower(static_cast<unsigned char>(c)) - 'a' + 10);
        }
        line_.clear();
        if (n > kMaxChunk) {
          state_ = State::kBroken;
          return Broken("a chunk over 1 MiB");
        }
        if (n == 0) {
          state_ = State::kEnded;
          ended_ = true;
          return absl::OkStatus();
        }
        left_ = n;
        state_ = State::kData;
        break;
      }
      case State::kData: {
        const std::string_view piece = bytes.substr(0, left_);
        bytes.remove_prefix(piece.size());
        left_ -= piece.size();
        if (absl::Status s = Events(piece, events); !s.ok()) {
          state_ = State::kBroken;
          return s;
        }
        if (left_ == 0) state_ = State::kDataEnd;
        break;
      }
      case State::kDataEnd: {
        // The CRLF after a chunk's data.
        line_.push_back(bytes.front());
        bytes.remove_prefix(1);
        if (line_ == "\r") break;
        if (line_ != "\r\n" && line_ != "\n") {
          state_ = State::kBroken;
          return Broken("a chunk is not followed by CRLF");
        }
        line_.clear();
        state_ = State::kSize;
        break;
      }
    }
  }
  return absl::OkStatus();
}

absl::Status EventStream::Events(std::string_view data, std::vector<std::string>& events) {
  text_.append(data);
  size_t at = 0;
  for (;;) {
    const size_t lf = text_.find('\n', at);
    if (lf == std::string::npos) break;
    std::string_view line(text_.data() + at, lf - at);
    at = lf + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) {
      if (has_data_) events.push_back(std::move(data_));
      data_.clear();
      has_data_ = false;
      continue;
    }
    if (line.front() == ':') continue;  // a comment
    const size_t colon = line.find(':');
    const std::string_view field = line.substr(0, colon);
    std::string_view value = colon == std::string_view::npos ? "" : line.substr(colon + 1);
    if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    if (field == "data") {
      if (has_data_) data_.push_back('\n');
      data_.append(value);
      has_data_ = true;
      if (data_.size() > kMaxEvent) return Broken("an event over 1 MiB");
    }
  }
  text_.erase(0, at);
  if (text_.size() > kMaxEvent) return Broken("a line over 1 MiB");
  return absl::OkStatus();
}

}  // namespace hivemesh::cli
