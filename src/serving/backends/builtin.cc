// RegisterBuiltinBackends (declared in serving/backend.h): every backend compiled into hivemesh.
#include "serving/backend.h"
#include "serving/backends/cascade/cascade_backend.h"
#include "serving/backends/hog_people/hog_people_backend.h"
#include "serving/backends/identity/identity_backend.h"
#include "serving/backends/onnx/onnx_backend.h"

namespace hivemesh {

void RegisterBuiltinBackends(BackendRegistry& registry) {
  RegisterIdentityBackend(registry);
  RegisterOnnxBackend(registry);
  RegisterHogPeopleBackend(registry);
  RegisterCascadeBackend(registry);
}

}  // namespace hivemesh
