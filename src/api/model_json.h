// The JSON of the KServe v2 model endpoints: a model's tensor metadata (GET /v2/models/<m>) and
// its statistics (GET /v2/models/<m>/stats, the statistics extension, with hivemesh's fields
// beyond it: queue depth, in flight, shed, expired, server overhead).
//
// Thread safety: pure writers; statistics are read from atomics as they are.
#pragma once

#include <vector>

#include "codec/json_writer.h"
#include "serving/model_runtime.h"
#include "tensor/tensor_config.h"

namespace hivemesh {

// [{"name":..., "datatype":..., "shape":[...], "optional":true?}, ...]
void WriteTensorMetadata(JsonWriter& w, const std::vector<TensorConfig>& tensors);

// One model version's entry of "model_stats".
void WriteStats(JsonWriter& w, const ModelRuntime& rt);

}  // namespace hivemesh
