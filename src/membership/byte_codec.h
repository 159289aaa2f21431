// ByteWriter / ByteReader: the primitives of the membership wire formats (LEB128 varints,
// length-prefixed byte strings). The reader is bounds-checked: any input yields values or an
// error, never a read past the end.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "base/status_macros.h"
#include "base/strings.h"

namespace hivemesh::membership {

class ByteWriter {
 public:
  explicit ByteWriter(std::string& out) : out_(out) {}
  void U8(uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void Varint(uint64_t v) {
    while (v >= 0x80) {
      out_.push_back(static_cast<char>((v & 0x7f) | 0x80));
      v >>= 7;
    }
    out_.push_back(static_cast<char>(v));
  }
  void Bytes(std::string_view s) {
    Varint(s.size());
    out_.append(s);
  }

 private:
  std::string& out_;
};

class ByteReader {
 public:
  explicit ByteReader(std::string_view in) : in_(in) {}
  bool done() const { return pos_ == in_.size(); }
  size_t remaining() const { return in_.size() - pos_; }

  absl::Status U8(uint8_t* v) {
    if (pos_ >= in_.size()) return Truncated();
    *v = static_cast<uint8_t>(in_[pos_++]);
    return absl::OkStatus();
  }
  absl::Status Varint(uint64_t* v) {
    uint64_t result = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= in_.size()) return Truncated();
      const auto byte = static_cast<uint8_t>(in_[pos_++]);
      if (shift == 63 && byte > 1) return absl::InvalidArgumentError("varint overflows 64 bits");
      result |= static_cast<uint64_t>(byte & 0x7f) << shift;
      if ((byte & 0x80) == 0) {
        *v = result;
        return absl::OkStatus();
      }
    }
    return absl::InvalidArgumentError("varint longer than 10 bytes");
  }
  absl::Status U32(uint32_t* v) {
    uint64_t x = 0;
    HM_RETURN_IF_ERROR(Varint(&x));
    if (x > UINT32_MAX) return absl::InvalidArgumentError("value exceeds 32 bits");
    *v = static_cast<uint32_t>(x);
    return absl::OkStatus();
  }
  absl::Status Bytes(std::string* out, size_t max, const char* field) {
    uint64_t len = 0;
    HM_RETURN_IF_ERROR(Varint(&len));
    if (len > max) {
      return absl::InvalidArgumentError(StrCat(field, " of ", len, " bytes exceeds ", max));
    }
    if (len > remaining()) return Truncated();
    out->assign(in_.data() + pos_, len);
    pos_ += len;
    return absl::OkStatus();
  }
  std::string_view Take(size_t n) {
    std::string_view v = in_.substr(pos_, n);
    pos_ += n;
    return v;
  }

 private:
  static absl::Status Truncated() { return absl::InvalidArgumentError("truncated message"); }
  std::string_view in_;
  size_t pos_ = 0;
};

}  // namespace hivemesh::membership
