#include "base/logging.h"

#include <spdlog/spdlog.h>

namespace hivemesh {

absl::Status SetupLogging(const std::string& node_name, const std::string& level) {
  const spdlog::level::level_enum lvl = spdlog::level::from_str(level);
  if (lvl == spdlog::level::off && level != "off") {
    return absl::InvalidArgumentError("log level '" + level +
                                      "' is not one of trace, debug, info, warn, error, off");
  }
  spdlog::set_level(lvl);
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ [" + node_name + "] %v");
  return absl::OkStatus();
}

}  // namespace hivemesh
