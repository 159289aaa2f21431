// Log setup for a node. Components log through spdlog's default logger; every line carries the
// node's name, in one of two formats:
//
//   text (default)  [2026-11-26 17:00:00.123] [info] [node-a] message key=value ...
//                   local time; values with spaces or quotes are quoted
//   json            {"ts":"2026-11-26T16:00:00.123Z","level":"info","node":"node-a",
//                    "msg":"message","key":"value",...}
//                   one object per line; UTC; numbers as JSON numbers
//
// LogFields attaches key=value fields to every line the current thread writes while it lives
// (the per-request line carries model, route, status, duration and trace id this way): the text
// format appends them to the message, the json format makes them keys of the object.
//
// Thread safety: SetupLogging() is called once, before other threads log. A LogFields belongs to
// the thread that made it.
#pragma once

#include <spdlog/formatter.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace hivemesh::telemetry {

enum class LogFormat { kText, kJson };

// "text" or "json".
absl::StatusOr<LogFormat> ParseLogFormat(std::string_view name);

// Configures the default logger: `level` is trace, debug, info, warn, error or off.
absl::Status SetupLogging(const std::string& node_name, const std::string& level, LogFormat format);

// The formatter SetupLogging installs (for tests, and loggers of one's own).
std::unique_ptr<spdlog::formatter> MakeLogFormatter(const std::string& node_name, LogFormat format);

class LogFields {
 public:
  LogFields();
  ~LogFields();
  LogFields(const LogFields&) = delete;
  LogFields& operator=(const LogFields&) = delete;

  // `key` is a literal (kept as a view), not one of ts, level, node, msg.
  LogFields& Add(std::string_view key, std::string_view value);
  LogFields& Add(std::string_view key, int64_t value);
  LogFields& Add(std::string_view key, double value);  // written with 3 decimals

  struct Field {
    std::string_view key;
    std::string value;
    bool number = false;
  };
  // The fields in force on this thread, outermost first.
  static void ForEach(const std::function<void(const Field&)>& fn);

 private:
  std::vector<Field> fields_;
  LogFields* outer_;
};

}  // namespace hivemesh::telemetry
