// Pieces of the Prometheus text exposition format 0.0.4 (what `GET /metrics` serves): name
// checks, escaping and number formatting. Pure functions; the registry (telemetry/metrics.h)
// composes them.
//
//   # HELP <name> <help, with \ and newline escaped>
//   # TYPE <name> counter|gauge|histogram
//   <name>{<label>="<value, with \ " and newline escaped>",...} <value>
#pragma once

#include <string>
#include <string_view>

namespace hivemesh::telemetry {

// The content type of the format.
inline constexpr std::string_view kPrometheusContentType =
    "text/plain; version=0.0.4; charset=utf-8";

// [a-zA-Z_:][a-zA-Z0-9_:]*
bool IsValidMetricName(std::string_view name);
// [a-zA-Z_][a-zA-Z0-9_]*, not starting with "__" (reserved for Prometheus itself).
bool IsValidLabelName(std::string_view name);

// Appends `value` with `\` -> `\\`, `"` -> `\"` and newline -> `\n` (a label value).
void AppendEscapedLabelValue(std::string& out, std::string_view value);
// Appends `help` with `\` -> `\\` and newline -> `\n` (HELP text).
void AppendEscapedHelp(std::string& out, std::string_view help);
// Appends a sample value or bucket bound: whole numbers below 2^53 in full ("3", "12345678"),
// others in their shortest round-trip %g form ("0.25", "0.0001", "1e-05", "1e+20"), and "+Inf",
// "-Inf", "NaN".
void AppendValue(std::string& out, double value);
void AppendValue(std::string& out, uint64_t value);

}  // namespace hivemesh::telemetry
