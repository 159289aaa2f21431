// A model's configuration: `<repo>/<model>/config.yaml`.
//
//   backend: onnx              # a name in the BackendRegistry (required)
//   platform: onnx_onnxv1      # reported in model metadata (default: the backend name)
//   instances: 1               # worker instances, each with its own backend object
//   queue_limit: 64            # requests waiting beyond this are shed with 503
//   dataPolicy: mesh           # where the inputs may go: local-only | zone | mesh (default)
//   inputs:                    # name, datatype, shape (-1 = variable), optional
//     - {name: window, datatype: FP32, shape: [-1, 128]}
//   outputs:
//     - {name: scores, datatype: FP32, shape: [-1, 2]}
//   options:                   # backend options, string-valued
//     file: model.onnx
//   max_batch_size: 32         # dynamic batching (0 or absent: none); see BatchingConfig
//   preferred_batch_sizes: [8, 16, 32]
//   max_queue_delay_us: 500
//   version_policy: {latest: 1}  # which version folders to serve; see version_policy.h
//   insights:                  # what the model publishes on the insight bus; see insight_rules.h
//     - {topic: site/{zone}/{node}/people, output: count, every: 10s}
//
// Errors name the file and the field, e.g. "models/x/config.yaml: inputs[1].datatype: unknown
// datatype 'FP33'".
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "codec/model_name.h"
#include "serving/data_policy.h"
#include "serving/insight_rules.h"
#include "serving/version_policy.h"
#include "tensor/tensor.h"
#include "tensor/tensor_config.h"

namespace hivemesh {

// Dynamic batching of one model (Triton's dynamic batcher): requests that arrive close together
// are concatenated along their first dimension, run as one execution and split back.
struct BatchingConfig {
  // Most rows (sum of the requests' first dimensions) in one execution. 0: no batching, every
  // request runs alone as it arrived. > 0 needs a backend that can batch (kBatchingBackends) and
  // every input and output shape to start with -1, the batch dimension.
  int max_batch_size = 0;
  // Batch sizes (rows) the model runs best at, ascending, each in [1, max_batch_size]. A batch of
  // one of these sizes runs at once instead of waiting for more requests.
  std::vector<int> preferred_batch_sizes;
  // Longest the oldest queued request waits for others to join its batch. 0 (the default, as in
  // Triton): never wait; batch only what is already queued when a worker is free.
  int64_t max_queue_delay_us = 0;

  bool enabled() const { return max_batch_size > 0; }
};

// The backends whose Execute accepts a batch along the first dimension.
inline constexpr std::string_view kBatchingBackends[] = {"onnx", "identity"};

struct ModelConfig {
  std::string name;  // the model's directory name
  std::string backend;
  std::string platform;
  std::vector<TensorConfig> inputs;
  std::vector<TensorConfig> outputs;
  int instances = 1;
  int queue_limit = 64;
  DataPolicy data_policy = DataPolicy::kMesh;
  std::map<std::string, std::string> options;
  BatchingConfig batching;
  VersionPolicy version_policy;
  std::vector<InsightRule> insight_rules;

  // Backend option helpers: the value, or `fallback` when absent.
  std::string Option(const std::string& key, const std::string& fallback = "") const;
  const TensorConfig* FindInput(std::string_view name) const;
  const TensorConfig* FindOutput(std::string_view name) const;
};

// Parses config.yaml text. `file` is used in error messages; `model_name` becomes config.name
// and must follow the model name rule (model_name.h; INVALID_ARGUMENT otherwise).
// `default_instances` and `default_queue_limit` apply when the file does not set them.
absl::StatusOr<ModelConfig> ParseModelConfig(std::string_view yaml_text,
                                             std::string_view model_name, std::string_view file,
                                             int default_instances = 1,
                                             int default_queue_limit = 64);

// True if `shape` fits `dims` (same rank; every dim equal or dims[i] == -1).
bool ShapeMatches(std::span<const int64_t> dims, std::span<const int64_t> shape);

// The input a body without a JSON header (Inference-Header-Content-Length: 0) fills: the model's
// only input, or else its only BYTES input. Null if neither exists.
const TensorConfig* RawBodyInput(const ModelConfig& config);

}  // namespace hivemesh
