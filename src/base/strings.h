// String helpers that accept std::string_view. (Debian's Abseil keeps its own absl::string_view
// type, so absl::StrCat does not take std::string_view; these do, and absl::string_view too.)
#pragma once

#include <charconv>
#include <concepts>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace hivemesh {
namespace strings_internal {

inline void Append(std::string& out, std::string_view v) { out.append(v); }
inline void Append(std::string& out, const char* v) { out.append(v); }
inline void Append(std::string& out, const std::string& v) { out.append(v); }
inline void Append(std::string& out, char c) { out.push_back(c); }
#ifndef ABSL_USES_STD_STRING_VIEW
inline void Append(std::string& out, absl::string_view v) { out.append(v.data(), v.size()); }
#endif
template <std::integral T>
requires(!std::same_as<T, char> && !std::same_as<T, bool>) void Append(std::string& out, T v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}
inline void Append(std::string& out, double v) {
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

}  // namespace strings_internal

template <typename... Args>
std::string StrCat(const Args&... args) {
  std::string out;
  (strings_internal::Append(out, args), ...);
  return out;
}

template <typename... Args>
void StrAppend(std::string* out, const Args&... args) {
  (strings_internal::Append(*out, args), ...);
}

// Splits on `sep`, keeping empty pieces ("a//b" -> "a", "", "b").
std::vector<std::string_view> Split(std::string_view s, char sep);

// `s` as a decimal integer: digits only, the whole string, within 64 bits; nothing otherwise.
std::optional<uint64_t> ParseUint(std::string_view s);

// True if `a` equals `lower` (given in lower case) but for the case of ASCII letters: an HTTP
// field name against a known one.
inline bool EqualsLowerCase(std::string_view a, std::string_view lower) {
  if (a.size() != lower.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char c = a[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != lower[i]) return false;
  }
  return true;
}

// A status's message as a std::string_view.
inline std::string_view MessageOf(const absl::Status& s) {
  return std::string_view(s.message().data(), s.message().size());
}

}  // namespace hivemesh
