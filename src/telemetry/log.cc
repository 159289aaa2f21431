#include "telemetry/log.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>

#include "base/json_string.h"
#include "base/strings.h"

namespace hivemesh::telemetry {
namespace {

thread_local LogFields* innermost = nullptr;

void Put(spdlog::memory_buf_t& out, std::string_view s) {
  out.append(s.data(), s.data() + s.size());
}

// Appends `s` as a JSON string (base/json_string.h), so every line is valid JSON whatever a
// message holds.
void AppendJsonString(spdlog::memory_buf_t& out, std::string_view s) {
  thread_local std::string scratch;
  scratch.clear();
  hivemesh::AppendJsonString(scratch, s);
  Put(out, scratch);
}

// A text field value: as it is, or quoted when it has spaces, quotes or nothing at all.
void AppendTextValue(spdlog::memory_buf_t& out, std::string_view v) {
  const bool quote = v.empty() || v.find_first_of(" \"=\t\n") != std::string_view::npos;
  if (!quote) return Put(out, v);
  out.push_back('"');
  for (char c : v) {
    if (c == '"' || c == '\\') out.push_back('\\');
    if (c == '\n') {
      Put(out, "\\n");
      continue;
    }
    out.push_back(c);
  }
  out.push_back('"');
}

// %* in the text pattern: the thread's LogFields as " key=value".
class TextFieldsFlag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg&, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    LogFields::ForEach([&](const LogFields::Field& f) {
      dest.push_back(' ');
      Put(dest, f.key);
      dest.push_back('=');
      AppendTextValue(dest, f.value);
    });
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<TextFieldsFlag>();
  }
};

class JsonFormatter final : public spdlog::formatter {
 public:
  explicit JsonFormatter(std::string node) : node_(std::move(node)) {}

  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    const auto since_epoch = msg.time.time_since_epoch();
    const std::time_t secs = static_cast<std::time_t>(
        std::chrono::duration_cast<std::chrono::seconds>(since_epoch).count());
    const int64_t millis =
        std::chrono::duration_cast<std::chrono::milliseconds>(since_epoch).count() % 1000;
    std::tm utc{};
    gmtime_r(&secs, &utc);
    char ts[40];
    const int n = std::snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                                utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday, utc.tm_hour,
                                utc.tm_min, utc.tm_sec, static_cast<int>(millis));
    Put(dest, "{\"ts\":\"");
    dest.append(ts, ts + n);
    Put(dest, "\",\"level\":\"");
    const spdlog::string_view_t level = spdlog::level::to_string_view(msg.level);
    dest.append(level.data(), level.data() + level.size());
    Put(dest, "\",\"node\":");
    AppendJsonString(dest, node_);
    Put(dest, ",\"msg\":");
    AppendJsonString(dest, std::string_view(msg.payload.data(), msg.payload.size()));
    LogFields::ForEach([&](const LogFields::Field& f) {
      dest.push_back(',');
      AppendJsonString(dest, f.key);
      dest.push_back(':');
      if (f.number) {
        Put(dest, f.value);
      } else {
        AppendJsonString(dest, f.value);
      }
    });
    Put(dest, "}\n");
  }

  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>(node_);
  }

 private:
  const std::string node_;
};

}  // namespace

absl::StatusOr<LogFormat> ParseLogFormat(std::string_view name) {
  if (name == "text") return LogFormat::kText;
  if (name == "json") return LogFormat::kJson;
  return absl::InvalidArgumentError(StrCat("log format '", name, "' is not one of text, json"));
}

std::unique_ptr<spdlog::formatter> MakeLogFormatter(const std::string& node_name,
                                                    LogFormat format) {
  if (format == LogFormat::kJson) return std::make_unique<JsonFormatter>(node_name);
  std::string node;  // '%' would start a pattern flag
  for (char c : node_name) {
    node += c;
    if (c == '%') node += '%';
  }
  auto f = std::make_unique<spdlog::pattern_formatter>();
  f->add_flag<TextFieldsFlag>('*');
  f->set_pattern(StrCat("[%Y-%m-%d %H:%M:%S.%e] [%^%l%$] [", node, "] %v%*"));
  return f;
}

absl::Status SetupLogging(const std::string& node_name, const std::string& level,
                          LogFormat format) {
  const spdlog::level::level_enum lvl = spdlog::level::from_str(level);
  if (lvl == spdlog::level::off && level != "off") {
    return absl::InvalidArgumentError("log level '" + level +
                                      "' is not one of trace, debug, info, warn, error, off");
  }
  spdlog::set_level(lvl);
  spdlog::set_formatter(MakeLogFormatter(node_name, format));
  return absl::OkStatus();
}

LogFields::LogFields() : outer_(innermost) { innermost = this; }

LogFields::~LogFields() { innermost = outer_; }

LogFields& LogFields::Add(std::string_view key, std::string_view value) {
  fields_.push_back(Field{key, std::string(value), false});
  return *this;
}

LogFields& LogFields::Add(std::string_view key, int64_t value) {
  fields_.push_back(Field{key, StrCat(value), true});
  return *this;
}

LogFields& LogFields::Add(std::string_view key, double value) {
  // JSON has no NaN or infinity: those are written as strings.
  fields_.push_back(Field{key, fmt::format("{:.3f}", value), std::isfinite(value)});
  return *this;
}

void LogFields::ForEach(const std::function<void(const Field&)>& fn) {
  // Outermost first: collect the chain, then walk it backwards.
  const LogFields* chain[16];
  int n = 0;
  for (const LogFields* f = innermost; f != nullptr && n < 16; f = f->outer_) chain[n++] = f;
  while (n > 0) {
    for (const Field& f : chain[--n]->fields_) fn(f);
  }
}

}  // namespace hivemesh::telemetry
