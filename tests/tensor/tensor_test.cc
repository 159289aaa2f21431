#include "tensor/tensor.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

namespace hivemesh {
namespace {

TEST(DataTypeTest, NamesRoundTripAndSizes) {
  for (int i = 0; i < kNumDataTypes; ++i) {
    const auto t = static_cast<DataType>(i);
    EXPECT_EQ(DataTypeFromName(DataTypeName(t)), t);
  }
  EXPECT_EQ(ElementSize(DataType::kBool), 1u);
  EXPECT_EQ(ElementSize(DataType::kFp16), 2u);
  EXPECT_EQ(ElementSize(DataType::kFp64), 8u);
  EXPECT_EQ(ElementSize(DataType::kBytes), 0u);
  EXPECT_FALSE(DataTypeFromName("fp32").has_value());  // case-sensitive
  EXPECT_FALSE(DataTypeFromName("FP33").has_value());
}

TEST(DataTypeTest, HalfConversions) {
  EXPECT_EQ(FloatToHalf(1.0f), 0x3c00);
  EXPECT_EQ(FloatToHalf(-2.0f), 0xc000);
  EXPECT_EQ(FloatToHalf(65504.0f), 0x7bff);
  EXPECT_EQ(FloatToHalf(1e6f), 0x7c00);  // overflow to infinity
  EXPECT_EQ(FloatToHalf(0.0f), 0x0000);
  EXPECT_EQ(HalfToFloat(0x3555), 0.333251953125f);
  EXPECT_EQ(HalfToFloat(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_TRUE(std::isnan(HalfToFloat(FloatToHalf(NAN))));
  for (float f : {0.5f, 3.140625f, -100.25f, 6.1035156e-05f}) {
    EXPECT_EQ(HalfToFloat(FloatToHalf(f)), f) << f;
  }
  EXPECT_EQ(FloatToBf16(1.0f), 0x3f80);
  EXPECT_EQ(Bf16ToFloat(0x4049), 3.140625f);
}

TEST(TensorTest, ElementCountRejectsNegativeAndOverflow) {
  EXPECT_EQ(*ElementCount(Shape{2, 3, 4}), 24);
  EXPECT_EQ(*ElementCount(Shape{}), 1);
  EXPECT_EQ(*ElementCount(Shape{0, 5}), 0);
  EXPECT_FALSE(ElementCount(Shape{2, -1}).ok());
  const auto huge = ElementCount(Shape{1 << 30, 1 << 30, 1 << 30});
  ASSERT_FALSE(huge.ok());
  EXPECT_NE(huge.status().message().find("2^40"), std::string::npos);
  // At most kMaxRank dimensions, whatever their product.
  EXPECT_TRUE(ElementCount(Shape(kMaxRank, 1)).ok());
  const auto deep = ElementCount(Shape(kMaxRank + 1, 1));
  ASSERT_FALSE(deep.ok());
  EXPECT_NE(deep.status().message().find("more than 32 dimensions"), std::string::npos);
}

TEST(TensorTest, ValidatesFixedSizeData) {
  Tensor ok = Tensor::Owned("x", DataType::kInt32, {2}, std::string(8, '\0'));
  EXPECT_TRUE(ValidateTensorData(ok).ok());
  Tensor bad = Tensor::Owned("x", DataType::kInt32, {3}, std::string(8, '\0'));
  const absl::Status s = ValidateTensorData(bad);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("'x'"), std::string::npos);
  EXPECT_NE(s.message().find("needs 12 bytes"), std::string::npos);
}

TEST(TensorTest, BytesElements) {
  std::string raw;
  AppendBytesElement(raw, "abc");
  AppendBytesElement(raw, "");
  Tensor t = Tensor::Owned("s", DataType::kBytes, {2}, raw);
  EXPECT_TRUE(ValidateTensorData(t).ok());
  std::vector<std::string> seen;
  ForEachBytesElement(t.data(), [&](std::string_view e) { seen.emplace_back(e); });
  EXPECT_EQ(seen, (std::vector<std::string>{"abc", ""}));

  // An element whose length runs past the end.
  std::string overrun = raw;
  const uint32_t big = 1000;
  std::memcpy(overrun.data(), &big, 4);
  const absl::Status s = ValidateBytesRaw(overrun, 2);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("runs past the end"), std::string::npos);
  EXPECT_FALSE(ValidateBytesRaw(raw, 3).ok());        // too few elements
  EXPECT_FALSE(ValidateBytesRaw(raw + "x", 2).ok());  // trailing bytes
}

TEST(TensorTest, ViewSharesOwner) {
  auto body = std::make_shared<const std::string>("0123456789abcdef");
  Tensor t = Tensor::View("v", DataType::kUint8, {4}, body, std::string_view(*body).substr(4, 4));
  EXPECT_EQ(t.data().data(), body->data() + 4);  // no copy
  EXPECT_EQ(body.use_count(), 2);
}

}  // namespace
}  // namespace hivemesh
