// libFuzzer target for reading HTTP/1.1 requests as the server does (api/http_request_reader.h):
// the bytes arrive in pieces of a size the input chooses, into the connection's buffer, and
// requests are read one after another (pipelined) until one is refused. Any bytes must end in a
// request, a wait for more or a refusal with a known status; and whatever is sent, the buffer
// holds no more than the reader's bound when it waits, a body stays within the body limit and
// within what it reserved from the memory budget, and every reservation is given back.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "base/memory_budget.h"
#include "transport/http_request_reader.h"

using hivemesh::MemoryBudget;
using hivemesh::http_internal::RequestHead;
using hivemesh::http_internal::RequestLimits;
using hivemesh::http_internal::RequestReader;

namespace {

// Small limits, so that inputs of a few kilobytes reach every one of them.
RequestLimits Limits() {
  RequestLimits l;
  l.max_body_bytes = 2048;
  l.header_bytes = 512;
  l.chunk_line_bytes = 64;
  l.trailer_bytes = 256;
  return l;
}

// The room a std::string has inside itself, with no allocation.
const uint64_t kShortString = std::string().capacity();

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

void Run(std::string_view input, bool with_budget, bool stream) {
  // The first byte: how many bytes arrive per read (1..64).
  const size_t piece = input.empty() ? 1 : 1 + static_cast<unsigned char>(input[0]) % 64;
  if (!input.empty()) input.remove_prefix(1);
  // Room for one large body and a little: a second one is refused.
  std::shared_ptr<MemoryBudget> budget = MemoryBudget::Create(4096, 512);
  const RequestLimits limits = Limits();
  {
    RequestReader reader(limits, with_budget ? budget.get() : nullptr);
    RequestHead head;
    boost::beast::flat_buffer buffer;
    std::shared_ptr<const std::string> held;  // the last body, kept as a handler would
    reader.Start(&head);
    bool refused = false;
    std::string piece_taken;  // a streamed body's pieces, as a forwarder takes them
    while (!refused) {
      const size_t n = std::min(piece, input.size());
      if (n == 0) break;
      auto room = buffer.prepare(n);
      std::copy_n(input.data(), n, static_cast<char*>(room.data()));
      buffer.commit(n);
      input.remove_prefix(n);
      for (;;) {
        const RequestReader::Step step = reader.Feed(buffer);
        if (stream) {
          // A streamed body is never held or reserved: what one Feed parsed, at most.
          Check(reader.reserved() == 0);
          piece_taken.clear();
          reader.TakePiece(&piece_taken);
          Check(piece_taken.size() <= reader.max_unparsed() + piece);
        }
        if (step == RequestReader::Step::kNeedMore) {
          Check(buffer.size() <= reader.max_unparsed());
          Check(reader.body_capacity() <= limits.max_body_bytes + 64);
          // What the body holds is reserved (give or take a short string: growing out of its
          // own room, a string takes at least twice that).
          if (with_budget && reader.reserved() > 0) {
            Check(reader.body_capacity() <= std::max(reader.reserved(), 2 * kShortString));
          }
          break;
        }
        if (step == RequestReader::Step::kHead) {
          Check(head.method_size > 0);
          if (stream) reader.StreamBody();
          continue;
        }
        if (step == RequestReader::Step::kRefused) {
          const int status = reader.refusal().status;
          Check(status == 400 || status == 413 || status == 431 || status == 503);
          Check(!reader.refusal().message.empty());
          Check(status != 503 || with_budget);
          refused = true;
          break;
        }
        held = reader.TakeBody();
        Check(held != nullptr && (stream || held->size() <= limits.max_body_bytes));
        // A body's head never carries a Transfer-Encoding other than chunked.
        if (const RequestHead::Field* te = head.Find("Transfer-Encoding")) {
          std::string_view v = head.Value(*te);
          while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
          while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
          Check(v.size() == 7);
        }
        reader.Start(&head);
      }
    }
  }
  Check(budget->used() == 0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  Run(input, true, false);
  Run(input, false, false);
  Run(input, true, true);
  return 0;
}
