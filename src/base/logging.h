// Logging setup. Components log through spdlog's default logger; this sets its level and a
// pattern that carries the node name on every line.
#pragma once

#include <string>

#include "absl/status/status.h"

namespace hivemesh {

// Configures the default logger. `level` is one of trace, debug, info, warn, error, off.
absl::Status SetupLogging(const std::string& node_name, const std::string& level);

}  // namespace hivemesh
