#include "codec/json_writer.h"

#include <array>
#include <charconv>
#include <cmath>
#include <cstring>

namespace hivemesh {

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
