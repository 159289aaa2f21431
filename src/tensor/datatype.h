// Tensor datatypes of the KServe v2 protocol, their wire names and element sizes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace hivemesh {

// Only append: the numeric values may be stored or sent.
enum class DataType : uint8_t {
  kBool = 0,
  kUint8,
  kUint16,
  kUint32,
  kUint64,
  kInt8,
  kInt16,
  kInt32,
  kInt64,
  kFp16,
  kBf16,
  kFp32,
  kFp64,
  kBytes,
};

inline constexpr int kNumDataTypes = 14;

// "FP32" -> kFp32. Names are case-sensitive as in the protocol.
std::optional<DataType> DataTypeFromName(std::string_view name);
std::string_view DataTypeName(DataType type);
// Bytes per element; 0 for BYTES, whose elements are variable-length.
size_t ElementSize(DataType type);

// IEEE half and bfloat16 conversions (round to nearest even).
float HalfToFloat(uint16_t h);
uint16_t FloatToHalf(float f);
float Bf16ToFloat(uint16_t b);
uint16_t FloatToBf16(float f);

}  // namespace hivemesh
