#include "tensor/tensor.h"

#include <cstring>

#include "base/strings.h"

namespace hivemesh {

std::string ShapeString(std::span<const int64_t> shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) out += ",";
    StrAppend(&out, shape[i]);
  }
  out += "]";
  return out;
}

absl::StatusOr<int64_t> ElementCount(std::span<const int64_t> shape) {
  if (shape.size() > kMaxRank) {
    return absl::InvalidArgumentError(StrCat("more than ", kMaxRank, " dimensions"));
  }
  int64_t count = 1;
  for (int64_t d : shape) {
    if (d < 0) {
      return absl::InvalidArgumentError(
          StrCat("shape ", ShapeString(shape), " has a negative dimension"));
    }
    if (d != 0 && count > kMaxElements / d) {
      return absl::InvalidArgumentError(
          StrCat("shape ", ShapeString(shape), " has more than 2^40 elements"));
    }
    count *= d;
  }
  return count;
}

absl::StatusOr<size_t> FixedByteSize(DataType type, std::span<const int64_t> shape) {
  absl::StatusOr<int64_t> count = ElementCount(shape);
  if (!count.ok()) return count.status();
  return static_cast<size_t>(*count) * ElementSize(type);
}

absl::Status ValidateBytesRaw(std::string_view raw, int64_t count) {
  size_t pos = 0;
  for (int64_t i = 0; i < count; ++i) {
    if (raw.size() - pos < 4) {
      return absl::InvalidArgumentError(StrCat("BYTES data ends before element ", i, " of ", count,
                                               " (no room for its 4-byte length)"));
    }
    uint32_t len;
    std::memcpy(&len, raw.data() + pos, 4);
    pos += 4;
    if (len > raw.size() - pos) {
      return absl::InvalidArgumentError(StrCat("BYTES element ", i, " has length ", len,
                                               ", which runs past the end of the data (",
                                               raw.size() - pos, " bytes left)"));
    }
    pos += len;
  }
  if (pos != raw.size()) {
    return absl::InvalidArgumentError(
        StrCat("BYTES data has ", raw.size() - pos, " bytes after its ", count, " elements"));
  }
  return absl::OkStatus();
}

void AppendBytesElement(std::string& out, std::string_view element) {
  const uint32_t len = static_cast<uint32_t>(element.size());
  char prefix[4];
  std::memcpy(prefix, &len, 4);
  out.append(prefix, 4);
  out.append(element);
}

Tensor Tensor::View(std::string name, DataType type, Shape shape, std::shared_ptr<const void> owner,
                    std::string_view data) {
  Tensor t;
  t.name_ = std::move(name);
  t.type_ = type;
  t.shape_ = std::move(shape);
  t.owner_ = std::move(owner);
  t.data_ = data;
  return t;
}

Tensor Tensor::Owned(std::string name, DataType type, Shape shape, std::string data) {
  auto storage = std::make_shared<const std::string>(std::move(data));
  std::string_view view = *storage;
  return View(std::move(name), type, std::move(shape), std::move(storage), view);
}

absl::Status ValidateTensorData(const Tensor& tensor) {
  absl::StatusOr<int64_t> count = ElementCount(tensor.shape());
  if (!count.ok()) {
    return absl::InvalidArgumentError(
        StrCat("tensor '", tensor.name(), "': ", count.status().message()));
  }
  if (tensor.type() == DataType::kBytes) {
    absl::Status s = ValidateBytesRaw(tensor.data(), *count);
    if (!s.ok()) {
      return absl::InvalidArgumentError(StrCat("tensor '", tensor.name(), "': ", s.message()));
    }
    return absl::OkStatus();
  }
  const size_t expected = static_cast<size_t>(*count) * ElementSize(tensor.type());
  if (tensor.data().size() != expected) {
    return absl::InvalidArgumentError(StrCat("tensor '", tensor.name(), "': shape ",
                                             ShapeString(tensor.shape()), " of ",
                                             DataTypeName(tensor.type()), " needs ", expected,
                                             " bytes but ", tensor.data().size(), " were given"));
  }
  return absl::OkStatus();
}

}  // namespace hivemesh
