// The `onnx` backend: runs an ONNX model with OpenCV's DNN module (CPU, OpenCV's own backend).
//
//   backend: onnx
//   inputs:                      # FP32 only; names are the graph's input names
//     - {name: window, datatype: FP32, shape: [-1, 128]}   # -1 = variable (e.g. batch)
//   outputs:                     # FP32 only; names are values of the graph
//     - {name: scores, datatype: FP32, shape: [-1, 2]}
//   options:
//     file: model.onnx           # relative to the version directory (default model.onnx)
//
// At load time the factory reads `<version_path>/<options.file>`, checks that every config
// input and output is FP32, then runs one forward pass on zeros (each -1 dimension set to 1):
// that proves the inputs and outputs exist in the graph and that the output shapes fit the
// config, so a wrong config fails at load with the field named rather than on the first request.
//
// Execute feeds each config input (by name) to the net, runs forward for every config output
// and appends FP32 output tensors with the shapes the net produced.
//
// Threading: each worker instance owns its own cv::dnn::Net (as Backend requires, no locking).
// The backend does not call cv::setNumThreads; the process decides OpenCV's thread pool.
#pragma once

#include "serving/backend.h"

namespace hivemesh {

void RegisterOnnxBackend(BackendRegistry& registry);

}  // namespace hivemesh
