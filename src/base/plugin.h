// Optional parts of the node built as shared libraries (the OpenCV backends, the gRPC service),
// loaded on first use so that a node which does not need them never maps them.
#pragma once

#include <string_view>

#include "absl/status/statusor.h"

namespace hivemesh {

// Opens `file` (e.g. "libhivemesh_grpc.so") from the first place it is found, in order:
// $HIVEMESH_PLUGIN_DIR, the folder of the running executable, the folder it is installed in
// (/usr/lib/<multiarch>/hivemesh), the build folder the project was built in; and returns the
// address of `symbol` in it. The library is never closed. Fails with FAILED_PRECONDITION naming
// every place tried and why it failed.
//
// Thread safety: callers load each plugin once (e.g. in a function-local static).
absl::StatusOr<void*> LoadPluginSymbol(std::string_view file, const char* symbol);

}  // namespace hivemesh
