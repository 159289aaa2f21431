#include "codec/model_name.h"

#include <charconv>

#include "base/strings.h"

namespace hivemesh {
namespace {

constexpr bool IsAlnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

}  // namespace

bool IsValidModelName(std::string_view name) {
  if (name.empty() || name.size() > kMaxModelNameLength) return false;
  if (!IsAlnum(name[0]) && name[0] != '_') return false;
  for (char c : name) {
    if (!IsAlnum(c) && c != '.' && c != '_' && c != '-') return false;
  }
  return true;
}

absl::Status CheckModelName(std::string_view name) {
  if (IsValidModelName(name)) return absl::OkStatus();
  return absl::InvalidArgumentError(
      StrCat("model name '", PrintableName(name), "' is not valid: ", kModelNameRule));
}

bool ParseVersion(std::string_view s, int64_t* out) {
  if (s.empty() || s[0] < '1' || s[0] > '9') return false;
  int64_t v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || ptr != s.data() + s.size() || v <= 0) return false;
  *out = v;
  return true;
}

bool IsValidVersionName(std::string_view s) {
  int64_t v;
  return ParseVersion(s, &v);
}

absl::Status CheckVersionName(std::string_view version) {
  if (IsValidVersionName(version)) return absl::OkStatus();
  return absl::InvalidArgumentError(
      StrCat("model version '", PrintableName(version), "' is not valid: ", kVersionNameRule));
}

std::string PrintableName(std::string_view s) {
  constexpr size_t kShown = 40;
  std::string out;
  const std::string_view shown = s.substr(0, kShown);
  for (unsigned char c : shown) {
    if (c >= 0x20 && c < 0x7f && c != '\'' && c != '\\') {
      out.push_back(static_cast<char>(c));
    } else {
      constexpr char kHex[] = "0123456789abcdef";
      out.append("\\x");
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  if (s.size() > kShown) StrAppend(&out, "... (", s.size(), " bytes)");
  return out;
}

}  // namespace hivemesh
