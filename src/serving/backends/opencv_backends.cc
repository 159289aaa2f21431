#include "serving/backends/opencv_backends.h"

#include "serving/backends/cascade/cascade_backend.h"
#include "serving/backends/hog_people/hog_people_backend.h"
#include "serving/backends/onnx/onnx_backend.h"

namespace hivemesh {

void RegisterOpenCvBackends(BackendRegistry& registry) {
  RegisterOnnxBackend(registry);
  RegisterHogPeopleBackend(registry);
  RegisterCascadeBackend(registry);
}

}  // namespace hivemesh
