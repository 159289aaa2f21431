// JsonWriter: appends JSON text to a string. No DOM, no allocation beyond the output string.
// The caller is responsible for structure (commas are inserted automatically inside arrays and
// objects).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/json_string.h"  // AppendJsonString

namespace hivemesh {

// The most characters FloatText writes: "-1.00000075e-36", or "\"-Infinity\"".
inline constexpr size_t kMaxFloatTextChars = 16;

// Writes `v` at `out` as JsonWriter::Float does (the shortest text that reads back as `v`; NaN
// and infinities as the strings "NaN", "Infinity", "-Infinity") and returns the end of the text.
// `out` has room for kMaxFloatTextChars.
char* FloatText(char* out, float v);

class JsonWriter {
 public:
  explicit JsonWriter(std::string& out) : out_(out) {}

  JsonWriter& BeginObject();
  JsonWriter& EndObject();
  JsonWriter& BeginArray();
  JsonWriter& EndArray();
  JsonWriter& Key(std::string_view key);
  JsonWriter& String(std::string_view s);
  JsonWriter& Int(int64_t v);
  JsonWriter& Uint(uint64_t v);
  JsonWriter& Double(double v);  // shortest round-trip form; NaN/Inf as "NaN"/"Infinity"
  JsonWriter& Float(float v);    // likewise, at float precision
  JsonWriter& Bool(bool v);
  // Appends already-encoded JSON as one value.
  JsonWriter& Raw(std::string_view json);

 private:
  void Separate();
  void Push();  // a container opens: no value written in it yet
  void Pop();
  std::string& out_;
  // Per open container, innermost last: no value written yet. The first 64 levels are bits of
  // `first_bits_` (no allocation); deeper ones go to `first_deep_`.
  uint64_t first_bits_ = 0;
  int depth_ = 0;
  std::vector<bool> first_deep_;
  bool after_key_ = false;
};

}  // namespace hivemesh
