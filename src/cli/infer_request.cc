#include "cli/infer_request.h"

#include <simdjson.h>

#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>

#include "base/strings.h"
#include "codec/json_writer.h"
#include "tensor/tensor.h"

namespace hivemesh::cli {
namespace {

using simdjson::dom::element;
using simdjson::dom::element_type;

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\n')) {
    s.remove_prefix(1);
  }
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\t' || s.back() == '\n' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

std::string DoubleText(double v) {
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

// Appends the values of a JSON array to `out`, recording its shape at `depth` (every array at a
// depth must have the same length).
absl::Status Flatten(element e, size_t depth, DataValues& out) {
  simdjson::dom::array list;
  if (e.get(list) != simdjson::SUCCESS) {
    if (depth < out.shape.size()) {
      return absl::InvalidArgumentError("--data: the nested arrays are not all of the same depth");
    }
    switch (e.type()) {
      case element_type::INT64:
        out.tokens.push_back(std::to_string(int64_t(e)));
        return absl::OkStatus();
      case element_type::UINT64:
        out.tokens.push_back(std::to_string(uint64_t(e)));
        return absl::OkStatus();
      case element_type::DOUBLE:
        out.tokens.push_back(DoubleText(double(e)));
        return absl::OkStatus();
      case element_type::BOOL:
        out.tokens.push_back(bool(e) ? "true" : "false");
        return absl::OkStatus();
      default:
        return absl::InvalidArgumentError(
            "--data: values must be numbers or booleans (for text or images use --json or "
            "--image)");
    }
  }
  const int64_t n = static_cast<int64_t>(list.size());
  if (depth == out.shape.size()) {
    if (!out.tokens.empty()) {
      return absl::InvalidArgumentError("--data: the nested arrays are not all of the same depth");
    }
    out.shape.resize(out.shape.size() + 1, n);  // (push_back trips GCC 12 -O3 -Warray-bounds)
  } else if (out.shape[depth] != n) {
    return absl::InvalidArgumentError(
        StrCat("--data: the nested arrays are not rectangular (lengths ", out.shape[depth], " and ",
               n, " at depth ", depth + 1, ")"));
  }
  for (element child : list) {
    absl::Status s = Flatten(child, depth + 1, out);
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

template <typename T>
bool ParseNumber(std::string_view s, T& v) {
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

// Writes one value of `datatype` (a wire name) as JSON, or says why it does not fit.
absl::Status WriteValue(JsonWriter& w, const std::string& datatype, std::string_view token,
                        const std::string& input, size_t index) {
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(StrCat("--data: value ", index + 1, " ('", token,
                                             "') for input '", input, "' (", datatype, ") ", why));
  };
  if (datatype == "BOOL") {
    if (token == "true" || token == "1") {
      w.Bool(true);
    } else if (token == "false" || token == "0") {
      w.Bool(false);
    } else {
      return bad("is not true, false, 1 or 0");
    }
    return absl::OkStatus();
  }
  struct IntRange {
    const char* name;
    bool is_signed;
    int bits;
  };
  static constexpr IntRange kInts[] = {
      {"INT8", true, 8},   {"INT16", true, 16},   {"INT32", true, 32},   {"INT64", true, 64},
      {"UINT8", false, 8}, {"UINT16", false, 16}, {"UINT32", false, 32}, {"UINT64", false, 64}};
  for (const IntRange& r : kInts) {
    if (datatype != r.name) continue;
    if (r.is_signed) {
      int64_t v;
      if (!ParseNumber(token, v)) return bad("is not an integer in range");
      const int64_t max =
          r.bits == 64 ? std::numeric_limits<int64_t>::max() : (int64_t{1} << (r.bits - 1)) - 1;
      if (v > max || v < -max - 1) return bad("is out of range");
      w.Int(v);
    } else {
      uint64_t v;
      if (!ParseNumber(token, v)) return bad("is not a non-negative integer in range");
      if (r.bits < 64 && v > (uint64_t{1} << r.bits) - 1) return bad("is out of range");
      w.Uint(v);
    }
    return absl::OkStatus();
  }
  if (datatype == "FP16" || datatype == "BF16" || datatype == "FP32" || datatype == "FP64") {
    double v;
    if (!ParseNumber(token, v) || !std::isfinite(v)) return bad("is not a finite number");
    if (datatype == "FP32" && std::abs(v) > std::numeric_limits<float>::max()) {
      return bad("is out of range");
    }
    if (datatype == "FP16" && std::abs(v) > 65504.0) return bad("is out of range");
    w.Double(v);
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      StrCat("--data cannot fill input '", input, "' of datatype ", datatype, ": use --json"));
}

absl::StatusOr<const TensorMetadata*> PickInput(const ModelMetadata& model, std::string_view name,
                                                bool bytes, std::string_view flag) {
  if (!name.empty()) {
    for (const TensorMetadata& t : model.inputs) {
      if (t.name != name) continue;
      if ((t.datatype == "BYTES") != bytes) {
        return absl::InvalidArgumentError(StrCat("input '", name, "' of model '", model.name,
                                                 "' is ", t.datatype, ": ", flag, " fills ",
                                                 bytes ? "a BYTES input" : "a numeric input"));
      }
      return &t;
    }
    std::string names;
    for (const TensorMetadata& t : model.inputs)
      StrAppend(&names, names.empty() ? "" : ", ", t.name);
    return absl::InvalidArgumentError(
        StrCat("model '", model.name, "' has no input '", name, "' (its inputs: ", names, ")"));
  }
  std::vector<const TensorMetadata*> fit;
  for (const TensorMetadata& t : model.inputs) {
    if ((t.datatype == "BYTES") == bytes) fit.push_back(&t);
  }
  if (fit.size() == 1) return fit[0];
  const std::string_view kind = bytes ? "BYTES" : "non-BYTES";
  if (fit.empty()) {
    return absl::InvalidArgumentError(StrCat("model '", model.name, "' has no ", kind, " input: ",
                                             flag, " cannot be used with it (try --json)"));
  }
  std::string names;
  for (const TensorMetadata* t : fit) StrAppend(&names, names.empty() ? "" : ", ", t->name);
  return absl::InvalidArgumentError(StrCat("model '", model.name, "' has several ", kind,
                                           " inputs (", names,
                                           "): choose one with --input, or use --json"));
}

}  // namespace

absl::StatusOr<DataValues> ParseDataValues(std::string_view text) {
  text = Trim(text);
  DataValues out;
  if (text.empty()) return absl::InvalidArgumentError("--data: no values given");
  if (text.front() == '[') {
    simdjson::dom::parser parser;
    element doc;
    if (parser.parse(text.data(), text.size()).get(doc) != simdjson::SUCCESS) {
      return absl::InvalidArgumentError("--data: not a valid JSON array");
    }
    absl::Status s = Flatten(doc, 0, out);
    if (!s.ok()) return s;
    if (out.tokens.empty()) return absl::InvalidArgumentError("--data: no values given");
    return out;
  }
  size_t index = 0;
  for (std::string_view piece : Split(text, ',')) {
    piece = Trim(piece);
    if (piece.empty()) {
      return absl::InvalidArgumentError(StrCat("--data: value ", index + 1, " is empty"));
    }
    out.tokens.emplace_back(piece);
    ++index;
  }
  out.shape = {static_cast<int64_t>(out.tokens.size())};
  return out;
}

absl::StatusOr<std::vector<int64_t>> ResolveShape(const TensorMetadata& input,
                                                  const DataValues& values) {
  const std::vector<int64_t>& declared = input.shape;
  const int64_t count = static_cast<int64_t>(values.tokens.size());
  const std::string where =
      StrCat("--data: input '", input.name, "' has shape ", ShapeString(declared));
  if (values.shape.size() > 1) {
    // Nested: the nesting is the shape.
    if (values.shape.size() != declared.size()) {
      return absl::InvalidArgumentError(
          StrCat(where, "; the data is nested as ", ShapeString(values.shape)));
    }
    for (size_t i = 0; i < declared.size(); ++i) {
      if (declared[i] >= 0 && declared[i] != values.shape[i]) {
        return absl::InvalidArgumentError(
            StrCat(where, "; the data is nested as ", ShapeString(values.shape)));
      }
    }
    return values.shape;
  }
  int variable = 0;
  int64_t fixed = 1;
  for (int64_t d : declared) {
    if (d < 0) {
      ++variable;
    } else {
      fixed *= d;
    }
  }
  if (variable > 1) {
    return absl::InvalidArgumentError(
        StrCat(where, " with ", variable,
               " variable dimensions: give the values as a nested JSON array of that shape"));
  }
  if (variable == 0) {
    if (fixed != count) {
      return absl::InvalidArgumentError(
          StrCat(where, " (", fixed, " values); got ", count, " value", count == 1 ? "" : "s"));
    }
    return declared;
  }
  if (fixed == 0 || count % fixed != 0) {
    return absl::InvalidArgumentError(
        StrCat(where, ": the number of values (", count, ") must be a multiple of ", fixed));
  }
  std::vector<int64_t> shape = declared;
  for (int64_t& d : shape) {
    if (d < 0) d = count / fixed;
  }
  return shape;
}

absl::StatusOr<const TensorMetadata*> DataInput(const ModelMetadata& model, std::string_view name) {
  return PickInput(model, name, /*bytes=*/false, "--data");
}

absl::StatusOr<const TensorMetadata*> ImageInput(const ModelMetadata& model,
                                                 std::string_view name) {
  return PickInput(model, name, /*bytes=*/true, "--image");
}

absl::StatusOr<std::string> BuildDataRequest(const ModelMetadata& model, std::string_view data,
                                             std::string_view input_name) {
  absl::StatusOr<const TensorMetadata*> input = DataInput(model, input_name);
  if (!input.ok()) return input.status();
  absl::StatusOr<DataValues> values = ParseDataValues(data);
  if (!values.ok()) return values.status();
  absl::StatusOr<std::vector<int64_t>> shape = ResolveShape(**input, *values);
  if (!shape.ok()) return shape.status();
  std::string out;
  JsonWriter w(out);
  w.BeginObject().Key("inputs").BeginArray().BeginObject();
  w.Key("name").String((*input)->name);
  w.Key("shape").BeginArray();
  for (int64_t d : *shape) w.Int(d);
  w.EndArray();
  w.Key("datatype").String((*input)->datatype);
  w.Key("data").BeginArray();
  for (size_t i = 0; i < values->tokens.size(); ++i) {
    absl::Status s = WriteValue(w, (*input)->datatype, values->tokens[i], (*input)->name, i);
    if (!s.ok()) return s;
  }
  w.EndArray().EndObject().EndArray().EndObject();
  return out;
}

absl::StatusOr<BinaryRequestBody> BuildImageRequest(const ModelMetadata& model,
                                                    std::string_view image,
                                                    std::string_view input_name) {
  absl::StatusOr<const TensorMetadata*> input = ImageInput(model, input_name);
  if (!input.ok()) return input.status();
  std::vector<int64_t> shape = (*input)->shape;
  int64_t count = 1;
  for (int64_t& d : shape) {
    if (d < 0) d = 1;
    count *= d;
  }
  if (count != 1) {
    return absl::InvalidArgumentError(
        StrCat("--image: input '", (*input)->name, "' takes ", count, " elements, not one image"));
  }
  if (image.size() > std::numeric_limits<uint32_t>::max()) {
    return absl::InvalidArgumentError("--image: the file is larger than 4 GiB");
  }
  BinaryRequestBody out;
  JsonWriter w(out.body);
  w.BeginObject().Key("inputs").BeginArray().BeginObject();
  w.Key("name").String((*input)->name);
  w.Key("shape").BeginArray();
  for (int64_t d : shape) w.Int(d);
  w.EndArray();
  w.Key("datatype").String("BYTES");
  w.Key("parameters").BeginObject().Key("binary_data_size").Uint(4 + image.size()).EndObject();
  w.EndObject().EndArray().EndObject();
  out.header_length = out.body.size();
  const uint32_t length = static_cast<uint32_t>(image.size());
  char prefix[4];
  std::memcpy(prefix, &length, 4);  // little-endian (asserted in tensor/tensor.h)
  out.body.append(prefix, 4);
  out.body.append(image);
  return out;
}

bool IsJpegOrPng(std::string_view bytes) {
  return bytes.starts_with("\xFF\xD8\xFF") || bytes.starts_with("\x89PNG\r\n\x1A\n");
}

}  // namespace hivemesh::cli
