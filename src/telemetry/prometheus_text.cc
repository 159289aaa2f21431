#include "telemetry/prometheus_text.h"

#include <charconv>
#include <cmath>
#include <cstdint>

namespace hivemesh::telemetry {
namespace {

bool IsAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

}  // namespace

bool IsValidMetricName(std::string_view name) {
  if (name.empty() || !(IsAlpha(name[0]) || name[0] == ':')) return false;
  for (char c : name) {
    if (!IsAlpha(c) && !IsDigit(c) && c != ':') return false;
  }
  return true;
}

bool IsValidLabelName(std::string_view name) {
  if (name.empty() || !IsAlpha(name[0]) || name.starts_with("__")) return false;
  for (char c : name) {
    if (!IsAlpha(c) && !IsDigit(c)) return false;
  }
  return true;
}

namespace {

// Backslash and newline are escaped in HELP text and label values; double quotes only in label
// values, where they would end the value.
void AppendEscaped(std::string& out, std::string_view text, bool quotes) {
  for (char c : text) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '"' && quotes) {
      out += "\\\"";
    } else {
      out += c;
    }
  }
}

}  // namespace

void AppendEscapedLabelValue(std::string& out, std::string_view value) {
  AppendEscaped(out, value, true);
}

void AppendEscapedHelp(std::string& out, std::string_view help) { AppendEscaped(out, help, false); }

void AppendValue(std::string& out, double value) {
  if (std::isnan(value)) {
    out += "NaN";
    return;
  }
  if (std::isinf(value)) {
    out += value > 0 ? "+Inf" : "-Inf";
    return;
  }
  if (value == std::trunc(value) && std::fabs(value) < 9007199254740992.0) {  // 2^53
    // Whole numbers (counts, bytes) in full, as people read them: "12345678", not "1.2345678e+07".
    char buf[24];
    const std::to_chars_result r =
        std::to_chars(buf, buf + sizeof buf, static_cast<int64_t>(value));
    out.append(buf, r.ptr);
    return;
  }
  char buf[32];
  // Otherwise the shortest form that reads back as the same double, %g-style as Go's clients write
  // it (bucket bounds are label values, so "0.0001" should look the same from every exporter):
  // exponents below -4 in exponent form ("1e-05").
  const std::to_chars_result r =
      std::to_chars(buf, buf + sizeof buf, value, std::chars_format::general);
  out.append(buf, r.ptr);
}

void AppendValue(std::string& out, uint64_t value) {
  char buf[24];
  const std::to_chars_result r = std::to_chars(buf, buf + sizeof buf, value);
  out.append(buf, r.ptr);
}

}  // namespace hivemesh::telemetry
