// The protocol-neutral form of an inference request and response, shared by the REST and gRPC
// front ends and the model runtime.
#pragma once

#include <atomic>
#include <optional>
#include <string>
#include <vector>

#include "base/clock.h"
#include "tensor/tensor.h"

namespace hivemesh {

struct RequestedOutput {
  std::string name;
  bool binary = false;  // REST binary tensor extension: return this output as raw bytes
};

struct InferRequest {
  std::string model_name;
  std::string model_version;  // empty: the model's default version
  std::string id;             // echoed in the response
  std::vector<Tensor> inputs;
  std::vector<RequestedOutput> outputs;  // empty: every output
  bool binary_output = false;            // "binary_data_output": all outputs as raw bytes
  std::optional<SteadyTime> deadline;    // answered DEADLINE_EXCEEDED if still queued then
  // Set (by the front end, from the transport) when the sender no longer needs the answer: a
  // request still queued then is answered CANCELLED without being computed. Null: never. Valid
  // until the request is answered.
  const std::atomic<bool>* cancelled = nullptr;
};

struct InferResponse {
  std::string model_name;
  std::string model_version;
  std::string id;
  std::vector<Tensor> outputs;
  std::vector<bool> binary;  // per output, parallel to `outputs`
  uint64_t compute_ns = 0;   // time the backend spent on this request
  std::string served_by;     // the node that computed it
};

}  // namespace hivemesh
