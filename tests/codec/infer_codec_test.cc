#include "codec/infer_codec.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "base/strings.h"

namespace hivemesh {
namespace {

using ::testing::HasSubstr;

std::shared_ptr<const std::string> Body(std::string s) {
  return std::make_shared<const std::string>(std::move(s));
}

absl::StatusOr<DecodedInferRequest> DecodeJson(const std::string& json) {
  return DecodeInferRequest(Body(json), std::nullopt, nullptr);
}

std::string ErrorOf(const std::string& json) {
  auto r = DecodeJson(json);
  EXPECT_FALSE(r.ok()) << json;
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(r.status().message());
}

template <typename T>
std::vector<T> Values(const Tensor& t) {
  auto s = t.As<T>();
  return {s.begin(), s.end()};
}

TEST(InferCodecTest, SpecExampleIsRejectedForInput1DataThatDoesNotMatchItsShape) {
  const std::string msg = ErrorOf(
      R"({"id":"42","inputs":[{"name":"input0","shape":[2,2],"datatype":"UINT32","data":[1,2,3,4]},)"
      R"({"name":"input1","shape":[3],"datatype":"BOOL","data":[true]}],"outputs":[{"name":"output0"}]})");
  EXPECT_THAT(msg, HasSubstr("input1"));
  EXPECT_THAT(msg, HasSubstr("needs 3 elements but data has 1"));
}

TEST(InferCodecTest, DecodesFlatAndNestedDataTheSame) {
  auto flat = DecodeJson(
      R"({"id":"7","inputs":[{"name":"a","shape":[2,2],"datatype":"FP32","data":[1,2.5,-3,4e2]}]})");
  auto nested = DecodeJson(
      R"({"inputs":[{"name":"a","shape":[2,2],"datatype":"FP32","data":[[1,2.5],[-3,4e2]]}]})");
  ASSERT_TRUE(flat.ok()) << flat.status();
  ASSERT_TRUE(nested.ok()) << nested.status();
  EXPECT_EQ(flat->request.id, "7");
  EXPECT_EQ(Values<float>(flat->request.inputs[0]), (std::vector<float>{1, 2.5, -3, 400}));
  EXPECT_EQ(flat->request.inputs[0].data(), nested->request.inputs[0].data());
  EXPECT_EQ(flat->request.inputs[0].shape(), (Shape{2, 2}));
}

TEST(InferCodecTest, EveryDatatypeRoundTripsThroughJson) {
  struct Case {
    const char* type;
    const char* data;
  };
  const Case cases[] = {
      {"BOOL", "[true,false]"},
      {"UINT8", "[0,255]"},
      {"UINT16", "[0,65535]"},
      {"UINT32", "[0,4294967295]"},
      {"UINT64", "[0,18446744073709551615]"},
      {"INT8", "[-128,127]"},
      {"INT16", "[-32768,32767]"},
      {"INT32", "[-2147483648,2147483647]"},
      {"INT64", "[-9223372036854775808,9223372036854775807]"},
      {"FP16", "[1.5,-0.25]"},
      {"BF16", "[1.5,-0.25]"},
      {"FP32", "[1.5,-0.25]"},
      {"FP64", "[1.5,-0.25]"},
      {"BYTES", R"(["hello","w\"orld"])"},
  };
  for (const Case& c : cases) {
    const std::string json = std::string(R"({"inputs":[{"name":"x","shape":[2],"datatype":")") +
                             c.type + R"(","data":)" + c.data + "}]}";
    auto decoded = DecodeJson(json);
    ASSERT_TRUE(decoded.ok()) << c.type << ": " << decoded.status();
    InferResponse resp;
    resp.model_name = "m";
    resp.outputs.push_back(decoded->request.inputs[0]);
    const std::string out = EncodeInferResponse(resp).json;
    EXPECT_EQ(out, std::string(R"({"model_name":"m","outputs":[{"name":"x","datatype":")") +
                       c.type + R"(","shape":[2],"data":)" + c.data + "}]}")
        << c.type;
  }
}

TEST(InferCodecTest, EncodedRequestsDecodeToTheSameTensors) {
  auto decoded = DecodeJson(
      R"({"inputs":[{"name":"a","shape":[3],"datatype":"FP32","data":[0.1,-3e-38,16777217]},)"
      R"({"name":"b","shape":[1,2],"datatype":"BYTES","data":["x\"y","\u0000z"]},)"
      R"({"name":"c","shape":[2],"datatype":"INT64","data":[-9223372036854775808,7]}]})");
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  const std::vector<Tensor>& in = decoded->request.inputs;
  const std::string body = EncodeInferRequest(in);
  auto again = DecodeJson(body);
  ASSERT_TRUE(again.ok()) << body << ": " << again.status();
  ASSERT_EQ(again->request.inputs.size(), 3u);
  for (size_t i = 0; i < in.size(); ++i) {
    EXPECT_EQ(again->request.inputs[i].name(), in[i].name());
    EXPECT_EQ(again->request.inputs[i].type(), in[i].type());
    EXPECT_EQ(again->request.inputs[i].shape(), in[i].shape());
    EXPECT_EQ(again->request.inputs[i].data(), in[i].data()) << in[i].name();
  }
  EXPECT_EQ(EncodeInferRequest({}), R"({"inputs":[]})");
}

TEST(InferCodecTest, RejectsBadElementsNamingTheTensor) {
  EXPECT_THAT(ErrorOf(R"({"inputs":[{"name":"px","shape":[1],"datatype":"UINT8","data":[300]}]})"),
              HasSubstr("input 'px': data element 0: 300 is out of range for UINT8"));
  EXPECT_THAT(
      ErrorOf(R"({"inputs":[{"name":"px","shape":[2],"datatype":"INT32","data":[1,1.5]}]})"),
      HasSubstr("data element 1: expected an integer for INT32"));
  EXPECT_THAT(ErrorOf(R"({"inputs":[{"name":"b","shape":[1],"datatype":"BOOL","data":[1]}]})"),
              HasSubstr("expected true or false"));
  EXPECT_THAT(ErrorOf(R"({"inputs":[{"name":"f","shape":[1],"datatype":"FP32","data":["x"]}]})"),
              HasSubstr("expected a number for FP32"));
  EXPECT_THAT(ErrorOf(R"({"inputs":[{"name":"f","shape":[1],"datatype":"FP32","data":[1,2]}]})"),
              HasSubstr("needs 1 elements but data has more"));
}

TEST(InferCodecTest, RejectsBadStructure) {
  EXPECT_THAT(ErrorOf("{not json"), HasSubstr("malformed JSON"));
  EXPECT_THAT(ErrorOf("[1,2]"), HasSubstr("must be a JSON object"));
  EXPECT_THAT(ErrorOf("{}"), HasSubstr("no \"inputs\""));
  EXPECT_THAT(ErrorOf(R"({"inputs":[{"name":"t","shape":[1],"datatype":"FP33","data":[1]}]})"),
              HasSubstr("input 't'.datatype: unknown datatype 'FP33'"));
  EXPECT_THAT(ErrorOf(R"({"inputs":[{"name":"t","shape":[-1],"datatype":"FP32","data":[1]}]})"),
              HasSubstr("input 't'.shape: dimension -1 is negative"));
  EXPECT_THAT(
      ErrorOf(
          R"({"inputs":[{"name":"t","shape":[1099511627776,1099511627776],"datatype":"FP32","data":[1]}]})"),
      HasSubstr("more than 2^40 elements"));
  EXPECT_THAT(
      ErrorOf(
          R"({"inputs":[{"name":"t","shape":[18446744073709551615],"datatype":"FP32","data":[1]}]})"),
      HasSubstr("too large"));
  // A shape claiming more elements than the body could hold is refused before any allocation.
  EXPECT_THAT(
      ErrorOf(R"({"inputs":[{"name":"t","shape":[1000000000],"datatype":"FP64","data":[1]}]})"),
      HasSubstr("needs 1000000000 elements but the request body is only"));
  EXPECT_THAT(ErrorOf(R"({"inputs":[{"name":"t","shape":[1],"datatype":"FP32"}]})"),
              HasSubstr("input 't': missing \"data\""));
  EXPECT_THAT(ErrorOf(R"({"inputs":[{"shape":[1],"datatype":"FP32","data":[1]}]})"),
              HasSubstr("inputs[0]: missing \"name\""));
  EXPECT_THAT(ErrorOf(R"({"id":5,"inputs":[]})"), HasSubstr("id: expected a string"));
  EXPECT_THAT(ErrorOf(R"({"inputs":[],"outputs":[{"name":"o"},{"name":"o"}]})"),
              HasSubstr("output 'o' is requested twice"));
}

TEST(InferCodecTest, ParsesOutputsAndParameters) {
  auto r =
      DecodeJson(R"({"parameters":{"binary_data_output":true,"timeout":250},"inputs":[],)"
                 R"("outputs":[{"name":"a","parameters":{"binary_data":true}},{"name":"b"}]})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->request.binary_output);
  ASSERT_TRUE(r->timeout.has_value());
  EXPECT_EQ(r->timeout->count(), 250);
  ASSERT_EQ(r->request.outputs.size(), 2u);
  EXPECT_TRUE(r->request.outputs[0].binary);
  EXPECT_FALSE(r->request.outputs[1].binary);
  EXPECT_THAT(ErrorOf(R"({"parameters":{"timeout":-5},"inputs":[]})"), HasSubstr("timeout"));
}

std::string WithBinary(const std::string& json, const std::string& raw) { return json + raw; }

TEST(InferCodecTest, TimeoutsAreCutToTheLongestOneAndNeverOverflow) {
  for (const char* ms : {"9223372036854775807", "9223372036854775806", "9007199254740992",
                         "18446744073709551615", "86400001"}) {
    auto r = DecodeJson(StrCat(R"({"parameters":{"timeout":)", ms, R"(},"inputs":[]})"));
    ASSERT_TRUE(r.ok()) << ms << ": " << r.status();
    EXPECT_EQ(*r->timeout, std::chrono::hours(24)) << ms;
  }
  for (const char* ms : {"0", "-1", "-9223372036854775808", "1.5", "1e30", "\"5000\"", "null"}) {
    EXPECT_THAT(ErrorOf(StrCat(R"({"parameters":{"timeout":)", ms, R"(},"inputs":[]})")),
                HasSubstr("request.parameters.timeout"))
        << ms;
  }
  // An integer beyond uint64 is refused by the JSON parser itself (a 400 all the same).
  EXPECT_THAT(ErrorOf(R"({"parameters":{"timeout":18446744073709551616},"inputs":[]})"),
              HasSubstr("number"));
}

// A claim of many elements with few values: refused by counting the values, before a buffer is
// made for the claim (every datatype, nested arrays too).
TEST(InferCodecTest, ClaimsTheDataDoesNotHoldAreRefusedBeforeAllocating) {
  auto budget = MemoryBudget::Create(64 << 20);
  const std::string padding(4 << 20,
                            ' ');  // a body large enough for the claim to pass the size check
  for (const char* type :
       {"BOOL", "UINT8", "INT16", "UINT32", "INT64", "FP16", "FP32", "FP64", "BYTES"}) {
    const std::string value = std::string(type) == "BOOL"    ? "true"
                              : std::string(type) == "BYTES" ? "\"a\""
                                                             : "1";
    const std::string json = StrCat(R"({"inputs":[{"name":"t","datatype":")", type,
                                    R"(","shape":[1000000],"data":[)", value, "]}]}", padding);
    auto r = DecodeInferRequest(Body(json), std::nullopt, nullptr, budget.get());
    ASSERT_FALSE(r.ok()) << type;
    EXPECT_THAT(r.status().message(), HasSubstr("needs 1000000 elements but data has 1")) << type;
    EXPECT_EQ(budget->used(), 0u) << type;
    EXPECT_EQ(budget->refusals(), 0u) << type;
  }
  const std::string nested = StrCat(
      R"({"inputs":[{"name":"t","datatype":"FP64","shape":[3,300000],"data":[[1],[2],[3]]}]})",
      padding);
  EXPECT_THAT(DecodeInferRequest(Body(nested), std::nullopt, nullptr).status().message(),
              HasSubstr("needs 900000 elements but data has 3"));
  // Too deep to count is the converter's error, as before.
  std::string deep = R"({"inputs":[{"name":"t","datatype":"FP32","shape":[100000],"data":)";
  deep += std::string(80, '[') + "1" + std::string(80, ']') + "}]}" + padding;
  EXPECT_THAT(DecodeInferRequest(Body(deep), std::nullopt, nullptr).status().message(),
              HasSubstr("nests too deeply"));
}

TEST(InferCodecTest, IdsAndNamesAreBoundedByWhatTheMeshFormCarries) {
  const std::string longest(kMaxNameBytes, 'n');
  const std::string longer(kMaxNameBytes + 1, 'n');
  EXPECT_TRUE(DecodeJson(StrCat(R"({"id":")", longest, R"(","inputs":[]})")).ok());
  EXPECT_THAT(ErrorOf(StrCat(R"({"id":")", longer, R"(","inputs":[]})")),
              HasSubstr("id: 65536 bytes, more than 65535"));
  EXPECT_THAT(ErrorOf(StrCat(R"({"inputs":[{"name":")", longer,
                             R"(","datatype":"FP32","shape":[1],"data":[1]}]})")),
              HasSubstr("inputs[0].name: 65536 bytes"));
  EXPECT_THAT(ErrorOf(StrCat(R"({"inputs":[],"outputs":[{"name":")", longer, R"("}]})")),
              HasSubstr("outputs[0].name: 65536 bytes"));
}

TEST(InferCodecTest, DecodedTensorsHoldTheirMemoryFromTheBudget) {
  auto budget = MemoryBudget::Create(64 << 20);
  {
    auto r = DecodeInferRequest(
        Body(R"({"inputs":[{"name":"a","datatype":"FP64","shape":[3],"data":[1,2,3]},)"
             R"({"name":"s","datatype":"BYTES","shape":[2],"data":["ab","c"]}]})"),
        std::nullopt, nullptr, budget.get());
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(budget->used(), 3u * 8 + (4 + 2) + (4 + 1));
    const Tensor kept = r->request.inputs[0];
    r = absl::InternalError("dropped");
    EXPECT_EQ(budget->used(), 3u * 8);  // the copy kept alive still holds its bytes
  }
  EXPECT_EQ(budget->used(), 0u);

  // 1 M values (2 MB of JSON) decode to 8 MB of FP64: more than a 4 MiB budget ever lends.
  auto small = MemoryBudget::Create(4 << 20);
  std::string values = "[0";
  for (int i = 1; i < 1000000; ++i) values += ",0";
  const std::string json = StrCat(
      R"({"inputs":[{"name":"a","datatype":"FP64","shape":[1000000],"data":)", values, "]}]}");
  auto r = DecodeInferRequest(Body(json), std::nullopt, nullptr, small.get());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kOutOfRange) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("memory_budget_mb"));
  EXPECT_THAT(r.status().message(), HasSubstr("binary tensor data extension"));
  EXPECT_EQ(small->used(), 0u);
  // Within a larger budget, the parse and the tensor are reserved while decoding; the tensor
  // keeps its 8 MB.
  auto large = MemoryBudget::Create(256 << 20);
  r = DecodeInferRequest(Body(json), std::nullopt, nullptr, large.get());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(large->used(), 8000000u);
  // The same in use: RESOURCE_EXHAUSTED, retry later.
  auto busy = MemoryBudget::Create(64 << 20);
  absl::StatusOr<MemoryBudget::Reservation> hog = busy->Reserve(50 << 20);
  ASSERT_TRUE(hog.ok());
  EXPECT_EQ(DecodeInferRequest(Body(json), std::nullopt, nullptr, busy.get()).status().code(),
            absl::StatusCode::kResourceExhausted);
}

TEST(InferCodecTest, AnswerSizeBoundsTheEncodedAnswer) {
  // Every datatype at its widest text: the bound holds and is not far above.
  InferResponse response;
  response.model_name = "m\x01\xff";
  response.id = std::string(100, '"');
  response.served_by = "node";
  auto add = [&](const char* name, DataType type, std::string raw) {
    const int64_t n =
        type == DataType::kBytes ? 2 : static_cast<int64_t>(raw.size() / ElementSize(type));
    response.outputs.push_back(Tensor::Owned(name, type, {n}, std::move(raw)));
    response.binary.push_back(false);
  };
  auto filled = [](size_t bytes, unsigned char b) {
    return std::string(bytes, static_cast<char>(b));
  };
  add("b", DataType::kBool, filled(100, 0));
  add("u8", DataType::kUint8, filled(100, 0xff));
  add("i8", DataType::kInt8, filled(100, 0x80));
  add("i64", DataType::kInt64, filled(800, 0x80));
  add("u64", DataType::kUint64, filled(800, 0xff));
  std::string floats;
  for (int i = 0; i < 100; ++i) {
    const float f = -1.00000075e-36f;
    floats.append(reinterpret_cast<const char*>(&f), 4);
  }
  add("f32", DataType::kFp32, floats);
  std::string doubles;
  for (int i = 0; i < 100; ++i) {
    const double d = -2.2250738585072014e-308;
    doubles.append(reinterpret_cast<const char*>(&d), 8);
  }
  add("f64", DataType::kFp64, doubles);
  std::string strings;
  AppendBytesElement(strings, filled(50, 0x01));
  AppendBytesElement(strings, "");
  add("s", DataType::kBytes, strings);
  const EncodedSize size = EncodedInferResponseSize(response);
  const EncodedInferResponse enc = EncodeInferResponse(response);
  EXPECT_LE(enc.json.size(), size.json);
  EXPECT_GT(enc.json.size(), size.json / 2);
  EXPECT_EQ(size.binary, 0u);
  // Binary outputs count exactly, outside the JSON.
  response.binary.assign(response.outputs.size(), true);
  const EncodedSize binary = EncodedInferResponseSize(response);
  uint64_t raw = 0;
  for (const Tensor& t : response.outputs) raw += t.data().size();
  EXPECT_EQ(binary.binary, raw);
  EXPECT_LE(EncodeInferResponse(response).json.size(), binary.json);
}

TEST(InferCodecTest, BinaryInputsViewTheBodyWithoutCopying) {
  const std::string json =
      R"({"inputs":[{"name":"h","shape":[2],"datatype":"FP16","parameters":{"binary_data_size":4}},)"
      R"({"name":"s","shape":[1],"datatype":"BYTES","parameters":{"binary_data_size":7}}]})";
  std::string raw;
  const uint16_t halves[2] = {FloatToHalf(1.5f), FloatToHalf(-2.0f)};
  raw.append(reinterpret_cast<const char*>(halves), 4);
  AppendBytesElement(raw, "abc");
  auto body = Body(WithBinary(json, raw));
  auto r = DecodeInferRequest(body, json.size(), nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  const Tensor& h = r->request.inputs[0];
  EXPECT_EQ(h.data().data(), body->data() + json.size());  // a view, not a copy
  uint16_t second;  // the view need not be aligned, so read it bytewise
  std::memcpy(&second, h.data().data() + 2, 2);
  EXPECT_EQ(HalfToFloat(second), -2.0f);
  EXPECT_EQ(r->request.inputs[1].data().size(), 7u);
}

TEST(InferCodecTest, RejectsBadBinaryFraming) {
  const std::string json =
      R"({"inputs":[{"name":"x","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":8}}]})";
  // Header length larger than the body.
  auto r1 = DecodeInferRequest(Body(json), json.size() + 100, nullptr);
  ASSERT_FALSE(r1.ok());
  EXPECT_THAT(std::string(r1.status().message()), HasSubstr("Inference-Header-Content-Length is"));
  // Truncated binary data.
  auto r2 = DecodeInferRequest(Body(json + "1234"), json.size(), nullptr);
  ASSERT_FALSE(r2.ok());
  EXPECT_THAT(std::string(r2.status().message()),
              HasSubstr("input 'x'.parameters.binary_data_size: 8 bytes run past the end"));
  // Extra bytes after the last tensor.
  auto r3 = DecodeInferRequest(Body(json + "12345678xx"), json.size(), nullptr);
  ASSERT_FALSE(r3.ok());
  EXPECT_THAT(std::string(r3.status().message()), HasSubstr("2 bytes of binary data follow"));
  // binary_data_size without the header.
  auto r4 = DecodeInferRequest(Body(json + "12345678"), std::nullopt, nullptr);
  EXPECT_FALSE(r4.ok());
  // A BYTES element whose length runs past the end.
  const std::string bjson =
      R"({"inputs":[{"name":"s","shape":[1],"datatype":"BYTES","parameters":{"binary_data_size":6}}]})";
  std::string raw;
  const uint32_t len = 99;
  raw.append(reinterpret_cast<const char*>(&len), 4);
  raw += "ab";
  auto r5 = DecodeInferRequest(Body(bjson + raw), bjson.size(), nullptr);
  ASSERT_FALSE(r5.ok());
  EXPECT_THAT(std::string(r5.status().message()),
              HasSubstr("tensor 's': BYTES element 0 has length 99"));
  // Binary data size that disagrees with the shape.
  const std::string sjson =
      R"({"inputs":[{"name":"x","shape":[3],"datatype":"FP32","parameters":{"binary_data_size":8}}]})";
  auto r6 = DecodeInferRequest(Body(sjson + "12345678"), sjson.size(), nullptr);
  ASSERT_FALSE(r6.ok());
  EXPECT_THAT(std::string(r6.status().message()), HasSubstr("needs 12 bytes but 8"));
}

TEST(InferCodecTest, HeaderLengthZeroMeansTheBodyIsTheSingleInput) {
  TensorConfig fp{"window", DataType::kFp32, {-1, 2}, false};
  std::string raw(16, '\0');
  auto body = Body(raw);
  auto r = DecodeInferRequest(body, 0, &fp);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->request.inputs[0].shape(), (Shape{2, 2}));
  EXPECT_EQ(r->request.inputs[0].data().data(), body->data());
  EXPECT_FALSE(DecodeInferRequest(Body(std::string(12, '\0')), 0, &fp).ok());

  TensorConfig img{"image", DataType::kBytes, {1}, true};
  auto b = DecodeInferRequest(Body("\xff\xd8jpeg"), 0, &img);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->request.inputs[0].data().substr(4), "\xff\xd8jpeg");
  EXPECT_FALSE(DecodeInferRequest(Body("x"), 0, nullptr).ok());
}

TEST(InferCodecTest, EncodesBinaryOutputsAndEscapes) {
  InferResponse resp;
  resp.model_name = "m\"q";
  resp.model_version = "1";
  resp.id = "id-1";
  resp.outputs.push_back(Tensor::Owned("a", DataType::kFp32, {1}, std::string(4, '\0')));
  resp.outputs.push_back(Tensor::Owned("b", DataType::kInt32, {1}, std::string(4, '\0')));
  resp.binary = {true, false};
  EncodedInferResponse enc = EncodeInferResponse(resp);
  EXPECT_EQ(enc.json,
            R"({"model_name":"m\"q","model_version":"1","id":"id-1","outputs":[)"
            R"({"name":"a","datatype":"FP32","shape":[1],"parameters":{"binary_data_size":4}},)"
            R"({"name":"b","datatype":"INT32","shape":[1],"data":[0]}]})");
  ASSERT_EQ(enc.binary.size(), 1u);
  EXPECT_EQ(enc.binary[0].name(), "a");
  EXPECT_EQ(EncodeError("bad \"x\"\n"), R"({"error":"bad \"x\"\n"})");
}

TEST(InferCodecTest, FloatOutputsAreTheShortestTextsAndNonFiniteOnesAreStrings) {
  const std::vector<float> values = {0.0f,
                                     -0.0f,
                                     0.1f,
                                     1.0f / 3.0f,
                                     -std::numeric_limits<float>::min(),  // the longest text
                                     std::numeric_limits<float>::denorm_min(),
                                     std::numeric_limits<float>::max(),
                                     std::numeric_limits<float>::infinity(),
                                     -std::numeric_limits<float>::infinity(),
                                     std::numeric_limits<float>::quiet_NaN()};
  InferResponse resp;
  resp.model_name = "m";
  std::string raw(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float));
  resp.outputs.push_back(Tensor::Owned("f", DataType::kFp32, {10}, raw));
  resp.outputs.push_back(Tensor::Owned("e", DataType::kFp32, {0}, ""));
  EXPECT_EQ(EncodeInferResponse(resp).json,
            R"({"model_name":"m","outputs":[{"name":"f","datatype":"FP32","shape":[10],"data":)"
            R"([0,-0,0.1,0.33333334,-1.1754944e-38,1e-45,3.4028235e+38,"Infinity","-Infinity",)"
            R"("NaN"]},{"name":"e","datatype":"FP32","shape":[0],"data":[]}]})");

  // Many values, each of the longest text a float has: the array's room is reserved right.
  const uint32_t longest_bits = 0x83aa242d;
  float longest;
  std::memcpy(&longest, &longest_bits, sizeof longest);
  const std::vector<float> many(10000, longest);  // more than one block of values
  resp.outputs.clear();
  resp.outputs.push_back(Tensor::Owned(
      "g", DataType::kFp32, {10000},
      std::string(reinterpret_cast<const char*>(many.data()), many.size() * sizeof(float))));
  const std::string json = EncodeInferResponse(resp).json;
  std::string want = "[";
  for (size_t i = 0; i < many.size(); ++i) want += i ? ",-1.00000075e-36" : "-1.00000075e-36";
  EXPECT_THAT(json, HasSubstr(want + "]}]}"));
}

TEST(InferCodecTest, NonUtf8BytesAreEscapedToValidJson) {
  InferResponse resp;
  resp.model_name = "m";
  std::string raw;
  AppendBytesElement(raw, std::string("\xff\x01ok\xc3\xa9", 6));
  resp.outputs.push_back(Tensor::Owned("s", DataType::kBytes, {1}, raw));
  const std::string json = EncodeInferResponse(resp).json;
  EXPECT_THAT(json, HasSubstr(R"("\u00ff\u0001ok)"
                              "\xc3\xa9\""));
}

}  // namespace
}  // namespace hivemesh

namespace hivemesh {
namespace {

TEST(ResponseCodecTest, ResponsesDecodeFromJsonAndBinary) {
  InferResponse resp;
  resp.model_name = "m";
  resp.model_version = "2";
  resp.id = "q";
  resp.outputs.push_back(
      Tensor::Owned("a", DataType::kInt32, {2}, std::string("\x01\0\0\0\x02\0\0\0", 8)));
  resp.outputs.push_back(Tensor::Owned("b", DataType::kFp32, {1}, std::string("\0\0\x80\x3f", 4)));
  for (bool binary : {false, true}) {
    resp.binary = {binary, binary};
    EncodedInferResponse enc = EncodeInferResponse(resp);
    std::string wire = enc.json;
    for (const Tensor& t : enc.binary) wire.append(t.data());
    auto d = DecodeInferResponse(std::make_shared<const std::string>(wire),
                                 binary ? std::optional<uint64_t>(enc.json.size()) : std::nullopt);
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(d->model_name, "m");
    EXPECT_EQ(d->model_version, "2");
    EXPECT_EQ(d->id, "q");
    ASSERT_EQ(d->outputs.size(), 2u);
    EXPECT_EQ(d->outputs[0].data(), resp.outputs[0].data());
    EXPECT_EQ(d->outputs[1].data(), resp.outputs[1].data());
  }
  EXPECT_FALSE(DecodeInferResponse(std::make_shared<const std::string>("{}"), std::nullopt).ok());
  EXPECT_FALSE(
      DecodeInferResponse(std::make_shared<const std::string>("{\"outputs\":[]}"), 99).ok());
}

TEST(ErrorBodyTest, DecodeErrorReadsWhatEncodeErrorWrites) {
  const std::string message = "model \"m\" is not\\here";
  EXPECT_EQ(DecodeError(EncodeError(message)), message);
  EXPECT_EQ(DecodeError("not json"), std::nullopt);
  EXPECT_EQ(DecodeError(R"({"error":5})"), std::nullopt);
  EXPECT_EQ(DecodeError(R"(["error"])"), std::nullopt);
  EXPECT_EQ(DecodeError(""), std::nullopt);
}

}  // namespace
}  // namespace hivemesh
