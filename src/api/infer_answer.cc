#include "api/infer_answer.h"

#include <memory>
#include <string>
#include <utility>

#include "base/strings.h"
#include "codec/infer_codec.h"
#include "codec/mesh_tensors.h"
#include "routing/forwarder.h"

namespace hivemesh {
namespace {

// Bytes of `tensors` the answer would add to what the node holds: those viewing the request's
// body are counted with it already.
uint64_t NewBytes(const std::vector<Tensor>& tensors, const void* request_body) {
  uint64_t bytes = 0;
  for (const Tensor& t : tensors) {
    if (request_body == nullptr || t.owner().get() != request_body) bytes += t.data().size();
  }
  return bytes;
}

// Reserves an answer of `text` bytes to be made and `raw` bytes of outputs it sends as they are.
absl::StatusOr<MemoryBudget::Reservation> ReserveAnswer(const AnswerBudget& b, uint64_t text,
                                                        uint64_t raw, bool json) {
  const uint64_t total = text + raw;
  if (b.budget == nullptr || total <= kUncountedAnswerBytes) return MemoryBudget::Reservation();
  // JSON text is what makes an answer large when it is most of it.
  const bool text_heavy = json && text >= raw;
  absl::StatusOr<MemoryBudget::Reservation> r =
      ReserveFor(b.budget, total, text_heavy ? "the answer in JSON" : "the answer",
                 text_heavy ? "ask for binary outputs (request parameters.binary_data_output: "
                              "true, or parameters.binary_data: true on each output)"
                            : "ask for fewer outputs, or send smaller inputs",
                 b.request_bytes);
  if (!r.ok() && b.rejections != nullptr) {
    const bool never = r.status().code() == absl::StatusCode::kOutOfRange;
    b.rejections->Note(never ? Rejection::kResponseTooLarge : Rejection::kMemoryBudget, b.source,
                       MessageOf(r.status()));
  }
  return r;
}

// Keeps `reservation` until the answer has been sent: it is given back when on_sent runs, or
// when the response is dropped unsent.
void HoldUntilSent(HttpResponse& r, MemoryBudget::Reservation&& reservation) {
  if (reservation.bytes() == 0) return;
  auto held = std::make_shared<MemoryBudget::Reservation>(std::move(reservation));
  r.on_sent = [held, next = std::move(r.on_sent)](SteadyTime sent) {
    held->Release();
    if (next) next(sent);
  };
}

}  // namespace

absl::StatusOr<HttpResponse> EncodeAnswer(const InferResponse& result, const AnswerBudget& budget) {
  const EncodedSize size = EncodedInferResponseSize(result);
  uint64_t raw = 0;
  if (size.binary > 0) {
    for (size_t i = 0; i < result.outputs.size(); ++i) {
      const Tensor& t = result.outputs[i];
      const bool binary = i < result.binary.size() && result.binary[i];
      if (binary && (budget.request_body == nullptr || t.owner().get() != budget.request_body)) {
        raw += t.data().size();
      }
    }
  }
  absl::StatusOr<MemoryBudget::Reservation> memory =
      ReserveAnswer(budget, size.json, raw, /*json=*/true);
  if (!memory.ok()) return memory.status();
  EncodedInferResponse enc = EncodeInferResponse(result);
  HttpResponse r;
  r.status = 200;
  if (!enc.binary.empty()) {
    r.content_type = "application/octet-stream";
    r.headers.emplace_back("Inference-Header-Content-Length", std::to_string(enc.json.size()));
    r.tail = std::move(enc.binary);
  }
  r.headers.emplace_back(routing::kServedByHeader, result.served_by);
  r.body = std::move(enc.json);
  HoldUntilSent(r, *std::move(memory));
  return r;
}

absl::StatusOr<HttpResponse> EncodeAnswerForMesh(const InferResponse& result,
                                                 const AnswerBudget& budget) {
  if (!MeshAnswerFits(result)) return EncodeAnswer(result, budget);
  MeshTensorsMessage m = EncodeMeshAnswer(result);
  // The head is made; the tensors are sent from where they are.
  absl::StatusOr<MemoryBudget::Reservation> memory = ReserveAnswer(
      budget, m.head.size(), NewBytes(m.tensors, budget.request_body), /*json=*/false);
  if (!memory.ok()) return memory.status();
  HttpResponse r;
  r.status = 200;
  r.content_type = std::string(kMeshTensorsType);
  r.body = std::move(m.head);
  r.tail = std::move(m.tensors);
  HoldUntilSent(r, *std::move(memory));
  return r;
}

}  // namespace hivemesh
