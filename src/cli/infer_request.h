// Building a KServe v2 infer request body from command line input and the model's metadata:
// `--data 1,2,3` (or a JSON array) for a model's one non-BYTES input, and `--image FILE` for its
// BYTES input, sent with the binary tensor data extension. Pure: no I/O.
//
// Errors are INVALID_ARGUMENT (a usage error: the data does not fit the model) naming the input.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "cli/model_metadata.h"

namespace hivemesh::cli {

// Values as given: "1,2,3" (commas, optional spaces) or a JSON array, flat or nested
// ("[[1,2],[3,4]]"), of numbers or booleans.
struct DataValues {
  std::vector<std::string> tokens;  // each value's text: "1.5", "-3", "true"
  std::vector<int64_t> shape;       // the JSON array's nesting ([2,2]); flat values: [n]
};
absl::StatusOr<DataValues> ParseDataValues(std::string_view text);

// The shape to send `values` as, for an input declared with `declared` (-1: variable):
//  - values nested like the declared rank: that shape, if every fixed dimension agrees;
//  - flat values and at most one variable dimension: it is count / (product of the others);
//  - flat values and several variable dimensions: an error asking for a nested array.
absl::StatusOr<std::vector<int64_t>> ResolveShape(const TensorMetadata& input,
                                                  const DataValues& values);

// The input --data fills: the one named `name` if given, else the model's only non-BYTES input.
absl::StatusOr<const TensorMetadata*> DataInput(const ModelMetadata& model, std::string_view name);
// The input --image fills: the one named `name` if given, else the model's only BYTES input.
absl::StatusOr<const TensorMetadata*> ImageInput(const ModelMetadata& model, std::string_view name);

// {"inputs":[{"name":..,"shape":[..],"datatype":..,"data":[..]}]}, each value checked against
// the datatype (integers in range, finite numbers, booleans as true/false/1/0).
absl::StatusOr<std::string> BuildDataRequest(const ModelMetadata& model, std::string_view data,
                                             std::string_view input_name = "");

// A body in the binary tensor data extension: `header_length` bytes of JSON, then raw tensors.
struct BinaryRequestBody {
  std::string body;
  size_t header_length = 0;  // Inference-Header-Content-Length
};

// The image's bytes as the one element of the model's BYTES input (4-byte little-endian length,
// then the bytes: binary_data_size = 4 + size).
absl::StatusOr<BinaryRequestBody> BuildImageRequest(const ModelMetadata& model,
                                                    std::string_view image,
                                                    std::string_view input_name = "");

// True if `bytes` start like a JPEG (FF D8 FF) or PNG file.
bool IsJpegOrPng(std::string_view bytes);

}  // namespace hivemesh::cli
