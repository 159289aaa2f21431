// The head of one message on a mesh link (docs/routing.md, "The mesh link"). A link carries
// HTTP/1.1 requests and responses, always framed by Content-Length, between hivemesh nodes only;
// this parser accepts exactly that and nothing looser: CRLF line ends, no folded lines, no
// Transfer-Encoding, one Content-Length. Pure: no I/O, no allocation once `fields` has grown to
// the usual number of fields.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace hivemesh {

struct LinkField {
  std::string_view name, value;  // value without surrounding spaces or tabs
};

struct LinkHead {
  std::string_view method, target;  // a request's
  int status = 0;                   // a response's
  std::vector<LinkField> fields;    // in arrival order; views into the parsed bytes
  size_t head_size = 0;             // bytes up to and including the blank line
  uint64_t content_length = 0;      // 0 when the message has no Content-Length
};

enum class LinkParse { kNeedMore, kDone, kBad };

// Parses the head at the start of `bytes`: a request's if `request`, else a response's.
// kNeedMore: no blank line yet and fewer than `max_head` bytes, so more may complete it.
// kDone: `head` describes it (its views point into `bytes`). kBad: `error` says why; a link
// cannot find the next message after one it could not parse.
LinkParse ParseLinkHead(std::string_view bytes, bool request, size_t max_head, LinkHead* head,
                        std::string* error);

}  // namespace hivemesh
