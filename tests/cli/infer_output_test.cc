#include "cli/infer_output.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>

namespace hivemesh::cli {
namespace {

using ::testing::HasSubstr;

template <typename T>
Tensor Make(DataType type, Shape shape, std::vector<T> values) {
  std::string raw(values.size() * sizeof(T), '\0');
  if (!raw.empty()) std::memcpy(raw.data(), values.data(), raw.size());
  return Tensor::Owned("t", type, std::move(shape), std::move(raw));
}

TEST(FormatTensorValuesTest, EveryDatatypeReadsBack) {
  EXPECT_EQ(FormatTensorValues(Make<float>(DataType::kFp32, {3}, {1.5f, -2, 0.1f})),
            "1.5, -2, 0.1");
  EXPECT_EQ(FormatTensorValues(Make<double>(DataType::kFp64, {1}, {1e300})), "1e+300");
  EXPECT_EQ(FormatTensorValues(Make<int32_t>(DataType::kInt32, {2}, {-7, 2147483647})),
            "-7, 2147483647");
  EXPECT_EQ(FormatTensorValues(Make<uint64_t>(DataType::kUint64, {1}, {18446744073709551615u})),
            "18446744073709551615");
  EXPECT_EQ(FormatTensorValues(Make<int8_t>(DataType::kInt8, {2}, {-128, 5})), "-128, 5");
  EXPECT_EQ(FormatTensorValues(Make<uint8_t>(DataType::kUint8, {2}, {255, 0})), "255, 0");
  EXPECT_EQ(FormatTensorValues(Make<uint8_t>(DataType::kBool, {2}, {1, 0})), "true, false");
  EXPECT_EQ(FormatTensorValues(Make<uint16_t>(DataType::kFp16, {1}, {FloatToHalf(0.5f)})), "0.5");
  EXPECT_EQ(FormatTensorValues(Make<uint16_t>(DataType::kBf16, {1}, {FloatToBf16(-2.0f)})), "-2");
  EXPECT_EQ(FormatTensorValues(Make<float>(DataType::kFp32, {0}, {})), "(none)");
}

TEST(FormatTensorValuesTest, BytesAreQuotedEscapedAndCut) {
  std::string raw;
  AppendBytesElement(raw, "person");
  AppendBytesElement(raw, std::string("a\"b\x01", 4));
  AppendBytesElement(raw, std::string(100, 'z'));
  const Tensor t = Tensor::Owned("labels", DataType::kBytes, {3}, raw);
  const std::string s = FormatTensorValues(t);
  EXPECT_THAT(s, HasSubstr(R"("person", "a\"b\x01", "zzz)"));
  EXPECT_THAT(s, HasSubstr("zzz...\""));
  EXPECT_LT(s.size(), 80u);
}

TEST(FormatTensorValuesTest, LongValuesAreAbbreviatedAndRowsGrouped) {
  std::vector<float> many(100);
  for (size_t i = 0; i < many.size(); ++i) many[i] = static_cast<float>(i);
  EXPECT_EQ(FormatTensorValues(Make<float>(DataType::kFp32, {100}, many)),
            "0, 1, 2, 3, 4, 5, 6, ..., 99 (100 values)");
  // Boxes [N,4] as groups; more than 4 groups abbreviated.
  EXPECT_EQ(FormatTensorValues(Make<float>(DataType::kFp32, {1, 4}, {552, 259, 79, 160})),
            "[552, 259, 79, 160]");
  EXPECT_EQ(FormatTensorValues(Make<float>(DataType::kFp32, {25, 4}, many)),
            "[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], ..., [96, 97, 98, 99] (25 values)");
}

TEST(ReadInferResponseTest, JsonAndBinaryOutputs) {
  absl::StatusOr<InferResponse> json = ReadInferResponse(
      R"({"model_name":"identity","model_version":"1","parameters":{"served_by":"node-b"},)"
      R"("outputs":[{"name":"OUTPUT0","datatype":"FP32","shape":[3],"data":[1,2,3]}]})",
      std::nullopt);
  ASSERT_TRUE(json.ok()) << json.status();
  EXPECT_EQ(json->served_by, "node-b");
  ASSERT_EQ(json->outputs.size(), 1u);
  EXPECT_EQ(FormatTensorValues(json->outputs[0]), "1, 2, 3");

  const std::string head =
      R"({"outputs":[{"name":"OUTPUT0","datatype":"INT32","shape":[2],"parameters":{"binary_data_size":8}}]})";
  const int32_t values[2] = {-1, 7};
  absl::StatusOr<InferResponse> binary =
      ReadInferResponse(head + std::string(reinterpret_cast<const char*>(values), 8), head.size());
  ASSERT_TRUE(binary.ok()) << binary.status();
  EXPECT_EQ(FormatTensorValues(binary->outputs[0]), "-1, 7");
}

TEST(ReadInferResponseTest, AnUnreadableAnswerIsTheNodesFaultNotAUsageError) {
  absl::StatusOr<InferResponse> r = ReadInferResponse("<html>", std::nullopt);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInternal);
}

TEST(FormatInferResultTest, TableThenServedByAndLatency) {
  absl::StatusOr<InferResponse> r = ReadInferResponse(
      R"({"model_name":"identity","model_version":"1","parameters":{"served_by":"node-b"},)"
      R"("outputs":[{"name":"OUTPUT0","datatype":"FP32","shape":[3],"data":[1,2,3]}]})",
      std::nullopt);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(FormatInferResult(*r, "node-b", std::chrono::microseconds(1234)),
            "OUTPUT   DATATYPE  SHAPE  VALUES\n"
            "OUTPUT0  FP32      [3]    1, 2, 3\n"
            "\n"
            "served by node-b in 1.23 ms (model identity, version 1)\n");
  EXPECT_THAT(FormatInferResult(*r, "", std::chrono::microseconds(5)),
              HasSubstr("served by node-b in 5 us"))
      << "falls back to the response parameter";
}

}  // namespace
}  // namespace hivemesh::cli
