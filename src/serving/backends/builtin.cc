// RegisterBuiltinBackends (declared in serving/backend.h): identity is compiled in; onnx,
// hog-people and cascade are registered as names whose first use loads the OpenCV plugin.
#include <dlfcn.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <filesystem>
#include <memory>

#include "base/strings.h"
#include "serving/backend.h"
#include "serving/backends/identity/identity_backend.h"
#include "serving/backends/opencv_backends.h"

#ifndef HIVEMESH_PLUGIN_BUILD_DIR
#define HIVEMESH_PLUGIN_BUILD_DIR ""
#endif

namespace hivemesh {
namespace {

constexpr const char* kPluginFile = "libhivemesh_opencv.so";

struct Plugin {
  BackendRegistry registry;
  absl::Status status;
};

// Where the plugin may be: $HIVEMESH_PLUGIN_DIR, beside the running executable, then the build
// folder it was built in.
std::vector<std::string> PluginCandidates() {
  std::vector<std::string> out;
  if (const char* dir = std::getenv("HIVEMESH_PLUGIN_DIR"); dir != nullptr && *dir != 0) {
    out.push_back(std::string(dir) + "/" + kPluginFile);
  }
  char exe[PATH_MAX];
  const ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) {
    exe[n] = 0;
    out.push_back((std::filesystem::path(exe).parent_path() / kPluginFile).string());
  }
  if (*HIVEMESH_PLUGIN_BUILD_DIR)
    out.push_back(std::string(HIVEMESH_PLUGIN_BUILD_DIR) + "/" + kPluginFile);
  return out;
}

// Loaded once, on first use, and never unloaded (backends it made may live until exit).
const Plugin& OpenCvPlugin() {
  static const Plugin* plugin = [] {
    auto* p = new Plugin();
    std::string errors;
    for (const std::string& path : PluginCandidates()) {
      void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (handle == nullptr) {
        StrAppend(&errors, errors.empty() ? "" : "; ", dlerror());
        continue;
      }
      auto* reg = reinterpret_cast<void (*)(BackendRegistry*)>(
          dlsym(handle, "hivemesh_register_opencv_backends"));
      if (reg == nullptr) {
        StrAppend(&errors, errors.empty() ? "" : "; ", path, ": no registration function");
        continue;
      }
      reg(&p->registry);
      return p;
    }
    p->status = absl::FailedPreconditionError(StrCat(
        "backend: the OpenCV backends plugin (", kPluginFile, ") could not be loaded: ", errors));
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
