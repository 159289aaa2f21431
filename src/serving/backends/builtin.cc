// RegisterBuiltinBackends (declared in serving/backend.h): identity is compiled in; onnx,
// hog-people and cascade are registered as names whose first use loads the OpenCV plugin.
#include <memory>

#include "base/plugin.h"
#include "base/strings.h"
#include "serving/backend.h"
#include "serving/backends/identity/identity_backend.h"
#include "serving/backends/opencv_backends.h"

namespace hivemesh {
namespace {

constexpr const char* kPluginFile = "libhivemesh_opencv.so";

struct Plugin {
  BackendRegistry registry;
  absl::Status status;
};

// Loaded once, on first use, and never unloaded (backends it made may live until exit).
const Plugin& OpenCvPlugin() {
  static const Plugin* plugin = [] {
    auto* p = new Plugin();
    absl::StatusOr<void*> reg = LoadPluginSymbol(kPluginFile, "hivemesh_register_opencv_backends");
    if (!reg.ok()) {
      p->status = absl::FailedPreconditionError(
          StrCat("backend: the OpenCV backends plugin: ", MessageOf(reg.status())));
      return p;
    }
    using RegisterFn = void (*)(BackendRegistry*);
    reinterpret_cast<RegisterFn> (*reg)(&p->registry);
    return p;
  }();
  return *plugin;
}

BackendFactory FromPlugin(std::string name) {
  return [name](const BackendContext& ctx) -> absl::StatusOr<std::unique_ptr<Backend>> {
    const Plugin& plugin = OpenCvPlugin();
    if (!plugin.status.ok()) return plugin.status;
    const BackendFactory* factory = plugin.registry.Find(name);
    if (factory == nullptr) {
      return absl::InternalError("backend: the OpenCV plugin has no backend '" + name + "'");
    }
    return (*factory)(ctx);
  };
}

}  // namespace

void RegisterBuiltinBackends(BackendRegistry& registry) {
  RegisterIdentityBackend(registry);
  for (const char* name : {"onnx", "hog-people", "cascade"})
    registry.Register(name, FromPlugin(name));
}

}  // namespace hivemesh
