// libFuzzer target for the inference body decoders: the KServe v2 REST request decoder (and, for
// what it accepts, the response encoder) and the mesh tensor form (codec/mesh_tensors.h).
// The first byte picks how the body is framed: plain JSON, JSON header + binary data (header
// length from the next two bytes), a raw single-input body, or the mesh tensor form (request
// and answer).
//
// Memory is checked too: what the decoders allocate (every allocation, counted through the
// sanitizer's malloc hooks) stays within a small multiple of the body, so that no claimed shape
// or count sizes a buffer; what a decoded request holds of the memory budget is within the same
// bound and given back when it is dropped; and an encoded answer stays within the size
// EncodedInferResponseSize promised.
#include <sanitizer/allocator_interface.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "base/memory_budget.h"
#include "codec/infer_codec.h"
#include "codec/mesh_tensors.h"

namespace {

// Allocations made by this thread while an AllocationWatch lives (the hooks see every thread's).
thread_local bool watching = false;
thread_local size_t allocated_total = 0;
thread_local size_t allocated_largest = 0;

void OnMalloc(const volatile void*, size_t size) {
  if (!watching) return;
  allocated_total += size;
  if (size > allocated_largest) allocated_largest = size;
}
void OnFree(const volatile void*) {}

// What decoding `size` bytes may allocate: the JSON parser's buffers (simdjson sizes them at
// about 14 bytes per byte of document, and its depth stacks are fixed), decoded tensors (at most
// 4 bytes of FP64 per byte of JSON), names and messages.
size_t AllocationBound(size_t size) { return 32 * size + (1 << 20); }

class AllocationWatch {
 public:
  AllocationWatch() {
    allocated_total = 0;
    allocated_largest = 0;
    watching = true;
  }
  ~AllocationWatch() { watching = false; }
  // Traps if more was allocated than `size` bytes of input justify.
  void Check(size_t size) const {
    if (allocated_largest > 16 * size + (256 << 10) || allocated_total > AllocationBound(size)) {
      __builtin_trap();
    }
  }
};

std::string Wire(const hivemesh::MeshTensorsMessage& m) {
  std::string wire = m.head;
  for (const hivemesh::Tensor& t : m.tensors) wire.append(t.data());
  if (wire.size() != m.size()) __builtin_trap();
  return wire;
}

// A request in the mesh tensor form decodes back to the same tensors.
void RoundTrip(const hivemesh::InferRequest& request) {
  absl::StatusOr<hivemesh::InferRequest> again = hivemesh::DecodeMeshRequest(
      std::make_shared<const std::string>(Wire(hivemesh::EncodeMeshRequest(request))));
  if (!again.ok() || again->id != request.id || again->inputs.size() != request.inputs.size() ||
      again->outputs.size() != request.outputs.size()) {
    __builtin_trap();
  }
  for (size_t i = 0; i < again->inputs.size(); ++i) {
    const hivemesh::Tensor &a = again->inputs[i], &b = request.inputs[i];
    if (a.data() != b.data() || a.shape() != b.shape() || a.type() != b.type() ||
        a.name() != b.name()) {
      __builtin_trap();
    }
  }
}

// The bytes as a peer's mesh request and answer: errors say why; what is accepted is valid and
// encodes back to the same bytes.
void FuzzMeshForm(const std::shared_ptr<const std::string>& body) {
  absl::StatusOr<hivemesh::InferRequest> request;
  {
    AllocationWatch watch;
    request = hivemesh::DecodeMeshRequest(body);
    watch.Check(body->size() + 3);
  }
  if (!request.ok() && request.status().message().empty()) __builtin_trap();
  if (request.ok()) {
    for (const hivemesh::Tensor& t : request->inputs) {
      if (!hivemesh::ValidateTensorData(t).ok()) __builtin_trap();
    }
    RoundTrip(*request);
  }
  absl::StatusOr<hivemesh::InferResponse> answer;
  {
    AllocationWatch watch;
    answer = hivemesh::DecodeMeshAnswer(body);
    watch.Check(body->size() + 3);
  }
  if (!answer.ok() && answer.status().message().empty()) __builtin_trap();
  if (answer.ok()) {
    for (const hivemesh::Tensor& t : answer->outputs) {
      if (!hivemesh::ValidateTensorData(t).ok()) __builtin_trap();
    }
    // Padding bytes are not read, so only the sizes must agree.
    if (Wire(hivemesh::EncodeMeshAnswer(*answer)).size() != body->size()) __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  __sanitizer_install_malloc_and_free_hooks(OnMalloc, OnFree);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 3) return 0;
  const uint8_t mode = data[0] % 4;
  const uint64_t header = static_cast<uint64_t>(data[1]) | (static_cast<uint64_t>(data[2]) << 8);
  auto body =
      std::make_shared<const std::string>(reinterpret_cast<const char*>(data + 3), size - 3);

  if (mode == 3) {
    FuzzMeshForm(body);
    return 0;
  }
  std::optional<uint64_t> header_length;
  if (mode == 1) header_length = header;
  if (mode == 2) header_length = 0;
  static const hivemesh::TensorConfig raw_input{"x", hivemesh::DataType::kFp32, {-1, 2}, false};
  static const hivemesh::TensorConfig raw_bytes{"s", hivemesh::DataType::kBytes, {1}, false};
  const hivemesh::TensorConfig* raw = (header & 1) ? &raw_input : &raw_bytes;

  // The same bytes as a peer's response (the forwarding path decodes those).
  {
    AllocationWatch watch;
    absl::StatusOr<hivemesh::InferResponse> response_in =
        hivemesh::DecodeInferResponse(body, mode == 1 ? header_length : std::nullopt);
    if (!response_in.ok() && response_in.status().message().empty()) __builtin_trap();
    watch.Check(size);
  }
  // A budget far larger than any input here: it must not be what stops a claim.
  static const std::shared_ptr<hivemesh::MemoryBudget> budget =
      hivemesh::MemoryBudget::Create(uint64_t{1} << 40);
  absl::StatusOr<hivemesh::DecodedInferRequest> decoded;
  {
    AllocationWatch watch;
    decoded = hivemesh::DecodeInferRequest(body, header_length, raw, budget.get());
    watch.Check(size);
  }
  if (budget->used() > AllocationBound(size)) __builtin_trap();
  if (!decoded.ok()) {
    if (decoded.status().message().empty()) __builtin_trap();  // every error says why
    if (budget->used() != 0) __builtin_trap();                 // a refusal holds nothing
    return 0;
  }
  // Whatever was accepted is consistent and can be encoded back.
  hivemesh::InferResponse response;
  response.model_name = "fuzz";
  response.id = decoded->request.id;
  for (const hivemesh::Tensor& t : decoded->request.inputs) {
    if (!hivemesh::ValidateTensorData(t).ok()) __builtin_trap();
    response.outputs.push_back(t);
    response.binary.push_back(t.data().size() % 2 == 0);
  }
  hivemesh::EncodedInferResponse enc = hivemesh::EncodeInferResponse(response);
  if (enc.json.empty()) __builtin_trap();
  const hivemesh::EncodedSize promised = hivemesh::EncodedInferResponseSize(response);
  uint64_t binary = 0;
  for (const hivemesh::Tensor& t : enc.binary) binary += t.data().size();
  if (enc.json.size() > promised.json || binary != promised.binary) __builtin_trap();
  // Forwarded on, it decodes back to the same tensors.
  RoundTrip(decoded->request);
  response.outputs.clear();
  enc.binary.clear();
  decoded = absl::InternalError("dropped");
  if (budget->used() != 0) __builtin_trap();  // every tensor gave its memory back
  return 0;
}
