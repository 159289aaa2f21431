// Inference answers as HTTP responses, made within the node's memory budget.
//
// An answer can be far larger than its request: 64 MiB of binary FP32 in, asked for in JSON,
// is up to 272 MiB of text out. So before an answer is encoded its size is known (exactly for
// raw bytes; for JSON, elements x the widest text of their datatype: EncodedInferResponseSize)
// and reserved from the budget, and the reservation is held until the answer has been written.
// An answer the budget can never hold is refused with OUT_OF_RANGE (HTTP 400: retrying cannot
// help, asking differently can) saying to ask for binary outputs when JSON is what makes it
// large, and counted as response_too_large; one that does not fit now is RESOURCE_EXHAUSTED
// (503 with Retry-After), counted as memory_budget. Outputs that view the request's body (an
// identity model's) are not counted again: the body is reserved already.
//
// Small answers (at most kUncountedAnswerBytes) are not reserved: the common case costs nothing
// beyond a few additions, and how many can be in flight is bounded by the node's connections.
//
// Thread safety: pure functions over their arguments; the budget and rejection counters are
// thread-safe.
#pragma once

#include <cstdint>
#include <string_view>

#include "absl/status/statusor.h"
#include "base/memory_budget.h"
#include "base/rejections.h"
#include "tensor/inference.h"
#include "transport/http_server.h"

namespace hivemesh {

inline constexpr uint64_t kUncountedAnswerBytes = 16 * 1024;

// Where an answer's memory comes from.
struct AnswerBudget {
  MemoryBudget* budget = nullptr;      // null: nothing is reserved
  Rejections* rejections = nullptr;    // null: refusals are not counted
  const void* request_body = nullptr;  // outputs viewing it are not counted (never read)
  uint64_t request_bytes = 0;          // what the request holds (its body) while answered
  std::string_view source;             // the client's address, for the log
};

// The answer in KServe v2: JSON, or JSON + binary outputs (Hivemesh-Served-By set).
absl::StatusOr<HttpResponse> EncodeAnswer(const InferResponse& result, const AnswerBudget& budget);

// The answer in the mesh tensor form, for the node that forwarded the request (or, with more
// outputs than that form counts, in KServe v2, which that node reads too).
absl::StatusOr<HttpResponse> EncodeAnswerForMesh(const InferResponse& result,
                                                 const AnswerBudget& budget);

}  // namespace hivemesh
