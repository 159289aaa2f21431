#include "codec/json_writer.h"

#include <array>
#include <charconv>
#include <cmath>
#include <cstring>

namespace hivemesh {
namespace {

// Length of the valid UTF-8 sequence starting at s[i], or 0 if it is not valid.
size_t Utf8SequenceLength(std::string_view s, size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  size_t n;
  uint32_t cp;
  if (c < 0x80) return 1;
  if ((c & 0xe0) == 0xc0) {
    n = 2;
    cp = c & 0x1f;
  } else if ((c & 0xf0) == 0xe0) {
    n = 3;
    cp = c & 0x0f;
  } else if ((c & 0xf8) == 0xf0) {
    n = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    const auto cc = static_cast<unsigned char>(s[i + k]);
    if ((cc & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (cc & 0x3f);
  }
  static constexpr uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMin[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return n;
}

void AppendUnicodeEscape(std::string& out, unsigned char c) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += "\\u00";
  out += kHex[c >> 4];
  out += kHex[c & 0xf];
}

// True for the bytes a JSON string holds as they are: printable ASCII other than '"' and '\\'.
constexpr std::array<bool, 256> MakePlainTable() {
  std::array<bool, 256> t{};
  for (int c = 0x20; c < 0x80; ++c) t[static_cast<size_t>(c)] = c != '"' && c != '\\';
  return t;
}
constexpr std::array<bool, 256> kPlain = MakePlainTable();

}  // namespace

void AppendJsonString(std::string& out, std::string_view s) {
  // The usual case (names, keys, datatypes): nothing to escape, so one copy.
  const auto* bytes = reinterpret_cast<const unsigned char*>(s.data());
  size_t plain = 0;
  while (plain < s.size() && kPlain[bytes[plain]]) ++plain;
  if (plain == s.size()) {
    const size_t at = out.size();
    out.resize(at + plain + 2);
    char* d = out.data() + at;
    d[0] = '"';
    std::memcpy(d + 1, s.data(), plain);
    d[plain + 1] = '"';
    return;
  }
  out += '"';
  out.append(s.data(), plain);
  size_t i = plain;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
      // Copy the run of plain ASCII at once.
      size_t j = i + 1;
      while (j < s.size()) {
        const auto d = static_cast<unsigned char>(s[j]);
        if (d < 0x20 || d == '"' || d == '\\' || d >= 0x80) break;
        ++j;
      }
      out.append(s.data() + i, j - i);
      i = j;
      continue;
    }
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          AppendUnicodeEscape(out, c);
        } else {
          const size_t n = Utf8SequenceLength(s, i);
          if (n == 0) {
            AppendUnicodeEscape(out, c);
          } else {
            out.append(s.data() + i, n);
            i += n;
            continue;
          }
        }
    }
    ++i;
  }
  out += '"';
}

void JsonWriter::Separate() {
  if (after_key_) {
    after_key_ = false;
    return;
  }
  if (depth_ == 0) return;
  if (depth_ <= 64) {
    const uint64_t bit = uint64_t{1} << (depth_ - 1);
    if ((first_bits_ & bit) == 0) out_ += ',';
    first_bits_ &= ~bit;
    return;
  }
  if (!first_deep_.back()) out_ += ',';
  first_deep_.back() = false;
}

void JsonWriter::Push() {
  if (depth_ < 64) {
    first_bits_ |= uint64_t{1} << depth_;
  } else {
    first_deep_.push_back(true);
  }
  ++depth_;
}

void JsonWriter::Pop() {
  --depth_;
  if (depth_ >= 64) first_deep_.pop_back();
}

JsonWriter& JsonWriter::BeginObject() {
  Separate();
  out_ += '{';
  Push();
  return *this;
}

JsonWriter& JsonWriter::EndObject() {
  out_ += '}';
  Pop();
  return *this;
}

JsonWriter& JsonWriter::BeginArray() {
  Separate();
  out_ += '[';
  Push();
  return *this;
}

JsonWriter& JsonWriter::EndArray() {
  out_ += ']';
  Pop();
  return *this;
}

JsonWriter& JsonWriter::Key(std::string_view key) {
  Separate();
  AppendJsonString(out_, key);
  out_ += ':';
  after_key_ = true;
  return *this;
}

JsonWriter& JsonWriter::String(std::string_view s) {
  Separate();
  AppendJsonString(out_, s);
  return *this;
}

JsonWriter& JsonWriter::Int(int64_t v) {
  Separate();
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out_.append(buf, r.ptr);
  return *this;
}

JsonWriter& JsonWriter::Uint(uint64_t v) {
  Separate();
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out_.append(buf, r.ptr);
  return *this;
}

JsonWriter& JsonWriter::Double(double v) {
  Separate();
  if (!std::isfinite(v)) {
    out_ += std::isnan(v) ? "\"NaN\"" : (v > 0 ? "\"Infinity\"" : "\"-Infinity\"");
    return *this;
  }
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out_.append(buf, r.ptr);
  return *this;
}

char* FloatText(char* out, float v) {
  if (std::isfinite(v)) return std::to_chars(out, out + kMaxFloatTextChars, v).ptr;
  const std::string_view text =
      std::isnan(v) ? "\"NaN\"" : (v > 0 ? "\"Infinity\"" : "\"-Infinity\"");
  std::memcpy(out, text.data(), text.size());
  return out + text.size();
}

JsonWriter& JsonWriter::Float(float v) {
  Separate();
  char buf[kMaxFloatTextChars];
  out_.append(buf, FloatText(buf, v));
  return *this;
}

JsonWriter& JsonWriter::Bool(bool v) {
  Separate();
  out_ += v ? "true" : "false";
  return *this;
}

JsonWriter& JsonWriter::Raw(std::string_view json) {
  Separate();
  out_.append(json);
  return *this;
}

}  // namespace hivemesh
