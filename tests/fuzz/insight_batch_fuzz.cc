// libFuzzer target for the batches of insights one node delivers to another
// (bus::DecodeBatch, POST /v1/mesh/insights), which a member sends and every node parses. The
// input is the sender's name and the batch, split at the first NUL byte. Whatever the bytes: a
// refusal's message is short; what is taken is within the limits, every insight is the
// sender's, and each one's document, written again and read back, is the same insight.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "bus/insight.h"

namespace {

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

bool Same(const hivemesh::bus::Insight& a, const hivemesh::bus::Insight& b) {
  return a.id == b.id && a.topic == b.topic && a.node == b.node && a.zone == b.zone &&
         a.model == b.model && a.version == b.version && a.time_ms == b.time_ms && a.seq == b.seq &&
         a.trace == b.trace;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t nul = input.find('\0');
  if (nul == std::string_view::npos) return 0;
  const std::string_view sender = input.substr(0, nul);
  const std::string_view batch = input.substr(nul + 1);
  absl::StatusOr<std::vector<hivemesh::bus::Insight>> got =
      hivemesh::bus::DecodeBatch(batch, sender);
  if (!got.ok()) {
    Check(got.status().message().size() < 1024);
    return 0;
  }
  Check(got->size() <= hivemesh::bus::kMaxBatchInsights);
  std::string again;
  for (const hivemesh::bus::Insight& in : *got) {
    Check(in.node == sender);
    const std::string document = hivemesh::bus::Encode(in);
    absl::StatusOr<hivemesh::bus::Insight> back = hivemesh::bus::Decode(document);
    Check(back.ok() && Same(in, *back));
    hivemesh::bus::AppendToBatch(again, document);
  }
  Check(hivemesh::bus::DecodeBatch(again, sender).ok());
  return 0;
}
