// Lower-case hexadecimal text for bytes, and back.
#pragma once

#include <charconv>
#include <optional>
#include <string>
#include <string_view>

namespace hivemesh {

inline std::string HexEncode(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 15]);
  }
  return out;
}

// The bytes `hex` spells (either case), or nullopt if it is not an even number of hex digits.
inline std::optional<std::string> HexDecode(std::string_view hex) {
  if (hex.size() % 2 != 0) return std::nullopt;
  std::string out(hex.size() / 2, '\0');
  for (size_t i = 0; i < out.size(); ++i) {
    unsigned v = 0;
    const char* begin = hex.data() + 2 * i;
    const auto [end, ec] = std::from_chars(begin, begin + 2, v, 16);
    if (ec != std::errc() || end != begin + 2) return std::nullopt;
    out[i] = static_cast<char>(v);
  }
  return out;
}

}  // namespace hivemesh
