#include "base/plugin.h"

#include <dlfcn.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "base/strings.h"

#ifndef HIVEMESH_PLUGIN_INSTALL_DIR
#define HIVEMESH_PLUGIN_INSTALL_DIR ""
#endif
#ifndef HIVEMESH_PLUGIN_BUILD_DIR
#define HIVEMESH_PLUGIN_BUILD_DIR ""
#endif

namespace hivemesh {
namespace {

std::vector<std::string> PluginCandidates(std::string_view file) {
  std::vector<std::string> out;
  if (const char* dir = std::getenv("HIVEMESH_PLUGIN_DIR"); dir != nullptr && *dir != 0) {
    out.push_back(StrCat(dir, "/", file));
  }
  char exe[PATH_MAX];
  const ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) {
    exe[n] = 0;
    out.push_back((std::filesystem::path(exe).parent_path() / file).string());
  }
  if (*HIVEMESH_PLUGIN_INSTALL_DIR) out.push_back(StrCat(HIVEMESH_PLUGIN_INSTALL_DIR, "/", file));
  if (*HIVEMESH_PLUGIN_BUILD_DIR) out.push_back(StrCat(HIVEMESH_PLUGIN_BUILD_DIR, "/", file));
  return out;
}

}  // namespace

absl::StatusOr<void*> LoadPluginSymbol(std::string_view file, const char* symbol) {
  std::string errors;
  for (const std::string& path : PluginCandidates(file)) {
    void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
      StrAppend(&errors, errors.empty() ? "" : "; ", dlerror());
      continue;
    }
    if (void* address = dlsym(handle, symbol); address != nullptr) return address;
    StrAppend(&errors, errors.empty() ? "" : "; ", path, ": no ", symbol);
  }
  return absl::FailedPreconditionError(StrCat(file, " could not be loaded: ", errors));
}

}  // namespace hivemesh
