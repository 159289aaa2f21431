// The backends built on OpenCV and image codecs (onnx, hog-people, cascade). They live in a
// plugin, libhivemesh_opencv.so, that the agent loads only when a model names one of them: a node
// without such models never maps OpenCV and its libraries (about 8 MiB resident and tens of
// milliseconds of start-up on a small device).
#pragma once

#include "serving/backend.h"

namespace hivemesh {

// Registers onnx, hog-people and cascade into `registry` (used by the plugin, and by tests that
// link the backends directly).
void RegisterOpenCvBackends(BackendRegistry& registry);

}  // namespace hivemesh

// The plugin's entry point, looked up with dlsym.
extern "C" void hivemesh_register_opencv_backends(hivemesh::BackendRegistry* registry);
