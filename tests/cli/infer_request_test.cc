#include "cli/infer_request.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>

#include "codec/infer_codec.h"

namespace hivemesh::cli {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TensorMetadata Input(std::string name, std::string datatype, std::vector<int64_t> shape) {
  return TensorMetadata{std::move(name), std::move(datatype), std::move(shape), false};
}

ModelMetadata Model(std::vector<TensorMetadata> inputs) {
  ModelMetadata m;
  m.name = "m";
  m.inputs = std::move(inputs);
  return m;
}

// The people-detector of models/: an optional BYTES image or raw pixels.
ModelMetadata PeopleDetector() {
  return Model({Input("image", "BYTES", {1}), Input("pixels", "UINT8", {-1, -1, 3})});
}

std::string Message(const absl::Status& s) { return std::string(s.message()); }

TEST(ParseDataValuesTest, CommaListAndFlatAndNestedJson) {
  absl::StatusOr<DataValues> list = ParseDataValues(" 1, -2.5 ,3e2 ");
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_THAT(list->tokens, ElementsAre("1", "-2.5", "3e2"));
  EXPECT_THAT(list->shape, ElementsAre(3));

  absl::StatusOr<DataValues> flat = ParseDataValues("[1, 2.5, true]");
  ASSERT_TRUE(flat.ok()) << flat.status();
  EXPECT_THAT(flat->tokens, ElementsAre("1", "2.5", "true"));
  EXPECT_THAT(flat->shape, ElementsAre(3));

  absl::StatusOr<DataValues> nested = ParseDataValues("[[1,2,3],[4,5,6]]");
  ASSERT_TRUE(nested.ok()) << nested.status();
  EXPECT_THAT(nested->tokens, ElementsAre("1", "2", "3", "4", "5", "6"));
  EXPECT_THAT(nested->shape, ElementsAre(2, 3));

  absl::StatusOr<DataValues> big = ParseDataValues("[18446744073709551615]");
  ASSERT_TRUE(big.ok()) << big.status();
  EXPECT_THAT(big->tokens, ElementsAre("18446744073709551615"));
}

TEST(ParseDataValuesTest, RefusesWhatIsNotRectangularNumbers) {
  for (const char* bad : {"", "  ", "1,,2", "1,", "[1,[2]]", "[[1],2]", "[[1,2],[3]]", "[\"a\"]",
                          "[1, 2", "[]", "[[]]", "[{\"a\":1}]"}) {
    absl::StatusOr<DataValues> r = ParseDataValues(bad);
    ASSERT_FALSE(r.ok()) << "'" << bad << "'";
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(Message(r.status()), HasSubstr("--data")) << bad;
  }
}

TEST(ResolveShapeTest, FillsTheOneVariableDimension) {
  const TensorMetadata window = Input("window", "FP32", {-1, 128});
  DataValues v;
  v.tokens.assign(256, "0");
  v.shape = {256};
  absl::StatusOr<std::vector<int64_t>> s = ResolveShape(window, v);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_THAT(*s, ElementsAre(2, 128));
  v.tokens.assign(100, "0");
  v.shape = {100};
  s = ResolveShape(window, v);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(Message(s.status()), HasSubstr("must be a multiple of 128"));
}

TEST(ResolveShapeTest, FixedShapesNeedTheExactCount) {
  const TensorMetadata fixed = Input("x", "INT32", {2, 2});
  DataValues v;
  v.tokens = {"1", "2", "3", "4"};
  v.shape = {4};
  absl::StatusOr<std::vector<int64_t>> s = ResolveShape(fixed, v);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_THAT(*s, ElementsAre(2, 2));
  v.tokens.pop_back();
  v.shape = {3};
  s = ResolveShape(fixed, v);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(Message(s.status()), "--data: input 'x' has shape [2,2] (4 values); got 3 values");
}

TEST(ResolveShapeTest, SeveralVariableDimensionsNeedNestedValues) {
  const TensorMetadata pixels = Input("pixels", "UINT8", {-1, -1, 3});
  absl::StatusOr<DataValues> flat = ParseDataValues("1,2,3,4,5,6");
  ASSERT_TRUE(flat.ok());
  absl::StatusOr<std::vector<int64_t>> s = ResolveShape(pixels, *flat);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(Message(s.status()), HasSubstr("2 variable dimensions"));
  absl::StatusOr<DataValues> nested = ParseDataValues("[[[1,2,3],[4,5,6]]]");
  ASSERT_TRUE(nested.ok());
  s = ResolveShape(pixels, *nested);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_THAT(*s, ElementsAre(1, 2, 3));
  // The nesting must agree with the fixed dimensions and the rank.
  absl::StatusOr<DataValues> wrong = ParseDataValues("[[[1,2],[4,5]]]");
  ASSERT_TRUE(wrong.ok());
  EXPECT_FALSE(ResolveShape(pixels, *wrong).ok());
  absl::StatusOr<DataValues> rank2 = ParseDataValues("[[1,2,3]]");
  ASSERT_TRUE(rank2.ok());
  EXPECT_FALSE(ResolveShape(pixels, *rank2).ok());
}

TEST(DataInputTest, TheOnlyNonBytesInputOrTheNamedOne) {
  const ModelMetadata people = PeopleDetector();
  absl::StatusOr<const TensorMetadata*> in = DataInput(people, "");
  ASSERT_TRUE(in.ok()) << in.status();
  EXPECT_EQ((*in)->name, "pixels");
  absl::StatusOr<const TensorMetadata*> image = ImageInput(people, "");
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ((*image)->name, "image");

  const ModelMetadata two = Model({Input("a", "FP32", {-1}), Input("b", "FP32", {-1})});
  absl::StatusOr<const TensorMetadata*> ambiguous = DataInput(two, "");
  ASSERT_FALSE(ambiguous.ok());
  EXPECT_THAT(Message(ambiguous.status()), HasSubstr("several non-BYTES inputs (a, b)"));
  absl::StatusOr<const TensorMetadata*> b = DataInput(two, "b");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ((*b)->name, "b");
  absl::StatusOr<const TensorMetadata*> missing = DataInput(two, "c");
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(Message(missing.status()), HasSubstr("has no input 'c' (its inputs: a, b)"));
  EXPECT_FALSE(DataInput(people, "image").ok()) << "--data cannot fill a BYTES input";
  EXPECT_FALSE(ImageInput(two, "").ok()) << "no BYTES input";
}

TEST(BuildDataRequestTest, IdentityBody) {
  const ModelMetadata identity = Model({Input("INPUT0", "FP32", {-1})});
  absl::StatusOr<std::string> body = BuildDataRequest(identity, "1,2.5,-3");
  ASSERT_TRUE(body.ok()) << body.status();
  EXPECT_EQ(*body,
            R"({"inputs":[{"name":"INPUT0","shape":[3],"datatype":"FP32","data":[1,2.5,-3]}]})");
  // The node's own decoder accepts it.
  absl::StatusOr<DecodedInferRequest> decoded =
      DecodeInferRequest(std::make_shared<const std::string>(*body), std::nullopt, nullptr);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  ASSERT_EQ(decoded->request.inputs.size(), 1u);
  EXPECT_EQ(decoded->request.inputs[0].shape(), (Shape{3}));
}

TEST(BuildDataRequestTest, ValuesAreCheckedAgainstTheDatatype) {
  struct Case {
    const char* datatype;
    const char* data;
    const char* json_or_error;  // the "data" array, or a piece of the error
  };
  const Case cases[] = {
      {"INT8", "-128,127", "[-128,127]"},
      {"INT8", "128", "out of range"},
      {"UINT8", "255,0", "[255,0]"},
      {"UINT8", "-1", "non-negative integer"},
      {"UINT16", "65536", "out of range"},
      {"INT64", "1.5", "not an integer"},
      {"UINT64", "18446744073709551615", "[18446744073709551615]"},
      {"BOOL", "true,0,1,false", "[true,false,true,false]"},
      {"BOOL", "yes", "not true, false, 1 or 0"},
      {"FP32", "1e39", "out of range"},
      {"FP32", "nan", "not a finite number"},
      {"FP64", "1e300", "[1e+300]"},
      {"FP16", "70000", "out of range"},
      {"BYTES", "1", "non-BYTES input"},
  };
  for (const Case& c : cases) {
    const ModelMetadata m = Model({Input("x", c.datatype, {-1})});
    absl::StatusOr<std::string> body = BuildDataRequest(m, c.data);
    const std::string expected = c.json_or_error;
    if (expected[0] == '[') {
      ASSERT_TRUE(body.ok()) << c.datatype << " " << c.data << ": " << body.status();
      EXPECT_THAT(*body, HasSubstr(R"("data":)" + expected)) << c.datatype;
    } else {
      ASSERT_FALSE(body.ok()) << c.datatype << " " << c.data << " gave " << *body;
      EXPECT_EQ(body.status().code(), absl::StatusCode::kInvalidArgument);
      EXPECT_THAT(Message(body.status()), HasSubstr(expected)) << c.datatype << " " << c.data;
    }
  }
}

TEST(BuildImageRequestTest, OneLengthPrefixedElementInTheBinaryExtension) {
  const std::string jpeg = std::string("\xFF\xD8\xFF\xE0", 4) + std::string(100, '\0') + "end";
  absl::StatusOr<BinaryRequestBody> r = BuildImageRequest(PeopleDetector(), jpeg);
  ASSERT_TRUE(r.ok()) << r.status();
  const std::string header = r->body.substr(0, r->header_length);
  EXPECT_EQ(header, R"({"inputs":[{"name":"image","shape":[1],"datatype":"BYTES","parameters":)"
                    R"({"binary_data_size":)" +
                        std::to_string(4 + jpeg.size()) + "}}]}");
  EXPECT_EQ(r->body.size(), r->header_length + 4 + jpeg.size());
  // Decoded by the node's codec: one BYTES element holding the file.
  absl::StatusOr<DecodedInferRequest> decoded =
      DecodeInferRequest(std::make_shared<const std::string>(r->body), r->header_length, nullptr);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  ASSERT_EQ(decoded->request.inputs.size(), 1u);
  const Tensor& t = decoded->request.inputs[0];
  EXPECT_EQ(t.name(), "image");
  EXPECT_EQ(t.type(), DataType::kBytes);
  std::vector<std::string> elements;
  ForEachBytesElement(t.data(), [&](std::string_view e) { elements.emplace_back(e); });
  ASSERT_EQ(elements.size(), 1u);
  EXPECT_EQ(elements[0], jpeg);
}

TEST(BuildImageRequestTest, VariableDimensionsBecomeOneAndSeveralElementsAreRefused) {
  const std::string png = "\x89PNG\r\n\x1A\n....";
  absl::StatusOr<BinaryRequestBody> r =
      BuildImageRequest(Model({Input("img", "BYTES", {-1})}), png);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(r->body.substr(0, r->header_length), HasSubstr(R"("shape":[1])"));
  absl::StatusOr<BinaryRequestBody> two =
      BuildImageRequest(Model({Input("img", "BYTES", {2})}), png);
  ASSERT_FALSE(two.ok());
  EXPECT_THAT(Message(two.status()), HasSubstr("takes 2 elements, not one image"));
}

TEST(IsJpegOrPngTest, Signatures) {
  EXPECT_TRUE(IsJpegOrPng("\xFF\xD8\xFF\xDB..."));
  EXPECT_TRUE(IsJpegOrPng("\x89PNG\r\n\x1A\n..."));
  EXPECT_FALSE(IsJpegOrPng("GIF89a"));
  EXPECT_FALSE(IsJpegOrPng(""));
}

}  // namespace
}  // namespace hivemesh::cli
