// libFuzzer target for the mesh link's message head parser: any bytes a peer sends must parse
// to a head, ask for more, or be refused, and a parsed head must point inside the bytes, frame
// the same way when the bytes after it change, and parse the same when re-read.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "transport/link_head.h"

using hivemesh::LinkHead;
using hivemesh::LinkParse;

namespace {

bool Inside(std::string_view part, std::string_view whole) {
  return part.empty() ||
         (part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size());
}

void Check(std::string_view bytes, bool request) {
  constexpr size_t kMaxHead = 4096;
  LinkHead head;
  std::string error;
  const LinkParse r = hivemesh::ParseLinkHead(bytes, request, kMaxHead, &head, &error);
  if (r == LinkParse::kBad && error.empty()) __builtin_trap();
  if (r == LinkParse::kNeedMore && bytes.size() >= kMaxHead) __builtin_trap();
  if (r != LinkParse::kDone) return;
  if (head.head_size > bytes.size() || head.head_size > kMaxHead) __builtin_trap();
  const std::string_view parsed = bytes.substr(0, head.head_size);
  if (!Inside(head.method, parsed) || !Inside(head.target, parsed)) __builtin_trap();
  for (const hivemesh::LinkField& f : head.fields) {
    if (f.name.empty() || !Inside(f.name, parsed) || !Inside(f.value, parsed)) __builtin_trap();
  }
  if (!request && (head.status < 0 || head.status > 999)) __builtin_trap();
  // The head alone parses the same: nothing after the blank line changes it.
  LinkHead again;
  if (hivemesh::ParseLinkHead(parsed, request, kMaxHead, &again, &error) != LinkParse::kDone ||
      again.head_size != head.head_size || again.fields.size() != head.fields.size() ||
      again.content_length != head.content_length || again.status != head.status) {
    __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  Check(bytes, true);
  Check(bytes, false);
  return 0;
}
