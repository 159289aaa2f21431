#include "telemetry/trace.h"

#include <random>
#include <thread>

namespace hivemesh::telemetry {
namespace {

bool IsLowerHex(std::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

bool AllZero(std::string_view s) { return s.find_first_not_of('0') == std::string_view::npos; }

}  // namespace

std::string TraceIdFromTraceparent(std::string_view v) {
  // 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01
  constexpr size_t kLength = 55;
  if (v.size() < kLength || v[2] != '-' || v[35] != '-' || v[52] != '-') return "";
  const std::string_view version = v.substr(0, 2), trace = v.substr(3, 32),
                         parent = v.substr(36, 16), flags = v.substr(53, 2);
  if (!IsLowerHex(version) || version == "ff") return "";
  // Version 00 has exactly these fields; later versions may append "-..." after them.
  if (version == "00" ? v.size() != kLength : (v.size() > kLength && v[kLength] != '-')) return "";
  if (!IsLowerHex(trace) || AllZero(trace) || !IsLowerHex(parent) || AllZero(parent) ||
      !IsLowerHex(flags)) {
    return "";
  }
  return std::string(trace);
}

bool IsAcceptableTraceId(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  for (char c : id) {
    if (c < 0x21 || c > 0x7e || c == '"' || c == '\\') return false;
  }
  return true;
}

std::string NewTraceId() {
  thread_local std::mt19937_64 rng = [] {
    std::random_device rd;
    std::seed_seq seq{
        rd(), rd(), rd(), rd(),
        static_cast<unsigned>(std::hash<std::thread::id>{}(std::this_thread::get_id()))};
    return std::mt19937_64(seq);
  }();
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id(32, '0');
  uint64_t hi = rng(), lo = rng();
  if (hi == 0 && lo == 0) lo = 1;
  for (int i = 15; i >= 0; --i, hi >>= 4) id[static_cast<size_t>(i)] = kHex[hi & 0xf];
  for (int i = 31; i >= 16; --i, lo >>= 4) id[static_cast<size_t>(i)] = kHex[lo & 0xf];
  return id;
}

std::string TraceIdFor(std::string_view traceparent, std::string_view trace_header) {
  if (!traceparent.empty()) {
    std::string id = TraceIdFromTraceparent(traceparent);
    if (!id.empty()) return id;
  }
  if (IsAcceptableTraceId(trace_header)) return std::string(trace_header);
  return NewTraceId();
}

}  // namespace hivemesh::telemetry
