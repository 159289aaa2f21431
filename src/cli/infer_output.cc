#include "cli/infer_output.h"

#include <charconv>
#include <cstring>
#include <memory>
#include <vector>

#include "base/strings.h"
#include "cli/table.h"
#include "codec/infer_codec.h"

namespace hivemesh::cli {
namespace {

template <typename T>
T Load(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof v);  // binary tensors need not be aligned
  return v;
}

template <typename F>
std::string FloatText(F v) {
  char buf[48];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

std::string QuoteBytes(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      StrAppend(&out, "\\", static_cast<char>(c));
    } else if (c >= 0x20 && c < 0x7f) {
      out.push_back(static_cast<char>(c));
    } else {
      static constexpr char kHex[] = "0123456789abcdef";
      StrAppend(&out, "\\x", kHex[c >> 4], kHex[c & 15]);
    }
  }
  return StrCat("\"", Abbreviate(out, 38), "\"");
}

// Every element of `t` as text.
std::vector<std::string> ElementTexts(const Tensor& t) {
  std::vector<std::string> out;
  const std::string_view raw = t.data();
  if (t.type() == DataType::kBytes) {
    ForEachBytesElement(raw, [&](std::string_view e) { out.push_back(QuoteBytes(e)); });
    return out;
  }
  const size_t size = ElementSize(t.type());
  for (size_t pos = 0; size > 0 && pos + size <= raw.size(); pos += size) {
    const char* p = raw.data() + pos;
    switch (t.type()) {
      case DataType::kBool:
        out.push_back(*p != 0 ? "true" : "false");
        break;
      case DataType::kUint8:
        out.push_back(std::to_string(Load<uint8_t>(p)));
        break;
      case DataType::kUint16:
        out.push_back(std::to_string(Load<uint16_t>(p)));
        break;
      case DataType::kUint32:
        out.push_back(std::to_string(Load<uint32_t>(p)));
        break;
      case DataType::kUint64:
        out.push_back(std::to_string(Load<uint64_t>(p)));
        break;
      case DataType::kInt8:
        out.push_back(std::to_string(Load<int8_t>(p)));
        break;
      case DataType::kInt16:
        out.push_back(std::to_string(Load<int16_t>(p)));
        break;
      case DataType::kInt32:
        out.push_back(std::to_string(Load<int32_t>(p)));
        break;
      case DataType::kInt64:
        out.push_back(std::to_string(Load<int64_t>(p)));
        break;
      case DataType::kFp16:
        out.push_back(FloatText(HalfToFloat(Load<uint16_t>(p))));
        break;
      case DataType::kBf16:
        out.push_back(FloatText(Bf16ToFloat(Load<uint16_t>(p))));
        break;
      case DataType::kFp32:
        out.push_back(FloatText(Load<float>(p)));
        break;
      case DataType::kFp64:
        out.push_back(FloatText(Load<double>(p)));
        break;
      case DataType::kBytes:
        break;
    }
  }
  return out;
}

}  // namespace

absl::StatusOr<InferResponse> ReadInferResponse(std::string body,
                                                std::optional<uint64_t> header_length) {
  absl::StatusOr<InferResponse> r =
      DecodeInferResponse(std::make_shared<const std::string>(std::move(body)), header_length);
  if (!r.ok()) {
    return absl::InternalError(
        StrCat("the node's response cannot be read: ", MessageOf(r.status())));
  }
  return r;
}

std::string FormatTensorValues(const Tensor& tensor, size_t max_items) {
  std::vector<std::string> items = ElementTexts(tensor);
  if (items.empty()) return "(none)";
  const Shape& shape = tensor.shape();
  const int64_t group = shape.size() >= 2 ? shape.back() : 0;
  if (group >= 2 && group <= 16 && items.size() % static_cast<size_t>(group) == 0) {
    std::vector<std::string> groups;
    for (size_t i = 0; i < items.size(); i += static_cast<size_t>(group)) {
      std::vector<std::string> one(items.begin() + static_cast<ptrdiff_t>(i),
                                   items.begin() + static_cast<ptrdiff_t>(i + group));
      groups.push_back(StrCat("[", JoinAbbreviated(one, one.size()), "]"));
    }
    return JoinAbbreviated(groups, std::max<size_t>(2, max_items / 2));
  }
  return JoinAbbreviated(items, std::max<size_t>(2, max_items));
}

std::string FormatInferResult(const InferResponse& response, std::string_view served_by,
                              std::chrono::microseconds latency) {
  std::vector<Row> rows = {{"OUTPUT", "DATATYPE", "SHAPE", "VALUES"}};
  for (const Tensor& t : response.outputs) {
    rows.push_back({t.name(), std::string(DataTypeName(t.type())), ShapeString(t.shape()),
                    FormatTensorValues(t)});
  }
  std::string out = FormatTable(rows);
  const std::string node = !served_by.empty()
                               ? std::string(served_by)
                               : (!response.served_by.empty() ? response.served_by : "(unknown)");
  StrAppend(&out, "\nserved by ", node, " in ", FormatMicros(static_cast<double>(latency.count())));
  if (!response.model_name.empty()) {
    StrAppend(&out, " (model ", response.model_name);
    if (!response.model_version.empty()) StrAppend(&out, ", version ", response.model_version);
    out += ")";
  }
  out += "\n";
  return out;
}

}  // namespace hivemesh::cli
