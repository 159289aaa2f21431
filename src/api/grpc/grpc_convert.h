// Conversions between the gRPC messages of inference.GRPCInferenceService
// (proto/grpc_service.proto) and the protocol-neutral InferRequest / InferResponse
// (tensor/inference.h), and from absl::Status to grpc::Status.
//
// Internal to src/api/grpc: it includes the generated protobuf headers, which nothing outside this
// folder (and its tests) may include.
//
// Everything here is pure: no I/O, no clocks (a request's deadline is set by the caller).
#pragma once

#include <grpcpp/support/status.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/memory_budget.h"
#include "grpc_service.pb.h"
#include "tensor/inference.h"

namespace hivemesh::grpc_api {

// The response parameter naming the node that computed the response (as in REST).
inline constexpr const char* kServedByParameter = "served_by";
// Its trailing-metadata twin (gRPC metadata keys are lower case).
inline constexpr const char* kServedByMetadata = "hivemesh-served-by";
// The trailing metadata with the request's trace id (REST: the Hivemesh-Trace header).
inline constexpr const char* kTraceMetadata = "hivemesh-trace";

struct DecodedRequest {
  InferRequest request;
  // Answer with raw_output_contents (the request sent raw inputs, or asked for it with the
  // request parameter binary_data_output = true); else typed contents where the datatype has
  // a typed form (FP16/BF16 outputs force raw for all).
  bool raw_outputs = false;
  // The request parameter "timeout" (ms, as in REST: int64_param or uint64_param), if any, cut
  // to kMaxRequestTimeout (base/timeouts.h).
  std::optional<std::chrono::milliseconds> timeout;
  // What the request holds of the memory budget (its tensors and its message) while it lives.
  uint64_t reserved_bytes = 0;
};

// A ModelInferRequest as an InferRequest. Raw contents are taken out of `proto` (left empty)
// and viewed by the tensors, not copied; typed contents are converted once into one buffer that
// the tensors view. Errors are INVALID_ARGUMENT naming the tensor and the problem: an unknown
// datatype, a tensor with both raw and typed contents (or raw contents for some inputs only), a
// raw size that disagrees with the shape, a typed element count that disagrees with it, typed
// contents in the wrong field for the datatype, FP16/BF16 sent typed.
// The bytes the tensors hold and what is left of the message (which lives as long as the call)
// are reserved from `budget` (may be null) before the buffer is made, and held by the tensors;
// see ReserveFor (base/memory_budget.h) for its errors.
absl::StatusOr<DecodedRequest> FromProto(inference::ModelInferRequest& proto,
                                         MemoryBudget* budget = nullptr);

// The most memory the answer to `response` takes as a message (raw_output_contents if `raw`,
// else typed contents at their width in memory) and serialized for the wire (typed elements at
// their widest encoding). A few operations per output: no pass over tensor data.
uint64_t AnswerBytes(const InferResponse& response, bool raw);

// Fills `out` from `response`: raw_output_contents if `raw`, else typed contents.
void ToProto(const InferResponse& response, bool raw, inference::ModelInferResponse* out);

// The gRPC status for an absl status: same code, same message.
grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace hivemesh::grpc_api
