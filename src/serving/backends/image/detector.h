// Pieces shared by the object-detector backends (hog-people, cascade): the output contract,
// numeric option parsing, and turning detections into output tensors.
//
// Every detector backend produces the same three outputs:
//   boxes   FP32  [N,4]  x, y, width, height in pixels of the request image
//   scores  FP32  [N]    detector-specific confidence (higher is more confident)
//   count   INT32 [1]    N
// and takes its image through ImageFromInputs (an encoded image and/or raw pixels input).
//
// Thread safety: free functions without shared state.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "opencv2/core/types.hpp"
#include "serving/model_config.h"
#include "tensor/tensor.h"

namespace hivemesh {

struct Detection {
  cv::Rect box;  // in the request image's pixel coordinates
  float score = 0;
};

// Checks at load time that `config` fits a detector backend named `backend`: it declares an
// image input (BYTES and/or UINT8) and exactly the outputs boxes/scores/count with the datatypes
// above. Errors name the field, e.g. "outputs[2].datatype: ...".
absl::Status CheckDetectorConfig(const ModelConfig& config, std::string_view backend);

// Numeric options: the parsed value of options.<key>, or `fallback` when absent. Errors name the
// option ("options.scale: 'abc' is not a number") or its range ("options.scale: must be > 1").
absl::StatusOr<double> DoubleOption(const ModelConfig& config, const std::string& key,
                                    double fallback);
absl::StatusOr<int> IntOption(const ModelConfig& config, const std::string& key, int fallback,
                              int min_value, int max_value);

// options.max_image_pixels: the most pixels (width x height) an image sent to the model may
// have, or `fallback` (the node's max_image_pixels) when absent. Errors name the option.
absl::StatusOr<int64_t> MaxImagePixelsOption(const ModelConfig& config, int64_t fallback);

// Appends boxes, scores and count for `detections` to `outputs`.
void AppendDetectionOutputs(std::span<const Detection> detections, std::vector<Tensor>* outputs);

}  // namespace hivemesh
