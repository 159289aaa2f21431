#include "codec/infer_codec.h"

#include <simdjson.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>

#include "base/strings.h"
#include "base/timeouts.h"
#include "codec/json_writer.h"

namespace hivemesh {
namespace {

using simdjson::dom::element;
using simdjson::dom::element_type;

absl::Status Invalid(const std::string& msg) { return absl::InvalidArgumentError(msg); }

// What a client can do when decoding its JSON would take more memory than the node lends.
constexpr std::string_view kUseBinary =
    "send the tensor data in binary (the binary tensor data extension) instead of JSON";

// A tensor whose claimed raw size is at most this is converted straight into a buffer of that
// size; a larger claim is first checked against the values the JSON holds, so that memory is
// sized from the body, not from the claim.
constexpr uint64_t kConvertWithoutCountingBytes = 64 * 1024;

// The number of leaves (values of nested arrays, in order) of a tensor's JSON data, counted
// only as far as `limit` + 1, and for BYTES the raw bytes its strings take (a 4-byte length
// each, then the string).
struct DataCount {
  int64_t leaves = 0;
  uint64_t bytes_raw = 0;
  bool too_deep = false;  // arrays nest deeper than the converter follows
};

// False once counting stopped (more than `limit` leaves, or too deep).
bool CountLeaves(element e, int depth, int64_t limit, DataCount* count) {
  if (e.type() != element_type::ARRAY) {
    ++count->leaves;
    if (e.type() == element_type::STRING) {
      count->bytes_raw += 4 + e.get_string().value_unsafe().size();
    }
    return count->leaves <= limit;
  }
  if (depth > 64) {
    count->too_deep = true;
    return false;
  }
  const simdjson::dom::array children = e.get_array().value_unsafe();
  for (element child : children) {
    if (!CountLeaves(child, depth + 1, limit, count)) return false;
  }
  return true;
}

template <typename T>
void AppendPod(std::string& out, T v) {
  char buf[sizeof(T)];
  std::memcpy(buf, &v, sizeof(T));
  out.append(buf, sizeof(T));
}

// Converts JSON tensor data (flat or nested) into the raw layout. Fixed-size types are written
// straight into a buffer sized once; BYTES elements are appended.
class DataConverter {
 public:
  DataConverter(std::string_view tensor, DataType type, int64_t expected, std::string& out)
      : tensor_(tensor), type_(type), expected_(expected), out_(out) {}

  absl::Status Convert(element data) {
    absl::Status s;
    switch (type_) {
      case DataType::kBool:
        s = Run<&DataConverter::PutBool>(data);
        break;
      case DataType::kUint8:
        s = Run<&DataConverter::PutInteger<uint8_t>>(data);
        break;
      case DataType::kUint16:
        s = Run<&DataConverter::PutInteger<uint16_t>>(data);
        break;
      case DataType::kUint32:
        s = Run<&DataConverter::PutInteger<uint32_t>>(data);
        break;
      case DataType::kUint64:
        s = Run<&DataConverter::PutInteger<uint64_t>>(data);
        break;
      case DataType::kInt8:
        s = Run<&DataConverter::PutInteger<int8_t>>(data);
        break;
      case DataType::kInt16:
        s = Run<&DataConverter::PutInteger<int16_t>>(data);
        break;
      case DataType::kInt32:
        s = Run<&DataConverter::PutInteger<int32_t>>(data);
        break;
      case DataType::kInt64:
        s = Run<&DataConverter::PutInteger<int64_t>>(data);
        break;
      case DataType::kFp16:
        s = Run<&DataConverter::PutFloat<uint16_t, kHalf>>(data);
        break;
      case DataType::kBf16:
        s = Run<&DataConverter::PutFloat<uint16_t, kBfloat>>(data);
        break;
      case DataType::kFp32:
        s = Run<&DataConverter::PutFloat<float, kWide>>(data);
        break;
      case DataType::kFp64:
        s = Run<&DataConverter::PutFloat<double, kWide>>(data);
        break;
      case DataType::kBytes:
        s = Run<&DataConverter::PutBytes>(data);
        break;
    }
    if (!s.ok()) return s;
    if (count_ != expected_) return CountMismatch();
    if (type_ != DataType::kBytes) out_.resize(static_cast<size_t>(count_) * ElementSize(type_));
    return absl::OkStatus();
  }

 private:
  using Put = absl::Status (DataConverter::*)(element);

  template <Put put>
  absl::Status Run(element data) {
    if (type_ != DataType::kBytes) {
      // Sized once: the caller has counted the values against `expected_` (or the claim is
      // small), so the size comes from the body, not from the claim.
      out_.resize(static_cast<size_t>(expected_) * ElementSize(type_));
      dst_ = out_.data();
    }
    return Visit<put>(data, 0);
  }

  template <Put put>
  absl::Status Visit(element e, int depth) {
    if (e.type() != element_type::ARRAY) return Leaf<put>(e);
    if (depth > 64) return Invalid(StrCat("input '", tensor_, "': data nests too deeply"));
    const simdjson::dom::array children = e.get_array().value_unsafe();
    for (element child : children) {
      absl::Status s =
          child.type() == element_type::ARRAY ? Visit<put>(child, depth + 1) : Leaf<put>(child);
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  }

  template <Put put>
  absl::Status Leaf(element e) {
    if (count_ == expected_) {
      ++count_;
      return CountMismatch();
    }
    absl::Status s = (this->*put)(e);
    ++count_;
    return s;
  }

  absl::Status CountMismatch() {
    if (count_ > expected_) {
      return Invalid(StrCat("input '", tensor_, "': its shape needs ", expected_,
                            " elements but data has more"));
    }
    return Invalid(StrCat("input '", tensor_, "': its shape needs ", expected_,
                          " elements but data has ", count_));
  }

  absl::Status ElementError(std::string_view what) {
    return Invalid(StrCat("input '", tensor_, "': data element ", count_, ": ", what));
  }

  template <typename T>
  void Store(T v) {
    std::memcpy(dst_, &v, sizeof(T));
    dst_ += sizeof(T);
  }

  absl::Status PutBool(element e) {
    if (e.type() != element_type::BOOL) return ElementError("expected true or false for BOOL");
    Store<uint8_t>(e.get_bool().value_unsafe() ? 1 : 0);
    return absl::OkStatus();
  }

  template <typename T>
  absl::Status PutInteger(element e) {
    if (e.type() == element_type::INT64) {
      const int64_t v = e.get_int64().value_unsafe();
      if (v < static_cast<int64_t>(std::numeric_limits<T>::min()) ||
          (v > 0 &&
           static_cast<uint64_t>(v) > static_cast<uint64_t>(std::numeric_limits<T>::max()))) {
        return ElementError(StrCat(v, " is out of range for ", DataTypeName(type_)));
      }
      Store<T>(static_cast<T>(v));
      return absl::OkStatus();
    }
    if (e.type() == element_type::UINT64) {
      const uint64_t v = e.get_uint64().value_unsafe();
      if (v > static_cast<uint64_t>(std::numeric_limits<T>::max())) {
        return ElementError(StrCat(v, " is out of range for ", DataTypeName(type_)));
      }
      Store<T>(static_cast<T>(v));
      return absl::OkStatus();
    }
    return ElementError(StrCat("expected an integer for ", DataTypeName(type_)));
  }

  // How a float is stored: as itself (FP32/FP64) or narrowed to a 16-bit encoding.
  enum Encoding { kWide, kHalf, kBfloat };

  // T is the stored type.
  template <typename T, Encoding kEncoding>
  absl::Status PutFloat(element e) {
    double v;
    switch (e.type()) {
      case element_type::DOUBLE:
        v = e.get_double().value_unsafe();
        break;
      case element_type::INT64:
        v = static_cast<double>(e.get_int64().value_unsafe());
        break;
      case element_type::UINT64:
        v = static_cast<double>(e.get_uint64().value_unsafe());
        break;
      case element_type::STRING: {
        const std::string_view s = e.get_string().value_unsafe();
        if (s == "NaN") {
          v = std::numeric_limits<double>::quiet_NaN();
        } else if (s == "Infinity") {
          v = std::numeric_limits<double>::infinity();
        } else if (s == "-Infinity") {
          v = -std::numeric_limits<double>::infinity();
        } else {
          return ElementError(StrCat("expected a number for ", DataTypeName(type_)));
        }
        break;
      }
      default:
        return ElementError(StrCat("expected a number for ", DataTypeName(type_)));
    }
    if constexpr (kEncoding == kHalf) {
      Store<uint16_t>(FloatToHalf(static_cast<float>(v)));
    } else if constexpr (kEncoding == kBfloat) {
      Store<uint16_t>(FloatToBf16(static_cast<float>(v)));
    } else {
      Store<T>(static_cast<T>(v));
    }
    return absl::OkStatus();
  }

  absl::Status PutBytes(element e) {
    if (e.type() != element_type::STRING) return ElementError("expected a string for BYTES");
    AppendBytesElement(out_, e.get_string().value_unsafe());
    return absl::OkStatus();
  }

  std::string_view tensor_;
  DataType type_;
  int64_t expected_;
  std::string& out_;
  char* dst_ = nullptr;
  int64_t count_ = 0;
};

// Reads an optional int64 parameter; accepts integers only.
absl::StatusOr<std::optional<int64_t>> IntParam(element params, std::string_view key,
                                                std::string_view where) {
  element v;
  if (params.at_key(key).get(v) != simdjson::SUCCESS) return std::optional<int64_t>();
  if (v.type() == element_type::INT64) return std::optional<int64_t>(v.get_int64().value_unsafe());
  if (v.type() == element_type::UINT64 &&
      v.get_uint64().value_unsafe() <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return std::optional<int64_t>(static_cast<int64_t>(v.get_uint64().value_unsafe()));
  }
  return Invalid(StrCat(where, ".parameters.", key, ": expected an integer"));
}

// The request's "timeout" parameter: a positive whole number of milliseconds (int64 or uint64 in
// the JSON), cut to kMaxRequestTimeout; absent: none.
absl::StatusOr<std::optional<std::chrono::milliseconds>> TimeoutParam(element params) {
  constexpr std::string_view kField = "request.parameters.timeout";
  element v;
  if (params.at_key("timeout").get(v) != simdjson::SUCCESS) {
    return std::optional<std::chrono::milliseconds>();
  }
  absl::StatusOr<std::chrono::milliseconds> t;
  if (v.type() == element_type::INT64) {
    t = ClientTimeoutMs(v.get_int64().value_unsafe(), kField);
  } else if (v.type() == element_type::UINT64) {
    t = ClientTimeoutMs(v.get_uint64().value_unsafe(), kField);
  } else {
    return Invalid(StrCat(kField, ": expected a whole number of milliseconds"));
  }
  if (!t.ok()) return t.status();
  return std::optional<std::chrono::milliseconds>(*t);
}

absl::StatusOr<bool> BoolParam(element params, std::string_view key, std::string_view where) {
  element v;
  if (params.at_key(key).get(v) != simdjson::SUCCESS) return false;
  if (v.type() != element_type::BOOL) {
    return Invalid(StrCat(where, ".parameters.", key, ": expected true or false"));
  }
  return v.get_bool().value_unsafe();
}

// The "parameters" object of `obj`, or nullopt if it has none.
absl::StatusOr<std::optional<element>> ParamsOf(element obj, std::string_view where) {
  element p;
  if (obj.at_key("parameters").get(p) != simdjson::SUCCESS) return std::optional<element>();
  if (p.type() != element_type::OBJECT) {
    return Invalid(StrCat(where, ".parameters: expected an object"));
  }
  return std::optional<element>(p);
}

absl::StatusOr<std::string_view> StringField(element obj, std::string_view key,
                                             std::string_view where) {
  element v;
  if (obj.at_key(key).get(v) != simdjson::SUCCESS) {
    return Invalid(StrCat(where, ": missing \"", key, "\""));
  }
  if (v.type() != element_type::STRING) {
    return Invalid(StrCat(where, ".", key, ": expected a string"));
  }
  return v.get_string().value_unsafe();
}

// The members of a tensor's object that the codec reads, found in one pass over it: the first
// of each name, as at_key would find it.
struct TensorMembers {
  std::optional<element> name, datatype, shape, parameters, data;
};

TensorMembers MembersOf(element t) {
  TensorMembers m;
  const simdjson::dom::object members = t.get_object().value_unsafe();
  for (simdjson::dom::key_value_pair kv : members) {
    const std::string_view key = kv.key;
    std::optional<element>* slot = nullptr;
    if (key == "name") {
      slot = &m.name;
    } else if (key == "datatype") {
      slot = &m.datatype;
    } else if (key == "shape") {
      slot = &m.shape;
    } else if (key == "parameters") {
      slot = &m.parameters;
    } else if (key == "data") {
      slot = &m.data;
    }
    if (slot != nullptr && !*slot) *slot = kv.value;
  }
  return m;
}

// As StringField, for a member found by MembersOf.
absl::StatusOr<std::string_view> StringMember(const std::optional<element>& v, std::string_view key,
                                              std::string_view where) {
  if (!v) return Invalid(StrCat(where, ": missing \"", key, "\""));
  if (v->type() != element_type::STRING) {
    return Invalid(StrCat(where, ".", key, ": expected a string"));
  }
  return v->get_string().value_unsafe();
}

// As ParamsOf, for a member found by MembersOf.
absl::StatusOr<std::optional<element>> ParamsMember(const std::optional<element>& p,
                                                    std::string_view where) {
  if (!p) return std::optional<element>();
  if (p->type() != element_type::OBJECT) {
    return Invalid(StrCat(where, ".parameters: expected an object"));
  }
  return p;
}

absl::StatusOr<Shape> ShapeMember(const std::optional<element>& shape_member,
                                  std::string_view where) {
  if (!shape_member) return Invalid(StrCat(where, ": missing \"shape\""));
  const element v = *shape_member;
  if (v.type() != element_type::ARRAY) {
    return Invalid(StrCat(where, ".shape: expected an array of integers"));
  }
  Shape shape;
  const simdjson::dom::array dims = v.get_array().value_unsafe();
  for (element d : dims) {
    if (d.type() == element_type::INT64) {
      const int64_t dim = d.get_int64().value_unsafe();
      if (dim < 0) {
        return Invalid(StrCat(where, ".shape: dimension ", dim, " is negative"));
      }
      shape.push_back(dim);
    } else if (d.type() == element_type::UINT64) {
      return Invalid(
          StrCat(where, ".shape: dimension ", d.get_uint64().value_unsafe(), " is too large"));
    } else {
      return Invalid(StrCat(where, ".shape: expected an array of integers"));
    }
    if (shape.size() > kMaxRank) {
      return Invalid(StrCat(where, ".shape: more than ", kMaxRank, " dimensions"));
    }
  }
  absl::StatusOr<int64_t> count = ElementCount(shape);
  if (!count.ok()) return Invalid(StrCat(where, ".shape: ", count.status().message()));
  return shape;
}

absl::StatusOr<DecodedInferRequest> DecodeRawBody(std::shared_ptr<const std::string> body,
                                                  const TensorConfig* input, MemoryBudget* budget) {
  if (input == nullptr) {
    return Invalid(
        "Inference-Header-Content-Length: 0 sends the body as the raw data of the model's single "
        "input, but this model has no single (or single BYTES) input");
  }
  DecodedInferRequest out;
  if (input->type == DataType::kBytes) {
    // The whole body is one element: a copy with its length in front.
    absl::StatusOr<MemoryBudget::Reservation> memory =
        ReserveFor(budget, body->size() + 4, StrCat("input '", input->name, "'"),
                   "send a smaller body", /*held=*/body->size());
    if (!memory.ok()) return memory.status();
    std::string raw;
    raw.reserve(body->size() + 4);
    AppendBytesElement(raw, *body);
    Shape shape(input->dims.size(), 1);
    std::shared_ptr<const std::string> held =
        MemoryBudget::Hold(std::move(raw), *std::move(memory));
    const std::string_view bytes = *held;
    out.request.inputs.push_back(
        Tensor::View(input->name, DataType::kBytes, std::move(shape), std::move(held), bytes));
    return out;
  }
  // Fill the one variable dimension from the body size.
  Shape shape = input->dims;
  int64_t known = 1;
  int variable = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      if (variable >= 0) {
        return Invalid(StrCat("input '", input->name, "' has more than one variable ",
                              "dimension, so a raw body cannot give its shape"));
      }
      variable = static_cast<int>(i);
    } else {
      known *= shape[i];
    }
  }
  const size_t elem = ElementSize(input->type);
  const uint64_t row = static_cast<uint64_t>(known) * elem;
  if (row == 0 || body->size() % row != 0 || (variable < 0 && body->size() != row)) {
    return Invalid(StrCat("input '", input->name, "': a raw body of ", body->size(),
                          " bytes does not fit shape ", ShapeString(input->dims), " of ",
                          DataTypeName(input->type)));
  }
  if (variable >= 0) shape[variable] = static_cast<int64_t>(body->size() / row);
  std::string_view data = *body;
  out.request.inputs.push_back(
      Tensor::View(input->name, input->type, std::move(shape), std::move(body), data));
  return out;
}

// JSON documents up to this size are parsed by the thread's own parser, which keeps its buffers
// for the next request (simdjson sizes them at about 14 bytes per byte of document: 3.5 MiB per
// thread at most). A larger document gets a parser of its own, sized for it, whose memory is
// reserved from the budget first and freed once the message is decoded.
constexpr size_t kThreadParserMaxBytes = 256 * 1024;

// At most the memory simdjson's DOM parser touches to parse `text`: every value (and key) is
// the document's first or follows one of `[{,:`, and takes at most 2 tape words (16 bytes), 3
// structural indexes (itself, a separator, a closing bracket: 12 bytes) and, as a string, 5
// bytes besides its characters; the characters take at most the bytes between their quotes
// (whitespace between values takes nothing); and a copy of the text when it lacks simdjson's
// padding.
uint64_t ParserMemoryBound(std::string_view text, bool padded) {
  uint64_t separators = 0;
  uint64_t in_strings = 0;
  bool in_string = false;
  bool escaped = false;
  for (const char c : text) {
    if (in_string) {
      ++in_strings;
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    separators += (c == ',') | (c == ':') | (c == '[') | (c == '{');
    in_string = c == '"';
  }
  const uint64_t copy = padded ? 0 : text.size() + simdjson::SIMDJSON_PADDING;
  return (separators + 1) * (16 + 12 + 5) + in_strings + copy;
}

// A message's JSON header, parsed, and the binary data after it.
struct JsonHead {
  element root;
  size_t json_len = 0;
  std::string_view binary;
  // A large document's own parser, which `root` points into, and its memory: held until the
  // message is decoded. Null for documents the thread's parser took.
  std::unique_ptr<simdjson::dom::parser> parser;
  MemoryBudget::Reservation parser_memory;
};

// Splits `body` at `header_length` (Inference-Header-Content-Length; absent: all JSON) and parses
// the JSON object. `what` ("request" or "response") names the message in errors. The elements
// stay valid while the JsonHead lives and until the next call on this thread.
absl::StatusOr<JsonHead> ParseHead(const std::string& body, std::optional<uint64_t> header_length,
                                   std::string_view what, MemoryBudget* budget) {
  JsonHead head;
  head.json_len = body.size();
  if (header_length) {
    if (*header_length > body.size()) {
      return Invalid(StrCat("the ", what, "'s Inference-Header-Content-Length is ", *header_length,
                            " but the body has only ", body.size(), " bytes"));
    }
    head.json_len = static_cast<size_t>(*header_length);
  }
  head.binary = std::string_view(body.data() + head.json_len, body.size() - head.json_len);
  // The bytes after the JSON header are readable, so no copy is needed when enough follow.
  const bool padded = body.capacity() >= head.json_len + simdjson::SIMDJSON_PADDING;
  thread_local simdjson::dom::parser thread_parser;
  simdjson::dom::parser* parser = &thread_parser;
  if (head.json_len > kThreadParserMaxBytes) {
    const std::string_view text(body.data(), head.json_len);
    absl::StatusOr<MemoryBudget::Reservation> memory =
        ReserveFor(budget, ParserMemoryBound(text, padded),
                   StrCat("parsing the ", what, "'s ", head.json_len, " bytes of JSON"), kUseBinary,
                   /*held=*/body.size());
    if (!memory.ok()) return memory.status();
    head.parser_memory = *std::move(memory);
    head.parser = std::make_unique<simdjson::dom::parser>();
    parser = head.parser.get();
  }
  if (auto err = parser->parse(body.data(), head.json_len, !padded).get(head.root)) {
    return Invalid(StrCat("malformed JSON in the ", what, " body: ", simdjson::error_message(err)));
  }
  if (head.root.type() != element_type::OBJECT) {
    return Invalid(StrCat("the ", what, " body must be a JSON object"));
  }
  return head;
}

// How errors name a tensor ("input 'x'"): kept inline when short, so that naming it costs no
// allocation on the usual, error-free path.
class TensorWhere {
 public:
  void Set(std::string_view kind, std::string_view name) {
    const size_t n = kind.size() + name.size() + 3;
    if (n > sizeof(inline_)) {
      long_ = StrCat(kind, " '", name, "'");
      size_ = kLong;
      return;
    }
    char* p = inline_;
    p = std::copy(kind.begin(), kind.end(), p);
    *p++ = ' ';
    *p++ = '\'';
    p = std::copy(name.begin(), name.end(), p);
    *p++ = '\'';
    size_ = n;
  }
  operator std::string_view() const {
    return size_ == kLong ? std::string_view(long_) : std::string_view(inline_, size_);
  }

 private:
  static constexpr size_t kLong = ~size_t{0};
  char inline_[56];
  size_t size_ = 0;
  std::string long_;
};

// What the JSON says of one input or output tensor.
struct TensorHead {
  std::string_view name;
  TensorWhere where;  // how errors name it: "input 'x'"
  DataType type = DataType::kFp32;
  Shape shape;
  std::optional<int64_t> binary_size;  // parameters.binary_data_size
  std::optional<element> data;         // the "data" member, if any
};

// Name, datatype, shape and binary_data_size of the `index`th entry of "<kind>s".
absl::StatusOr<TensorHead> ParseTensorHead(element t, std::string_view kind, size_t index) {
  if (t.type() != element_type::OBJECT) {
    return Invalid(StrCat(kind, "s[", index, "]: expected an object"));
  }
  const TensorMembers m = MembersOf(t);
  TensorHead head;
  if (!m.name || m.name->type() != element_type::STRING) {
    return StringMember(m.name, "name", StrCat(kind, "s[", index, "]")).status();
  }
  const std::string_view name = m.name->get_string().value_unsafe();
  if (name.size() > kMaxNameBytes) {
    return Invalid(
        StrCat(kind, "s[", index, "].name: ", name.size(), " bytes, more than ", kMaxNameBytes));
  }
  head.name = name;
  head.where.Set(kind, name);
  absl::StatusOr<std::string_view> dt = StringMember(m.datatype, "datatype", head.where);
  if (!dt.ok()) return dt.status();
  std::optional<DataType> type = DataTypeFromName(*dt);
  if (!type) return Invalid(StrCat(head.where, ".datatype: unknown datatype '", *dt, "'"));
  head.type = *type;
  absl::StatusOr<Shape> shape = ShapeMember(m.shape, head.where);
  if (!shape.ok()) return shape.status();
  head.shape = *std::move(shape);
  head.data = m.data;
  absl::StatusOr<std::optional<element>> params = ParamsMember(m.parameters, head.where);
  if (!params.ok()) return params.status();
  if (*params) {
    absl::StatusOr<std::optional<int64_t>> bs = IntParam(**params, "binary_data_size", head.where);
    if (!bs.ok()) return bs.status();
    head.binary_size = *bs;
  }
  return head;
}

// The tensor's "data" array as raw bytes; `what` names the message, `missing` adds to the error
// when there is no "data". Memory is sized from the body, not from the claimed shape: every
// element takes at least two bytes of JSON text ("1,"), so a shape that claims more than
// `json_len` allows cannot match; and a claim of more than kConvertWithoutCountingBytes is
// checked against the values the data holds before anything is allocated for it. The bytes are
// reserved from `budget` (may be null; `held`: what the request holds already) and held by the
// tensor.
absl::StatusOr<Tensor> JsonDataTensor(TensorHead& head, size_t json_len, std::string_view what,
                                      std::string_view missing, MemoryBudget* budget,
                                      uint64_t held) {
  if (!head.data) return Invalid(StrCat(head.where, ": missing \"data\"", missing));
  const element data = *head.data;
  const int64_t count = *ElementCount(head.shape);
  if (static_cast<uint64_t>(count) > json_len / 2 + 1) {
    return Invalid(StrCat(head.where, ": its shape needs ", count, " elements but the ", what,
                          " body is only ", json_len, " bytes"));
  }
  const bool bytes_type = head.type == DataType::kBytes;
  uint64_t raw_size = static_cast<uint64_t>(count) * (bytes_type ? 0 : ElementSize(head.type));
  if (bytes_type || raw_size > kConvertWithoutCountingBytes) {
    DataCount counted;
    CountLeaves(data, 0, count, &counted);
    if (counted.too_deep) return Invalid(StrCat(head.where, ": data nests too deeply"));
    if (counted.leaves != count) {
      return Invalid(StrCat(head.where, ": its shape needs ", count, " elements but data has ",
                            counted.leaves > count ? "more" : StrCat(counted.leaves)));
    }
    if (bytes_type) raw_size = counted.bytes_raw;
  }
  absl::StatusOr<MemoryBudget::Reservation> memory =
      ReserveFor(budget, raw_size, StrCat("decoding ", head.where, " (", count, " elements)"),
                 kUseBinary, held);
  if (!memory.ok()) return memory.status();
  std::string raw;
  if (bytes_type) raw.reserve(raw_size);
  DataConverter conv(head.name, head.type, count, raw);
  absl::Status s = conv.Convert(data);
  if (!s.ok()) return s;
  std::shared_ptr<const std::string> owner = MemoryBudget::Hold(std::move(raw), *std::move(memory));
  const std::string_view bytes = *owner;
  return Tensor::View(std::string(head.name), head.type, std::move(head.shape), std::move(owner),
                      bytes);
}

}  // namespace

absl::StatusOr<DecodedInferRequest> DecodeInferRequest(std::shared_ptr<const std::string> body,
                                                       std::optional<uint64_t> header_length,
                                                       const TensorConfig* raw_input,
                                                       MemoryBudget* budget) {
  if (header_length && *header_length == 0) {
    return DecodeRawBody(std::move(body), raw_input, budget);
  }
  absl::StatusOr<JsonHead> head = ParseHead(*body, header_length, "request", budget);
  if (!head.ok()) return head.status();
  const element root = head->root;
  const std::string_view binary = head->binary;

  DecodedInferRequest out;
  InferRequest& req = out.request;
  // What the request holds while its tensors are decoded: its body, the parse, those decoded.
  uint64_t held = body->size() + head->parser_memory.bytes();
  element v;
  if (root.at_key("id").get(v) == simdjson::SUCCESS) {
    if (v.type() != element_type::STRING) return Invalid("id: expected a string");
    const std::string_view id = v.get_string().value_unsafe();
    if (id.size() > kMaxNameBytes) {
      return Invalid(StrCat("id: ", id.size(), " bytes, more than ", kMaxNameBytes));
    }
    req.id = std::string(id);
  }
  absl::StatusOr<std::optional<element>> params = ParamsOf(root, "request");
  if (!params.ok()) return params.status();
  if (*params) {
    absl::StatusOr<bool> bin = BoolParam(**params, "binary_data_output", "request");
    if (!bin.ok()) return bin.status();
    req.binary_output = *bin;
    absl::StatusOr<std::optional<std::chrono::milliseconds>> timeout = TimeoutParam(**params);
    if (!timeout.ok()) return timeout.status();
    out.timeout = *timeout;
  }

  element inputs;
  if (root.at_key("inputs").get(inputs) != simdjson::SUCCESS) {
    return Invalid("the request has no \"inputs\"");
  }
  if (inputs.type() != element_type::ARRAY) return Invalid("inputs: expected an array");
  size_t binary_pos = 0;
  size_t index = 0;
  const simdjson::dom::array input_list = inputs.get_array().value_unsafe();
  for (element in : input_list) {
    absl::StatusOr<TensorHead> t = ParseTensorHead(in, "input", index++);
    if (!t.ok()) return t.status();
    Tensor tensor;
    if (t->binary_size) {
      const int64_t size = *t->binary_size;
      if (!header_length) {
        return Invalid(StrCat(t->where, " has binary_data_size but the request has no ",
                              "Inference-Header-Content-Length header"));
      }
      if (size < 0 || static_cast<uint64_t>(size) > binary.size() - binary_pos) {
        return Invalid(StrCat(t->where, ".parameters.binary_data_size: ", size,
                              " bytes run past the end of the body (", binary.size() - binary_pos,
                              " bytes of binary data left)"));
      }
      const std::string_view data = binary.substr(binary_pos, static_cast<size_t>(size));
      binary_pos += static_cast<size_t>(size);
      tensor = Tensor::View(std::string(t->name), t->type, std::move(t->shape), body, data);
    } else {
      absl::StatusOr<Tensor> json =
          JsonDataTensor(*t, head->json_len, "request", " (or binary_data_size)", budget, held);
      if (!json.ok()) return json.status();
      tensor = *std::move(json);
      held += tensor.data().size();
    }
    absl::Status valid = ValidateTensorData(tensor);
    if (!valid.ok()) return valid;
    req.inputs.push_back(std::move(tensor));
  }
  if (binary_pos != binary.size()) {
    return Invalid(
        StrCat(binary.size() - binary_pos, " bytes of binary data follow the last binary input"));
  }

  element outputs;
  if (root.at_key("outputs").get(outputs) == simdjson::SUCCESS) {
    if (outputs.type() != element_type::ARRAY) return Invalid("outputs: expected an array");
    index = 0;
    const simdjson::dom::array output_list = outputs.get_array().value_unsafe();
    for (element o : output_list) {
      const std::string where = StrCat("outputs[", index++, "]");
      if (o.type() != element_type::OBJECT) return Invalid(where + ": expected an object");
      absl::StatusOr<std::string_view> name = StringField(o, "name", where);
      if (!name.ok()) return name.status();
      if (name->size() > kMaxNameBytes) {
        return Invalid(StrCat(where, ".name: ", name->size(), " bytes, more than ", kMaxNameBytes));
      }
      RequestedOutput ro{std::string(*name), false};
      absl::StatusOr<std::optional<element>> oparams = ParamsOf(o, where);
      if (!oparams.ok()) return oparams.status();
      if (*oparams) {
        absl::StatusOr<bool> bin = BoolParam(**oparams, "binary_data", where);
        if (!bin.ok()) return bin.status();
        ro.binary = *bin;
      }
      for (const RequestedOutput& prev : req.outputs) {
        if (prev.name == ro.name) {
          return Invalid(StrCat("output '", ro.name, "' is requested twice"));
        }
      }
      req.outputs.push_back(std::move(ro));
    }
  }
  return out;
}

namespace {

template <typename T, typename Emit>
void EmitAll(std::string_view raw, Emit&& emit) {
  const size_t n = raw.size() / sizeof(T);
  for (size_t i = 0; i < n; ++i) {
    T v;
    std::memcpy(&v, raw.data() + i * sizeof(T), sizeof(T));
    emit(v);
  }
}

void AppendInt(std::string& out, int64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

// `{"name":...,"datatype":...,"shape":[...]` of a tensor: the object is left open.
void AppendTensorHead(std::string& j, const Tensor& t) {
  j += "{\"name\":";
  AppendJsonString(j, t.name());
  j += ",\"datatype\":";
  AppendJsonString(j, DataTypeName(t.type()));
  j += ",\"shape\":[";
  for (size_t d = 0; d < t.shape().size(); ++d) {
    if (d > 0) j += ',';
    AppendInt(j, t.shape()[d]);
  }
  j += ']';
}

// A float tensor's elements (of type T, made float by `to_float`) as a JSON array, written
// straight into `j`: this is most of a JSON answer's text, and JsonWriter's per-value
// bookkeeping would cost as much as the numbers. Room for the longest text is made a block of
// values at a time, so a large tensor's text overshoots its final size by one block at most.
template <typename T, typename ToFloat>
void AppendFloatArray(std::string& j, std::string_view raw, ToFloat to_float) {
  constexpr size_t kBlock = 4096;
  const size_t n = raw.size() / sizeof(T);
  j += '[';
  for (size_t first = 0; first < n; first += kBlock) {
    const size_t last = std::min(n, first + kBlock);
    const size_t at = j.size();
    j.resize(at + (last - first) * (kMaxFloatTextChars + 1));
    char* p = j.data() + at;
    for (size_t i = first; i < last; ++i) {
      if (i > 0) *p++ = ',';
      T v;
      std::memcpy(&v, raw.data() + i * sizeof(T), sizeof(T));
      p = FloatText(p, to_float(v));
    }
    j.resize(static_cast<size_t>(p - j.data()));
  }
  j += ']';
}

void WriteData(std::string& j, const Tensor& t) {
  const std::string_view raw = t.data();
  switch (t.type()) {
    case DataType::kFp16:
      return AppendFloatArray<uint16_t>(j, raw, HalfToFloat);
    case DataType::kBf16:
      return AppendFloatArray<uint16_t>(j, raw, Bf16ToFloat);
    case DataType::kFp32:
      return AppendFloatArray<float>(j, raw, [](float v) { return v; });
    default:
      break;
  }
  JsonWriter w(j);
  w.BeginArray();
  switch (t.type()) {
    case DataType::kBool:
      EmitAll<uint8_t>(raw, [&](uint8_t v) { w.Bool(v != 0); });
      break;
    case DataType::kUint8:
      EmitAll<uint8_t>(raw, [&](uint8_t v) { w.Uint(v); });
      break;
    case DataType::kUint16:
      EmitAll<uint16_t>(raw, [&](uint16_t v) { w.Uint(v); });
      break;
    case DataType::kUint32:
      EmitAll<uint32_t>(raw, [&](uint32_t v) { w.Uint(v); });
      break;
    case DataType::kUint64:
      EmitAll<uint64_t>(raw, [&](uint64_t v) { w.Uint(v); });
      break;
    case DataType::kInt8:
      EmitAll<int8_t>(raw, [&](int8_t v) { w.Int(v); });
      break;
    case DataType::kInt16:
      EmitAll<int16_t>(raw, [&](int16_t v) { w.Int(v); });
      break;
    case DataType::kInt32:
      EmitAll<int32_t>(raw, [&](int32_t v) { w.Int(v); });
      break;
    case DataType::kInt64:
      EmitAll<int64_t>(raw, [&](int64_t v) { w.Int(v); });
      break;
    case DataType::kFp16:
    case DataType::kBf16:
    case DataType::kFp32:
      break;  // above
    case DataType::kFp64:
      EmitAll<double>(raw, [&](double v) { w.Double(v); });
      break;
    case DataType::kBytes:
      ForEachBytesElement(raw, [&](std::string_view e) { w.String(e); });
      break;
  }
  w.EndArray();
}

}  // namespace

namespace {

// The longest JSON text of one element of `type` in an answer, with the comma after it: "false",
// "-9223372036854775808", FloatText's longest, to_chars' longest double
// ("-2.2250738585072014e-308"). BYTES elements are bounded per raw byte instead (see below).
uint64_t WidestElementText(DataType type) {
  switch (type) {
    case DataType::kBool:
      return 5 + 1;
    case DataType::kUint8:
      return 3 + 1;
    case DataType::kUint16:
      return 5 + 1;
    case DataType::kUint32:
      return 10 + 1;
    case DataType::kUint64:
      return 20 + 1;
    case DataType::kInt8:
      return 4 + 1;
    case DataType::kInt16:
      return 6 + 1;
    case DataType::kInt32:
      return 11 + 1;
    case DataType::kInt64:
      return 20 + 1;
    case DataType::kFp16:
    case DataType::kBf16:
    case DataType::kFp32:
      return kMaxFloatTextChars + 1;
    case DataType::kFp64:
      return 24 + 1;
    case DataType::kBytes:
      break;
  }
  return 0;
}

// The most text AppendJsonString writes for `s`: every byte as a \u00XX escape, and the quotes.
uint64_t JsonStringBound(std::string_view s) { return 6 * s.size() + 2; }

}  // namespace

EncodedSize EncodedInferResponseSize(const InferResponse& response) {
  EncodedSize size;
  // Braces, keys and punctuation. AppendFloatArray makes room for a block of values at their
  // widest before writing them, which is what each is counted at here: it stays within this.
  size.json = 256 + JsonStringBound(response.model_name) + JsonStringBound(response.model_version) +
              JsonStringBound(response.id) + JsonStringBound(response.served_by);
  for (size_t i = 0; i < response.outputs.size(); ++i) {
    const Tensor& t = response.outputs[i];
    const uint64_t data = t.data().size();
    size.json += 128 + JsonStringBound(t.name()) + 21 * t.shape().size();
    if (i < response.binary.size() && response.binary[i]) {
      size.binary += data;
    } else if (t.type() == DataType::kBytes) {
      // Each element: a 4-byte length and n raw bytes become at most 6n + 3 characters.
      size.json += 7 * data + 2;
    } else {
      size.json += data / ElementSize(t.type()) * WidestElementText(t.type()) + 2;
    }
  }
  return size;
}

EncodedInferResponse EncodeInferResponse(const InferResponse& response) {
  // The fixed structure is written directly (the same text JsonWriter would give, without its
  // per-value bookkeeping); only the data arrays go through JsonWriter. The text is made in one
  // buffer of its largest size, so it is never copied to grow (pages it does not fill are never
  // touched).
  EncodedInferResponse out;
  std::string& j = out.json;
  j.reserve(EncodedInferResponseSize(response).json);
  j += "{\"model_name\":";
  AppendJsonString(j, response.model_name);
  if (!response.model_version.empty()) {
    j += ",\"model_version\":";
    AppendJsonString(j, response.model_version);
  }
  if (!response.id.empty()) {
    j += ",\"id\":";
    AppendJsonString(j, response.id);
  }
  if (!response.served_by.empty()) {
    j += ",\"parameters\":{\"served_by\":";
    AppendJsonString(j, response.served_by);
    j += '}';
  }
  j += ",\"outputs\":[";
  for (size_t i = 0; i < response.outputs.size(); ++i) {
    const Tensor& t = response.outputs[i];
    const bool binary = i < response.binary.size() && response.binary[i];
    if (i > 0) j += ',';
    AppendTensorHead(j, t);
    if (binary) {
      j += ",\"parameters\":{\"binary_data_size\":";
      AppendInt(j, static_cast<int64_t>(t.data().size()));
      j += '}';
      out.binary.push_back(t);
    } else {
      j += ",\"data\":";
      WriteData(j, t);
    }
    j += '}';
  }
  j += "]}";
  return out;
}

std::string EncodeInferRequest(std::span<const Tensor> inputs) {
  std::string j = "{\"inputs\":[";
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (i > 0) j += ',';
    AppendTensorHead(j, inputs[i]);
    j += ",\"data\":";
    WriteData(j, inputs[i]);
    j += '}';
  }
  j += "]}";
  return j;
}

std::string EncodeError(std::string_view message) {
  std::string out;
  JsonWriter w(out);
  w.BeginObject().Key("error").String(message).EndObject();
  return out;
}

std::optional<std::string> DecodeError(std::string_view body) {
  thread_local simdjson::dom::parser parser;
  element doc;
  std::string_view message;
  if (parser.parse(body.data(), body.size()).get(doc) != simdjson::SUCCESS ||
      doc.type() != element_type::OBJECT || doc["error"].get(message) != simdjson::SUCCESS) {
    return std::nullopt;
  }
  return std::string(message);
}

absl::StatusOr<InferResponse> DecodeInferResponse(std::shared_ptr<const std::string> body,
                                                  std::optional<uint64_t> header_length) {
  absl::StatusOr<JsonHead> head = ParseHead(*body, header_length, "response", nullptr);
  if (!head.ok()) return head.status();
  const element root = head->root;
  const std::string_view binary = head->binary;
  InferResponse resp;
  std::string_view sv;
  if (root.at_key("model_name").get(sv) == simdjson::SUCCESS) resp.model_name = std::string(sv);
  if (root.at_key("model_version").get(sv) == simdjson::SUCCESS) {
    resp.model_version = std::string(sv);
  }
  if (root.at_key("id").get(sv) == simdjson::SUCCESS) resp.id = std::string(sv);
  if (root.at_key("parameters").at_key("served_by").get(sv) == simdjson::SUCCESS) {
    resp.served_by = std::string(sv);
  }
  element outputs;
  if (root.at_key("outputs").get(outputs) != simdjson::SUCCESS ||
      outputs.type() != element_type::ARRAY) {
    return Invalid("the response has no \"outputs\" array");
  }
  size_t pos = 0, index = 0;
  const simdjson::dom::array output_list = outputs.get_array().value_unsafe();
  for (element o : output_list) {
    absl::StatusOr<TensorHead> h = ParseTensorHead(o, "output", index++);
    if (!h.ok()) return h.status();
    Tensor t;
    if (h->binary_size) {
      const int64_t size = *h->binary_size;
      if (size < 0 || static_cast<uint64_t>(size) > binary.size() - pos) {
        return Invalid(StrCat(h->where, ": binary_data_size runs past the end of the body"));
      }
      t = Tensor::View(std::string(h->name), h->type, std::move(h->shape), body,
                       binary.substr(pos, static_cast<size_t>(size)));
      pos += static_cast<size_t>(size);
    } else {
      absl::StatusOr<Tensor> json = JsonDataTensor(*h, head->json_len, "response", "", nullptr, 0);
      if (!json.ok()) return json.status();
      t = *std::move(json);
    }
    absl::Status valid = ValidateTensorData(t);
    if (!valid.ok()) return valid;
    resp.outputs.push_back(std::move(t));
    resp.binary.push_back(false);
  }
  if (pos != binary.size()) return Invalid("binary data follows the last binary output");
  return resp;
}

}  // namespace hivemesh
