// The gRPC <-> InferRequest/InferResponse conversions (src/api/grpc/grpc_convert.h): every
// datatype typed and raw, and the bad inputs the gRPC API must name.
#include "api/grpc/grpc_convert.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <limits>

namespace hivemesh::grpc_api {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Input = inference::ModelInferRequest::InferInputTensor;

Input* AddInput(inference::ModelInferRequest& req, const std::string& name,
                const std::string& datatype, std::vector<int64_t> shape) {
  Input* in = req.add_inputs();
  in->set_name(name);
  in->set_datatype(datatype);
  for (int64_t d : shape) in->add_shape(d);
  return in;
}

template <typename Field, typename T>
void AddAll(Field* field, std::initializer_list<T> values) {
  field->Add(values.begin(), values.end());
}

template <typename T>
std::vector<T> Values(const Tensor& t) {
  std::vector<T> out(t.data().size() / sizeof(T));
  std::memcpy(out.data(), t.data().data(), out.size() * sizeof(T));
  return out;
}

// The response for `req`'s inputs as outputs, the way the identity backend answers.
InferResponse Echo(const InferRequest& req) {
  InferResponse r;
  r.model_name = req.model_name;
  r.model_version = "1";
  r.id = req.id;
  r.outputs = req.inputs;
  r.served_by = "node-a";
  return r;
}

TEST(GrpcConvertTest, TypedContentsOfEveryDatatypeRoundTrip) {
  inference::ModelInferRequest req;
  req.set_model_name("m");
  req.set_id("42");
  AddAll(AddInput(req, "b", "BOOL", {3})->mutable_contents()->mutable_bool_contents(),
         {true, false, true});
  AddAll(AddInput(req, "u8", "UINT8", {2})->mutable_contents()->mutable_uint_contents(),
         std::initializer_list<uint32_t>{0, 255});
  AddInput(req, "u16", "UINT16", {1})->mutable_contents()->add_uint_contents(65535);
  AddInput(req, "u32", "UINT32", {1})->mutable_contents()->add_uint_contents(4000000000u);
  AddInput(req, "u64", "UINT64", {1})->mutable_contents()->add_uint64_contents(1ull << 60);
  AddAll(AddInput(req, "i8", "INT8", {2})->mutable_contents()->mutable_int_contents(),
         std::initializer_list<int32_t>{-128, 127});
  AddInput(req, "i16", "INT16", {1})->mutable_contents()->add_int_contents(-30000);
  AddInput(req, "i32", "INT32", {1})->mutable_contents()->add_int_contents(-7);
  AddInput(req, "i64", "INT64", {1})->mutable_contents()->add_int64_contents(-(1ll << 50));
  AddAll(AddInput(req, "f32", "FP32", {2, 2})->mutable_contents()->mutable_fp32_contents(),
         std::initializer_list<float>{1.5f, -2.f, 3.f, 4.25f});
  AddInput(req, "f64", "FP64", {1})->mutable_contents()->add_fp64_contents(0.1);
  AddAll(AddInput(req, "s", "BYTES", {2})->mutable_contents()->mutable_bytes_contents(),
         std::initializer_list<std::string>{"ab", std::string("\0c", 2)});

  absl::StatusOr<DecodedRequest> d = FromProto(req);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_FALSE(d->raw_outputs);
  const std::vector<Tensor>& in = d->request.inputs;
  ASSERT_EQ(in.size(), 12u);
  EXPECT_EQ(d->request.model_name, "m");
  EXPECT_EQ(d->request.id, "42");
  EXPECT_THAT(Values<uint8_t>(in[0]), ElementsAre(1, 0, 1));
  EXPECT_THAT(Values<uint8_t>(in[1]), ElementsAre(0, 255));
  EXPECT_THAT(Values<uint16_t>(in[2]), ElementsAre(65535));
  EXPECT_THAT(Values<uint32_t>(in[3]), ElementsAre(4000000000u));
  EXPECT_THAT(Values<int8_t>(in[5]), ElementsAre(-128, 127));
  EXPECT_THAT(Values<int64_t>(in[8]), ElementsAre(-(1ll << 50)));
  EXPECT_THAT(Values<float>(in[9]), ElementsAre(1.5f, -2.f, 3.f, 4.25f));
  EXPECT_EQ(in[9].shape(), (Shape{2, 2}));
  EXPECT_EQ(in[11].data(), std::string("\2\0\0\0ab\2\0\0\0\0c", 12));

  inference::ModelInferResponse out;
  ToProto(Echo(d->request), /*raw=*/false, &out);
  EXPECT_EQ(out.id(), "42");
  EXPECT_EQ(out.parameters().at("served_by").string_param(), "node-a");
  ASSERT_EQ(out.outputs_size(), 12);
  EXPECT_EQ(out.raw_output_contents_size(), 0);
  for (int i = 0; i < 12; ++i) {
    // Every typed field comes back as it was sent.
    EXPECT_EQ(out.outputs(i).contents().SerializeAsString(),
              req.inputs(i).contents().SerializeAsString())
        << req.inputs(i).name();
    EXPECT_EQ(out.outputs(i).datatype(), req.inputs(i).datatype());
  }
}

TEST(GrpcConvertTest, RawInputsGiveRawOutputs) {
  inference::ModelInferRequest req;
  req.set_model_name("m");
  AddInput(req, "x", "FP16", {2});
  const uint16_t halves[2] = {FloatToHalf(1.f), FloatToHalf(-2.f)};
  const std::string sent(reinterpret_cast<const char*>(halves), 4);
  req.add_raw_input_contents(sent);
  absl::StatusOr<DecodedRequest> d = FromProto(req);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_TRUE(d->raw_outputs);
  // The bytes were taken from the message, not copied.
  EXPECT_TRUE(req.raw_input_contents(0).empty());
  inference::ModelInferResponse out;
  ToProto(Echo(d->request), /*raw=*/true, &out);
  ASSERT_EQ(out.raw_output_contents_size(), 1);
  EXPECT_EQ(out.raw_output_contents(0), sent);
  EXPECT_FALSE(out.outputs(0).has_contents());
}

TEST(GrpcConvertTest, Fp16OutputsForceRawForAll) {
  InferResponse r;
  r.outputs.push_back(Tensor::Owned("a", DataType::kFp32, {1}, std::string(4, '\0')));
  r.outputs.push_back(Tensor::Owned("h", DataType::kFp16, {1}, std::string(2, '\0')));
  inference::ModelInferResponse out;
  ToProto(r, /*raw=*/false, &out);
  EXPECT_EQ(out.raw_output_contents_size(), 2);
}

TEST(GrpcConvertTest, ParametersSetTimeoutAndRawOutputs) {
  inference::ModelInferRequest req;
  req.set_model_name("m");
  (*req.mutable_parameters())["timeout"].set_int64_param(250);
  (*req.mutable_parameters())["binary_data_output"].set_bool_param(true);
  absl::StatusOr<DecodedRequest> d = FromProto(req);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->timeout, std::chrono::milliseconds(250));
  EXPECT_TRUE(d->raw_outputs);
  (*req.mutable_parameters())["timeout"].set_string_param("soon");
  EXPECT_THAT(std::string(FromProto(req).status().message()), HasSubstr("parameters.timeout"));
}

TEST(GrpcConvertTest, TimeoutsAreCutToTheLongestOne) {
  inference::ModelInferRequest req;
  req.set_model_name("m");
  auto& timeout = (*req.mutable_parameters())["timeout"];
  for (int64_t ms : {std::numeric_limits<int64_t>::max(), std::numeric_limits<int64_t>::max() - 1,
                     int64_t{1} << 53, int64_t{86400001}}) {
    timeout.set_int64_param(ms);
    absl::StatusOr<DecodedRequest> d = FromProto(req);
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(d->timeout, std::chrono::hours(24)) << ms;
  }
  timeout.set_uint64_param(std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(FromProto(req)->timeout, std::chrono::hours(24));
  timeout.set_uint64_param(40);
  EXPECT_EQ(FromProto(req)->timeout, std::chrono::milliseconds(40));
  for (int64_t ms : {int64_t{0}, int64_t{-1}, std::numeric_limits<int64_t>::min()}) {
    timeout.set_int64_param(ms);
    EXPECT_THAT(std::string(FromProto(req).status().message()), HasSubstr("parameters.timeout"));
  }
  timeout.set_double_param(5000);
  EXPECT_THAT(std::string(FromProto(req).status().message()), HasSubstr("parameters.timeout"));
}

TEST(GrpcConvertTest, DecodedTensorsAndTheMessageAreReservedFromTheBudget) {
  inference::ModelInferRequest req;
  req.set_model_name("m");
  AddInput(req, "x", "FP32", {1000});
  req.add_raw_input_contents(std::string(4000, '\0'));
  auto budget = MemoryBudget::Create(64 << 20);
  const inference::ModelInferRequest copy = req;
  {
    const uint64_t message = req.ByteSizeLong();  // the raw bytes included
    absl::StatusOr<DecodedRequest> d = FromProto(req, budget.get());
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(budget->used(), message);
  }
  req = copy;
  EXPECT_EQ(budget->used(), 0u);
  // Typed contents: each element at its datatype's width.
  inference::ModelInferRequest typed;
  typed.set_model_name("m");
  Input* u8 = AddInput(typed, "u8", "UINT8", {1000});
  for (int i = 0; i < 1000; ++i) u8->mutable_contents()->add_uint_contents(7);
  {
    absl::StatusOr<DecodedRequest> d = FromProto(typed, budget.get());
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(budget->used(), 1000 + typed.ByteSizeLong());  // converted, and the message
  }
  // A message the budget can never hold is OUT_OF_RANGE, naming memory_budget_mb.
  auto small = MemoryBudget::Create(2048, 512);
  absl::StatusOr<DecodedRequest> d = FromProto(req, small.get());
  EXPECT_EQ(d.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(std::string(d.status().message()), HasSubstr("memory_budget_mb"));
}

TEST(GrpcConvertTest, AnswerBytesBoundsTheMessageAndItsWireForm) {
  InferResponse r;
  r.model_name = "m";
  auto add = [&](const char* name, DataType type, size_t bytes, char fill) {
    const int64_t n = static_cast<int64_t>(bytes / ElementSize(type));
    r.outputs.push_back(Tensor::Owned(name, type, {n}, std::string(bytes, fill)));
  };
  add("u8", DataType::kUint8, 1000, '\xff');
  add("i32", DataType::kInt32, 4000, '\xff');  // -1: ten bytes as a varint
  add("i64", DataType::kInt64, 8000, '\xff');
  add("f32", DataType::kFp32, 4000, 1);
  add("f64", DataType::kFp64, 8000, 1);
  add("b", DataType::kBool, 1000, 1);
  for (bool raw : {false, true}) {
    inference::ModelInferResponse out;
    ToProto(r, raw, &out);
    const uint64_t used = out.SpaceUsedLong() + out.ByteSizeLong();
    EXPECT_LE(used, AnswerBytes(r, raw)) << raw;
    EXPECT_GT(used, AnswerBytes(r, raw) / 2) << raw;
  }
}

// The message of FromProto(req)'s error, which must be INVALID_ARGUMENT (on a copy: FromProto
// takes raw contents out of the message).
std::string Error(inference::ModelInferRequest req) {
  absl::StatusOr<DecodedRequest> d = FromProto(req);
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(d.status().message());
}

TEST(GrpcConvertTest, BadInputsAreNamed) {
  inference::ModelInferRequest req;
  EXPECT_THAT(Error(req), HasSubstr("model_name"));
  req.set_model_name("m");

  inference::ModelInferRequest both = req;
  AddInput(both, "x", "FP32", {1})->mutable_contents()->add_fp32_contents(1);
  both.add_raw_input_contents(std::string(4, '\0'));
  EXPECT_THAT(Error(both), HasSubstr("input 'x': has both raw_input_contents and typed"));

  inference::ModelInferRequest partial = req;
  AddInput(partial, "x", "FP32", {1});
  AddInput(partial, "y", "FP32", {1});
  partial.add_raw_input_contents(std::string(4, '\0'));
  EXPECT_THAT(Error(partial), HasSubstr("raw_input_contents has 1 entries for 2 inputs"));

  inference::ModelInferRequest size = req;
  AddInput(size, "x", "INT32", {2, 2});
  size.add_raw_input_contents(std::string(12, '\0'));
  EXPECT_THAT(Error(size), HasSubstr("raw_input_contents[0]: tensor 'x'"));

  inference::ModelInferRequest count = req;
  AddInput(count, "x", "FP32", {3})->mutable_contents()->add_fp32_contents(1);
  EXPECT_THAT(Error(count), HasSubstr("shape [3] needs 3 elements, contents.fp32_contents has 1"));

  inference::ModelInferRequest field = req;
  AddInput(field, "x", "INT64", {1})->mutable_contents()->add_int_contents(1);
  EXPECT_THAT(Error(field), HasSubstr("INT64 data belongs in contents.int64_contents"));

  inference::ModelInferRequest range = req;
  AddInput(range, "x", "UINT8", {1})->mutable_contents()->add_uint_contents(300);
  EXPECT_THAT(Error(range), HasSubstr("value 300 does not fit"));

  inference::ModelInferRequest type = req;
  AddInput(type, "x", "FLOAT", {1});
  EXPECT_THAT(Error(type), HasSubstr("unknown datatype 'FLOAT'"));

  inference::ModelInferRequest bf16 = req;
  AddInput(bf16, "x", "BF16", {1})->mutable_contents()->add_fp32_contents(1);
  EXPECT_THAT(Error(bf16), HasSubstr("BF16 has no typed contents"));

  inference::ModelInferRequest shape = req;
  AddInput(shape, "x", "FP32", {-1});
  EXPECT_THAT(Error(shape), HasSubstr("input 'x'"));
}

TEST(GrpcConvertTest, StatusCodesCarryOver) {
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
  const grpc::Status s = ToGrpcStatus(absl::NotFoundError("model 'x' is not served"));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(s.error_message(), "model 'x' is not served");
  EXPECT_EQ(ToGrpcStatus(absl::ResourceExhaustedError("full")).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(ToGrpcStatus(absl::UnimplementedError("no")).error_code(),
            grpc::StatusCode::UNIMPLEMENTED);
}

}  // namespace
}  // namespace hivemesh::grpc_api
