// EventStream: what `hivemesh sub` reads from a node's GET /v1/insights/stream, turned into the
// events' data: the bytes after the answer's head (HTTP/1.1 chunked framing, as the node sends a
// stream), then Server-Sent Events (lines `data: ...`, an empty line ends an event, lines that
// start with ':' are comments).
//
// Pure: bytes in, data out; the socket is the command's. Bounded: a chunk-size line over 32
// bytes, a chunk over 1 MiB or an event over 1 MiB is an error (a node's insight is at most
// 16 KiB), as is any framing that is not chunked HTTP/1.1.
//
// Thread safety: none.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"

namespace hivemesh::cli {

class EventStream {
 public:
  // Takes the next bytes of the answer's body; appends each event that ended to `events` (its
  // data lines, joined by '\n'). INVALID_ARGUMENT once the framing is broken (then for good).
  // `ended` is set once the last chunk (size 0) has been read.
  absl::Status Feed(std::string_view bytes, std::vector<std::string>& events);
  bool ended() const { return ended_; }

 private:
  absl::Status Events(std::string_view data, std::vector<std::string>& events);

  enum class State { kSize, kData, kDataEnd, kEnded, kBroken };
  State state_ = State::kSize;
  std::string line_;       // the chunk-size line so far, or the CRLF after a chunk
  size_t left_ = 0;        // bytes of the current chunk still to come
  std::string text_;       // decoded bytes not yet split into lines
  std::string data_;       // the current event's data
  bool has_data_ = false;  // the current event has a data line
  bool ended_ = false;
};

}  // namespace hivemesh::cli
