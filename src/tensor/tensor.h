// Tensors: a name, a datatype, a shape and a view of raw bytes kept alive by a shared owner.
//
// Raw layout is the KServe v2 binary layout: little-endian, row-major, no padding; BOOL is one
// byte; each BYTES element is a 4-byte little-endian length followed by its bytes. A tensor that
// arrived in a request body views the body itself (no copy); `owner` keeps the body alive.
//
// Thread safety: a Tensor is a value; its bytes are immutable once built, so copies may be read
// from any thread.
#pragma once

#include <bit>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tensor/datatype.h"

namespace hivemesh {

static_assert(std::endian::native == std::endian::little,
              "raw tensor layout assumes little-endian");

using Shape = std::vector<int64_t>;

// Largest element count accepted in one tensor (2^40): keeps byte sizes far from overflow.
inline constexpr int64_t kMaxElements = int64_t{1} << 40;
// Most dimensions a tensor may have; every front end and the mesh tensor form agree on it.
inline constexpr size_t kMaxRank = 32;

// "[2,3]".
std::string ShapeString(std::span<const int64_t> shape);

// Number of elements. Error if a dimension is negative, the product exceeds kMaxElements or
// there are more than kMaxRank dimensions.
absl::StatusOr<int64_t> ElementCount(std::span<const int64_t> shape);

// Raw byte size of a fixed-size tensor. REQUIRES: type != kBytes.
absl::StatusOr<size_t> FixedByteSize(DataType type, std::span<const int64_t> shape);

// Checks that `raw` holds exactly `count` length-prefixed BYTES elements.
absl::Status ValidateBytesRaw(std::string_view raw, int64_t count);

// Calls fn(std::string_view element) for each element of validated BYTES raw data.
template <typename Fn>
void ForEachBytesElement(std::string_view raw, Fn&& fn) {
  size_t pos = 0;
  while (pos + 4 <= raw.size()) {
    uint32_t len;
    __builtin_memcpy(&len, raw.data() + pos, 4);
    pos += 4;
    fn(raw.substr(pos, len));
    pos += len;
  }
}

// Appends one BYTES element (length prefix + bytes) to `out`.
void AppendBytesElement(std::string& out, std::string_view element);

class Tensor {
 public:
  Tensor() = default;

  // A tensor viewing `data`, which `owner` keeps alive. No copy.
  static Tensor View(std::string name, DataType type, Shape shape,
                     std::shared_ptr<const void> owner, std::string_view data);
  // A tensor that owns `data`.
  static Tensor Owned(std::string name, DataType type, Shape shape, std::string data);

  const std::string& name() const { return name_; }
  DataType type() const { return type_; }
  const Shape& shape() const { return shape_; }
  std::string_view data() const { return data_; }
  const std::shared_ptr<const void>& owner() const { return owner_; }

  void set_name(std::string name) { name_ = std::move(name); }

  // True if the data may be read as T in place. Tensors viewing a binary request body start
  // wherever the previous tensor ended, so they may not be.
  template <typename T>
  bool AlignedFor() const {
    return reinterpret_cast<uintptr_t>(data_.data()) % alignof(T) == 0;
  }

  // Typed view of fixed-size data.
  // REQUIRES: sizeof(T) == ElementSize(type()) and AlignedFor<T>().
  template <typename T>
  std::span<const T> As() const {
    return {reinterpret_cast<const T*>(data_.data()), data_.size() / sizeof(T)};
  }

 private:
  std::string name_;
  DataType type_ = DataType::kFp32;
  Shape shape_;
  std::shared_ptr<const void> owner_;
  std::string_view data_;
};

// Checks that `tensor`'s data size agrees with its shape and datatype (and, for BYTES, that every
// element lies within the data). Messages name the tensor.
absl::Status ValidateTensorData(const Tensor& tensor);

}  // namespace hivemesh
