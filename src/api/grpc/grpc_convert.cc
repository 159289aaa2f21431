#include "api/grpc/grpc_convert.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "base/strings.h"
#include "base/timeouts.h"

namespace hivemesh::grpc_api {
namespace {

using inference::InferTensorContents;

absl::Status Invalid(const std::string& message) { return absl::InvalidArgumentError(message); }

// Number of elements set across every field of `c`, and the name of a non-empty field.
size_t TypedCount(const InferTensorContents& c, std::string_view* field) {
  size_t total = 0;
  auto add = [&](int n, std::string_view name) {
    if (n > 0 && field->empty()) *field = name;
    total += static_cast<size_t>(n);
  };
  add(c.bool_contents_size(), "bool_contents");
  add(c.int_contents_size(), "int_contents");
  add(c.int64_contents_size(), "int64_contents");
  add(c.uint_contents_size(), "uint_contents");
  add(c.uint64_contents_size(), "uint64_contents");
  add(c.fp32_contents_size(), "fp32_contents");
  add(c.fp64_contents_size(), "fp64_contents");
  add(c.bytes_contents_size(), "bytes_contents");
  return total;
}

// The typed field a datatype travels in; empty for FP16/BF16 (raw only).
std::string_view FieldFor(DataType type) {
  switch (type) {
    case DataType::kBool:
      return "bool_contents";
    case DataType::kUint8:
    case DataType::kUint16:
    case DataType::kUint32:
      return "uint_contents";
    case DataType::kUint64:
      return "uint64_contents";
    case DataType::kInt8:
    case DataType::kInt16:
    case DataType::kInt32:
      return "int_contents";
    case DataType::kInt64:
      return "int64_contents";
    case DataType::kFp32:
      return "fp32_contents";
    case DataType::kFp64:
      return "fp64_contents";
    case DataType::kBytes:
      return "bytes_contents";
    case DataType::kFp16:
    case DataType::kBf16:
      return "";
  }
  return "";
}

// Appends `values` to `out` as T, checking that each fits.
template <typename T, typename Repeated>
absl::Status AppendAs(const Repeated& values, std::string_view tensor, std::string& out) {
  for (const auto v : values) {
    using V = std::decay_t<decltype(v)>;
    if constexpr (!std::is_same_v<T, V> && !std::is_floating_point_v<T>) {
      if (v < static_cast<V>(std::numeric_limits<T>::min()) ||
          v > static_cast<V>(std::numeric_limits<T>::max())) {
        return Invalid(StrCat("input '", tensor, "': value ", v, " does not fit its datatype"));
      }
    }
    const T t = static_cast<T>(v);
    out.append(reinterpret_cast<const char*>(&t), sizeof t);
  }
  return absl::OkStatus();
}

// Appends the typed contents of one tensor, in raw layout, to `out`.
absl::Status AppendTyped(const InferTensorContents& c, DataType type, std::string_view tensor,
                         std::string& out) {
  switch (type) {
    case DataType::kBool:
      for (bool b : c.bool_contents()) out.push_back(b ? 1 : 0);
      return absl::OkStatus();
    case DataType::kUint8:
      return AppendAs<uint8_t>(c.uint_contents(), tensor, out);
    case DataType::kUint16:
      return AppendAs<uint16_t>(c.uint_contents(), tensor, out);
    case DataType::kUint32:
      return AppendAs<uint32_t>(c.uint_contents(), tensor, out);
    case DataType::kUint64:
      return AppendAs<uint64_t>(c.uint64_contents(), tensor, out);
    case DataType::kInt8:
      return AppendAs<int8_t>(c.int_contents(), tensor, out);
    case DataType::kInt16:
      return AppendAs<int16_t>(c.int_contents(), tensor, out);
    case DataType::kInt32:
      return AppendAs<int32_t>(c.int_contents(), tensor, out);
    case DataType::kInt64:
      return AppendAs<int64_t>(c.int64_contents(), tensor, out);
    case DataType::kFp32:
      return AppendAs<float>(c.fp32_contents(), tensor, out);
    case DataType::kFp64:
      return AppendAs<double>(c.fp64_contents(), tensor, out);
    case DataType::kBytes:
      for (const std::string& e : c.bytes_contents()) AppendBytesElement(out, e);
      return absl::OkStatus();
    case DataType::kFp16:
    case DataType::kBf16:
      break;
  }
  return Invalid(StrCat("input '", tensor, "': ", DataTypeName(type),
                        " has no typed contents; send it in raw_input_contents"));
}

template <typename T>
T Load(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// The memory one typed element of `type` takes in an answer: in its repeated field (as the
// field's type), then serialized (as a varint at its widest: negative int32s take 10 bytes).
uint64_t TypedElementBytes(DataType type) {
  switch (type) {
    case DataType::kBool:
      return 1 + 1;
    case DataType::kUint8:
      return 4 + 2;
    case DataType::kUint16:
      return 4 + 3;
    case DataType::kUint32:
      return 4 + 5;
    case DataType::kUint64:
    case DataType::kInt64:
      return 8 + 10;
    case DataType::kInt8:
    case DataType::kInt16:
    case DataType::kInt32:
      return 4 + 10;
    case DataType::kFp32:
      return 4 + 4;
    case DataType::kFp64:
      return 8 + 8;
    case DataType::kBytes:
    case DataType::kFp16:
    case DataType::kBf16:
      break;
  }
  return 0;
}

// Fills `c` with the elements of `t`. REQUIRES: FieldFor(t.type()) is not empty.
void FillTyped(const Tensor& t, InferTensorContents* c) {
  const std::string_view d = t.data();
  const size_t size = ElementSize(t.type());
  const size_t n = size == 0 ? 0 : d.size() / size;
  // Room for every element at once: the fields do not grow (and copy) as they fill.
  const int rows = static_cast<int>(std::min<size_t>(n, std::numeric_limits<int>::max()));
  switch (t.type()) {
    case DataType::kBool:
      c->mutable_bool_contents()->Reserve(rows);
      break;
    case DataType::kUint8:
    case DataType::kUint16:
    case DataType::kUint32:
      c->mutable_uint_contents()->Reserve(rows);
      break;
    case DataType::kUint64:
      c->mutable_uint64_contents()->Reserve(rows);
      break;
    case DataType::kInt8:
    case DataType::kInt16:
    case DataType::kInt32:
      c->mutable_int_contents()->Reserve(rows);
      break;
    case DataType::kInt64:
      c->mutable_int64_contents()->Reserve(rows);
      break;
    case DataType::kFp32:
      c->mutable_fp32_contents()->Reserve(rows);
      break;
    case DataType::kFp64:
      c->mutable_fp64_contents()->Reserve(rows);
      break;
    default:
      break;
  }
  for (size_t i = 0; i < n; ++i) {
    const char* p = d.data() + i * size;
    switch (t.type()) {
      case DataType::kBool:
        c->add_bool_contents(*p != 0);
        break;
      case DataType::kUint8:
        c->add_uint_contents(Load<uint8_t>(p));
        break;
      case DataType::kUint16:
        c->add_uint_contents(Load<uint16_t>(p));
        break;
      case DataType::kUint32:
        c->add_uint_contents(Load<uint32_t>(p));
        break;
      case DataType::kUint64:
        c->add_uint64_contents(Load<uint64_t>(p));
        break;
      case DataType::kInt8:
        c->add_int_contents(Load<int8_t>(p));
        break;
      case DataType::kInt16:
        c->add_int_contents(Load<int16_t>(p));
        break;
      case DataType::kInt32:
        c->add_int_contents(Load<int32_t>(p));
        break;
      case DataType::kInt64:
        c->add_int64_contents(Load<int64_t>(p));
        break;
      case DataType::kFp32:
        c->add_fp32_contents(Load<float>(p));
        break;
      case DataType::kFp64:
        c->add_fp64_contents(Load<double>(p));
        break;
      default:
        break;
    }
  }
  if (t.type() == DataType::kBytes) {
    ForEachBytesElement(d, [c](std::string_view e) { c->add_bytes_contents(std::string(e)); });
  }
}

}  // namespace

absl::StatusOr<DecodedRequest> FromProto(inference::ModelInferRequest& proto,
                                         MemoryBudget* budget) {
  DecodedRequest out;
  InferRequest& req = out.request;
  req.model_name = proto.model_name();
  req.model_version = proto.model_version();
  req.id = proto.id();
  if (req.model_name.empty()) return Invalid("model_name must be set");

  for (const auto& [key, value] : proto.parameters()) {
    if (key == "timeout") {
      constexpr std::string_view kField = "parameters.timeout";
      absl::StatusOr<std::chrono::milliseconds> t;
      if (value.parameter_choice_case() == inference::InferParameter::kInt64Param) {
        t = ClientTimeoutMs(static_cast<int64_t>(value.int64_param()), kField);
      } else if (value.parameter_choice_case() == inference::InferParameter::kUint64Param) {
        t = ClientTimeoutMs(static_cast<uint64_t>(value.uint64_param()), kField);
      } else {
        return Invalid(StrCat(kField, ": must be an int64_param or uint64_param (milliseconds)"));
      }
      if (!t.ok()) return t.status();
      out.timeout = *t;
    } else if (key == "binary_data_output") {
      if (value.parameter_choice_case() != inference::InferParameter::kBoolParam) {
        return Invalid("parameters.binary_data_output: must be a bool_param");
      }
      out.raw_outputs = value.bool_param();
    }
    // Other parameters are accepted and ignored, as in REST.
  }

  const int n = proto.inputs_size();
  const bool raw = proto.raw_input_contents_size() > 0;
  if (raw && proto.raw_input_contents_size() != n) {
    return Invalid(StrCat("raw_input_contents has ", proto.raw_input_contents_size(),
                          " entries for ", n, " inputs; it needs one per input, in order"));
  }
  if (raw) out.raw_outputs = true;

  // What the tensors view: raw contents taken from the message as they are, or typed contents
  // converted into one buffer (offsets first, views after: it must not grow once viewed). Its
  // memory, and what is left of the message (which lives as long as the call), is reserved
  // before the buffer is made: the raw bytes, or each typed element at its datatype's width.
  struct Held {
    std::vector<std::string> raw;
    std::string typed;
    MemoryBudget::Reservation memory;
  };
  auto held = std::make_shared<Held>();
  uint64_t typed_total = 0;
  for (const auto& in : proto.inputs()) {
    if (raw || !in.has_contents()) continue;
    const std::optional<DataType> type = DataTypeFromName(in.datatype());
    if (!type) continue;  // refused below
    const InferTensorContents& c = in.contents();
    if (*type == DataType::kBytes) {
      for (const std::string& e : c.bytes_contents()) typed_total += 4 + e.size();
    } else {
      std::string_view field;
      typed_total += TypedCount(c, &field) * ElementSize(*type);
    }
  }
  absl::StatusOr<MemoryBudget::Reservation> memory = ReserveFor(
      budget, typed_total + proto.ByteSizeLong(), "the request's tensors", "send smaller tensors");
  if (!memory.ok()) return memory.status();
  held->memory = *std::move(memory);
  out.reserved_bytes = typed_total + proto.ByteSizeLong();
  held->typed.reserve(typed_total);
  held->raw.resize(raw ? static_cast<size_t>(n) : 0);
  std::vector<std::pair<size_t, size_t>> spans;  // in `typed`
  std::vector<DataType> types;
  for (int i = 0; i < n; ++i) {
    const auto& in = proto.inputs(i);
    const std::string& name = in.name();
    if (name.empty()) return Invalid(StrCat("inputs[", i, "]: name must be set"));
    std::optional<DataType> type = DataTypeFromName(in.datatype());
    if (!type) {
      return Invalid(StrCat("input '", name, "': unknown datatype '", in.datatype(), "'"));
    }
    const Shape shape(in.shape().begin(), in.shape().end());
    absl::StatusOr<int64_t> count = ElementCount(shape);
    if (!count.ok()) return Invalid(StrCat("input '", name, "': ", MessageOf(count.status())));
    std::string_view field;
    const size_t typed = in.has_contents() ? TypedCount(in.contents(), &field) : 0;
    const size_t begin = held->typed.size();
    if (raw) {
      if (typed > 0) {
        return Invalid(StrCat("input '", name,
                              "': has both raw_input_contents and typed contents (", field,
                              "); send one or the other"));
      }
      // Taken, not copied: the message does not need its bytes any more.
      held->raw[static_cast<size_t>(i)].swap(*proto.mutable_raw_input_contents(i));
    } else {
      const std::string_view want = FieldFor(*type);
      if (want.empty()) {
        return Invalid(StrCat("input '", name, "': ", in.datatype(),
                              " has no typed contents; send it in raw_input_contents"));
      }
      if (typed > 0 && field != want) {
        return Invalid(StrCat("input '", name, "': ", in.datatype(), " data belongs in contents.",
                              want, ", not contents.", field));
      }
      if (static_cast<int64_t>(typed) != *count) {
        return Invalid(StrCat("input '", name, "': shape ", ShapeString(shape), " needs ", *count,
                              " elements, contents.", want, " has ", typed));
      }
      absl::Status s = AppendTyped(in.contents(), *type, name, held->typed);
      if (!s.ok()) return s;
    }
    spans.emplace_back(begin, held->typed.size() - begin);
    types.push_back(*type);
  }
  // Filled: from here on nothing that the tensors view changes.
  for (int i = 0; i < n; ++i) {
    const auto& in = proto.inputs(i);
    const size_t at = static_cast<size_t>(i);
    const std::string_view data =
        raw ? std::string_view(held->raw[at])
            : std::string_view(held->typed).substr(spans[at].first, spans[at].second);
    Tensor t =
        Tensor::View(in.name(), types[at], Shape(in.shape().begin(), in.shape().end()), held, data);
    absl::Status valid = ValidateTensorData(t);
    if (!valid.ok()) {
      return Invalid(raw ? StrCat("raw_input_contents[", i, "]: ", MessageOf(valid))
                         : std::string(MessageOf(valid)));
    }
    req.inputs.push_back(std::move(t));
  }
  for (const auto& o : proto.outputs()) {
    RequestedOutput r;
    r.name = o.name();
    if (r.name.empty()) return Invalid("outputs: every requested output needs a name");
    req.outputs.push_back(std::move(r));
  }
  return out;
}

uint64_t AnswerBytes(const InferResponse& response, bool raw) {
  for (const Tensor& t : response.outputs) {
    if (FieldFor(t.type()).empty()) raw = true;  // as ToProto decides
  }
  uint64_t bytes = 2 * (1024 + response.model_name.size() + response.model_version.size() +
                        response.id.size() + response.served_by.size());
  for (const Tensor& t : response.outputs) {
    const uint64_t data = t.data().size();
    bytes += 2 * (256 + t.name().size() + 16 * t.shape().size());
    if (raw) {
      bytes += 2 * data;  // a copy in the message, and one serialized
    } else if (t.type() == DataType::kBytes) {
      // Each element (a 4-byte length and its bytes) becomes a string in the message (its
      // bytes and a 32-byte string object), then its bytes with a tag and a length of 6 at most.
      bytes += 2 * data + (data / 4) * (32 + 6);
    } else {
      bytes += data / ElementSize(t.type()) * TypedElementBytes(t.type());
    }
  }
  return bytes;
}

void ToProto(const InferResponse& response, bool raw, inference::ModelInferResponse* out) {
  out->set_model_name(response.model_name);
  out->set_model_version(response.model_version);
  out->set_id(response.id);
  if (!response.served_by.empty()) {
    (*out->mutable_parameters())[kServedByParameter].set_string_param(response.served_by);
  }
  for (const Tensor& t : response.outputs) {
    if (FieldFor(t.type()).empty()) raw = true;  // FP16/BF16 travel raw, and then all do
  }
  for (const Tensor& t : response.outputs) {
    auto* o = out->add_outputs();
    o->set_name(t.name());
    o->set_datatype(std::string(DataTypeName(t.type())));
    for (int64_t d : t.shape()) o->add_shape(d);
    if (raw) {
      out->add_raw_output_contents(std::string(t.data()));
    } else {
      FillTyped(t, o->mutable_contents());
    }
  }
}

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  // absl and gRPC share the canonical code numbers.
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(MessageOf(status)));
}

}  // namespace hivemesh::grpc_api
