// The mesh tensor form: requests and answers round-trip with their tensors viewed in the body
// (8-byte aligned), and every malformed body is refused with a message saying what is wrong.
#include "codec/mesh_tensors.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <functional>

namespace hivemesh {
namespace {

using ::testing::HasSubstr;

std::shared_ptr<const std::string> Wire(const MeshTensorsMessage& m) {
  std::string wire = m.head;
  for (const Tensor& t : m.tensors) wire.append(t.data());
  return std::make_shared<const std::string>(std::move(wire));
}

bool Within(std::string_view inner, const std::string& outer) {
  return inner.data() >= outer.data() && inner.data() + inner.size() <= outer.data() + outer.size();
}

InferRequest TwoInputs() {
  InferRequest r;
  r.id = "req-1";
  r.inputs.push_back(Tensor::Owned("x", DataType::kFp64, {2, 3}, std::string(48, '\x07')));
  std::string raw;
  AppendBytesElement(raw, "hi");
  AppendBytesElement(raw, std::string("\0\xff", 2));
  r.inputs.push_back(Tensor::Owned("words", DataType::kBytes, {2}, raw));
  r.outputs.push_back({"y", true});
  r.outputs.push_back({"z", false});
  return r;
}

TEST(MeshTensorsTest, ARequestRoundTripsWithItsTensorsViewedInTheBody) {
  const InferRequest sent = TwoInputs();
  MeshTensorsMessage m = EncodeMeshRequest(sent);
  EXPECT_EQ(m.head.size() % 8, 0u) << "the data starts 8-byte aligned";
  ASSERT_EQ(m.tensors.size(), 2u);
  EXPECT_EQ(m.tensors[0].data().data(), sent.inputs[0].data().data()) << "not copied";
  auto body = Wire(m);
  EXPECT_EQ(m.size(), body->size());

  absl::StatusOr<InferRequest> got = DecodeMeshRequest(body);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->id, "req-1");
  ASSERT_EQ(got->inputs.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(got->inputs[i].name(), sent.inputs[i].name());
    EXPECT_EQ(got->inputs[i].type(), sent.inputs[i].type());
    EXPECT_EQ(got->inputs[i].shape(), sent.inputs[i].shape());
    EXPECT_EQ(got->inputs[i].data(), sent.inputs[i].data());
    EXPECT_TRUE(Within(got->inputs[i].data(), *body)) << "a view of the body, not a copy";
  }
  EXPECT_TRUE(got->inputs[0].AlignedFor<double>());
  ASSERT_EQ(got->outputs.size(), 2u);
  EXPECT_EQ(got->outputs[0].name, "y");
  EXPECT_EQ(got->outputs[1].name, "z");
  EXPECT_FALSE(got->outputs[0].binary) << "the origin's client chooses that";

  // No id, no inputs, no outputs asked for, a scalar.
  InferRequest bare;
  bare.inputs.push_back(Tensor::Owned("s", DataType::kInt32, {}, std::string(4, '\x01')));
  got = DecodeMeshRequest(Wire(EncodeMeshRequest(bare)));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->id, "");
  ASSERT_EQ(got->inputs.size(), 1u);
  EXPECT_TRUE(got->inputs[0].shape().empty());
  EXPECT_TRUE(got->outputs.empty());
}

TEST(MeshTensorsTest, AnAnswerRoundTripsWithWhoServedIt) {
  InferResponse sent;
  sent.model_name = "people-detector";
  sent.model_version = "3";
  sent.id = "q";
  sent.served_by = "cam-2";
  sent.outputs.push_back(Tensor::Owned("boxes", DataType::kFp32, {1, 4}, std::string(16, '\x02')));
  sent.outputs.push_back(Tensor::Owned("n", DataType::kInt64, {1}, std::string(8, '\x03')));
  auto body = Wire(EncodeMeshAnswer(sent));
  absl::StatusOr<InferResponse> got = DecodeMeshAnswer(body);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->model_name, "people-detector");
  EXPECT_EQ(got->model_version, "3");
  EXPECT_EQ(got->id, "q");
  EXPECT_EQ(got->served_by, "cam-2");
  ASSERT_EQ(got->outputs.size(), 2u);
  EXPECT_EQ(got->outputs[0].name(), "boxes");
  EXPECT_EQ(got->outputs[0].shape(), (Shape{1, 4}));
  EXPECT_EQ(got->outputs[0].data(), sent.outputs[0].data());
  EXPECT_EQ(got->outputs[1].type(), DataType::kInt64);
  EXPECT_EQ(got->outputs[1].data(), sent.outputs[1].data());
  EXPECT_TRUE(Within(got->outputs[1].data(), *body));
  EXPECT_TRUE(got->binary.empty());
}

TEST(MeshTensorsTest, CountsAreBoundedByWhatTheFormCanCarry) {
  // Up to kMeshMaxTensors of each fit and round-trip whole; one more does not fit, with a
  // reason (the encoder is never given it, so no count wraps).
  InferRequest req;
  const Tensor one = Tensor::Owned("x", DataType::kUint8, {1}, std::string(1, '\x05'));
  req.inputs.assign(kMeshMaxTensors, one);
  req.outputs.assign(kMeshMaxTensors, RequestedOutput{"y", false});
  ASSERT_TRUE(MeshRequestFits(req).ok());
  absl::StatusOr<InferRequest> got = DecodeMeshRequest(Wire(EncodeMeshRequest(req)));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->inputs.size(), kMeshMaxTensors);
  EXPECT_EQ(got->outputs.size(), kMeshMaxTensors);
  EXPECT_EQ(got->inputs.back().data(), "\x05");

  req.inputs.push_back(one);
  absl::Status over = MeshRequestFits(req);
  EXPECT_EQ(over.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(over.message()), HasSubstr("at most 65535 inputs; this one has 65536"));
  req.inputs.pop_back();
  req.outputs.push_back({"y", false});
  over = MeshRequestFits(req);
  EXPECT_EQ(over.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(over.message()),
              HasSubstr("at most 65535 outputs; this one asks for 65536"));

  InferResponse answer;
  answer.outputs.assign(kMeshMaxTensors, one);
  EXPECT_TRUE(MeshAnswerFits(answer));
  answer.outputs.push_back(one);
  EXPECT_FALSE(MeshAnswerFits(answer));
}

TEST(MeshTensorsTest, EveryTruncationIsRefusedWithAReason) {
  auto whole = Wire(EncodeMeshRequest(TwoInputs()));
  for (size_t n = 0; n < whole->size(); ++n) {
    absl::StatusOr<InferRequest> got =
        DecodeMeshRequest(std::make_shared<const std::string>(whole->substr(0, n)));
    ASSERT_FALSE(got.ok()) << "a body cut to " << n << " bytes";
    EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(got.status().message()), HasSubstr("mesh tensor form: "));
  }
  // One byte more than the tensors is refused too.
  absl::StatusOr<InferRequest> longer =
      DecodeMeshRequest(std::make_shared<const std::string>(*whole + "x"));
  ASSERT_FALSE(longer.ok());
  EXPECT_THAT(std::string(longer.status().message()), HasSubstr("bytes follow the last tensor"));
  EXPECT_FALSE(DecodeMeshRequest(nullptr).ok());
}

// The request's bytes with `edit` applied to its head.
std::shared_ptr<const std::string> Edited(const InferRequest& r,
                                          const std::function<void(std::string&)>& edit) {
  MeshTensorsMessage m = EncodeMeshRequest(r);
  edit(m.head);
  return Wire(m);
}

template <typename T>
std::string Why(const absl::StatusOr<T>& r) {
  return r.ok() ? "accepted" : std::string(r.status().message());
}

TEST(MeshTensorsTest, MalformedHeadsAreRefusedWithWhatIsWrong) {
  InferRequest one;
  one.inputs.push_back(Tensor::Owned("x", DataType::kFp32, {2}, std::string(8, '\0')));
  // Head: magic(4) kind(1) id(2+0) count(2) | name(2+1) type(1) rank(1) dim(8) size(8) | ...
  constexpr size_t kType = 4 + 1 + 2 + 2 + 3;
  constexpr size_t kDim = kType + 2;
  EXPECT_THAT(Why(DecodeMeshRequest(Edited(one, [](std::string& h) { h[0] = '{'; }))),
              HasSubstr("not in this form"));
  EXPECT_THAT(Why(DecodeMeshRequest(Edited(one, [](std::string& h) { h[3] = 2; }))),
              HasSubstr("version 2 is not known"));
  // The version a body of another release says, read before decoding (the node answers 415).
  EXPECT_EQ(MeshFormVersionOf(*Wire(EncodeMeshRequest(one))), kMeshFormVersion);
  EXPECT_EQ(MeshFormVersionOf(std::string("HMT\x02rest", 7)), 2);
  EXPECT_EQ(MeshFormVersionOf("{\"inputs\":[]}"), std::nullopt);
  EXPECT_EQ(MeshFormVersionOf("HM"), std::nullopt);
  EXPECT_THAT(Why(DecodeMeshRequest(Edited(one, [](std::string& h) { h[4] = 'A'; }))),
              HasSubstr("an answer was sent as a request"));
  EXPECT_THAT(Why(DecodeMeshAnswer(Wire(EncodeMeshRequest(one)))),
              HasSubstr("a request was sent as an answer"));
  EXPECT_THAT(Why(DecodeMeshRequest(Edited(one, [](std::string& h) { h[kType] = 14; }))),
              HasSubstr("'x' has an unknown datatype (14)"));
  EXPECT_THAT(Why(DecodeMeshRequest(Edited(one, [](std::string& h) { h[kType + 1] = 33; }))),
              HasSubstr("'x' has rank 33"));
  // Shape [3] of FP32 needs 12 bytes; 8 are declared and sent.
  EXPECT_THAT(Why(DecodeMeshRequest(Edited(one, [](std::string& h) { h[kDim] = 3; }))),
              HasSubstr("needs 12 bytes but 8 were given"));
  const int64_t negative = -2;
  EXPECT_THAT(Why(DecodeMeshRequest(
                  Edited(one, [&](std::string& h) { std::memcpy(&h[kDim], &negative, 8); }))),
              HasSubstr("negative dimension"));
  // A byte size beyond the body.
  EXPECT_THAT(Why(DecodeMeshRequest(Edited(one, [](std::string& h) { h[kDim + 8] = 9; }))),
              HasSubstr("the data of 'x' runs past the end of the body"));
  // BYTES elements must lie within the tensor's data.
  InferRequest words;
  words.inputs.push_back(Tensor::Owned("w", DataType::kBytes, {1}, std::string("\x09\0\0\0ab", 6)));
  EXPECT_FALSE(DecodeMeshRequest(Wire(EncodeMeshRequest(words))).ok());
}

}  // namespace
}  // namespace hivemesh
