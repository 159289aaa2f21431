// TensorConfig: what a model declares about one of its inputs or outputs (name, datatype, shape,
// whether it may be left out). A plain value; models declare them in their config.yaml
// (serving/model_config.h) and the codec fills a raw body into one (codec/infer_codec.h).
#pragma once

#include <string>

#include "tensor/tensor.h"

namespace hivemesh {

struct TensorConfig {
  std::string name;
  DataType type = DataType::kFp32;
  Shape dims;             // -1 = any size in that dimension
  bool optional = false;  // an input a request may leave out
};

}  // namespace hivemesh
