// The KServe v2 REST infer body codec: JSON tensors and the binary tensor data extension.
//
// Decoding takes ownership of the request body (shared) and returns tensors that view it: binary
// tensor bytes are never copied. JSON data is converted once into the raw layout.
//
// Memory is sized from what a body holds, never from what it claims: a tensor's JSON values are
// counted against its shape before any buffer is made for them, and a shape the data does not
// fill is refused without allocating. What decoding makes (a tensor's raw bytes, a large JSON
// document's parse) is reserved from the node's memory budget when one is given (see
// ReserveFor: OUT_OF_RANGE if it could never fit, RESOURCE_EXHAUSTED if not now); decoded
// tensors hold their reservation until the last view of them is gone.
//
// Everything here is pure: no I/O, no clocks (the `timeout` parameter is returned as a duration).
// Thread safety: functions are reentrant (a thread-local JSON parser is reused per thread).
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "base/memory_budget.h"
#include "tensor/inference.h"
#include "tensor/tensor_config.h"

namespace hivemesh {

// The longest request id and tensor name accepted (INVALID_ARGUMENT beyond): the mesh tensor
// form, in which nodes forward requests, carries them with 16-bit lengths.
inline constexpr size_t kMaxNameBytes = 65535;

struct DecodedInferRequest {
  InferRequest request;  // model name/version and deadline are left for the caller to set
  // The "timeout" request parameter, cut to kMaxRequestTimeout (base/timeouts.h).
  std::optional<std::chrono::milliseconds> timeout;
};

// Decodes an infer request body. `header_length` is the Inference-Header-Content-Length header
// if present: the body is then that many bytes of JSON followed by binary tensor data. A value of
// 0 means the body is the raw data of `raw_input` (serving/model_config.h: RawBodyInput);
// `raw_input` may be null otherwise. Errors are INVALID_ARGUMENT with a message naming the tensor
// and the field. `budget` may be null (nothing is reserved).
absl::StatusOr<DecodedInferRequest> DecodeInferRequest(std::shared_ptr<const std::string> body,
                                                       std::optional<uint64_t> header_length,
                                                       const TensorConfig* raw_input,
                                                       MemoryBudget* budget = nullptr);

struct EncodedInferResponse {
  std::string json;            // the JSON document (the whole body if `binary` is empty)
  std::vector<Tensor> binary;  // tensors whose raw bytes follow the JSON, in order
};

// The size of an encoded answer, known before encoding it: `json` is the most the JSON document
// can take (each element at the widest text of its datatype), `binary` the raw bytes of the
// outputs sent in binary after it. Costs a few operations per output: no pass over tensor data.
struct EncodedSize {
  uint64_t json = 0;
  uint64_t binary = 0;
};
EncodedSize EncodedInferResponseSize(const InferResponse& response);

EncodedInferResponse EncodeInferResponse(const InferResponse& response);

// An infer request body in JSON (no binary extension, which not every KServe v2 server takes):
// `{"inputs":[{"name","datatype","shape","data"}...]}`, every output requested in JSON. For a
// KServe v2 server the node sends requests to (services/kserve_backend.h). Floats are written in
// their shortest text that reads back to the same value.
std::string EncodeInferRequest(std::span<const Tensor> inputs);

// {"error":"<message>"}
std::string EncodeError(std::string_view message);
// The message of an error body ({"error":"<message>"}), or nothing if `body` is not one.
std::optional<std::string> DecodeError(std::string_view body);

// Decodes an infer response body (JSON, or JSON header + binary outputs): a KServe v2 server's
// answer. Output tensors view `body`. The per-output `binary` flags are left false: they belong
// to the original client. (Nodes answer each other in the mesh tensor form: mesh_tensors.h.)
absl::StatusOr<InferResponse> DecodeInferResponse(std::shared_ptr<const std::string> body,
                                                  std::optional<uint64_t> header_length);

}  // namespace hivemesh
