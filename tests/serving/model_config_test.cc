#include "serving/model_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace hivemesh {
namespace {

using ::testing::HasSubstr;

std::string ErrorOf(const std::string& yaml) {
  auto c = ParseModelConfig(yaml, "m", "repo/m/config.yaml");
  EXPECT_FALSE(c.ok()) << yaml;
  return std::string(c.status().message());
}

TEST(ModelConfigTest, ParsesEveryField) {
  auto c = ParseModelConfig(R"(backend: onnx
platform: onnx_onnxv1
instances: 2
queue_limit: 9
dataPolicy: local-only
inputs:
  - {name: window, datatype: FP32, shape: [-1, 128]}
  - {name: extra, datatype: BYTES, shape: [1], optional: true}
outputs:
  - {name: scores, datatype: FP32, shape: [-1, 2]}
options:
  file: model.onnx
  threads: 1
)",
                            "vib", "f.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->name, "vib");
  EXPECT_EQ(c->backend, "onnx");
  EXPECT_EQ(c->platform, "onnx_onnxv1");
  EXPECT_EQ(c->instances, 2);
  EXPECT_EQ(c->queue_limit, 9);
  EXPECT_EQ(c->data_policy, DataPolicy::kLocalOnly);
  ASSERT_EQ(c->inputs.size(), 2u);
  EXPECT_EQ(c->inputs[0].dims, (Shape{-1, 128}));
  EXPECT_TRUE(c->inputs[1].optional);
  EXPECT_EQ(c->inputs[1].type, DataType::kBytes);
  EXPECT_EQ(c->Option("file"), "model.onnx");
  EXPECT_EQ(c->Option("threads"), "1");
  EXPECT_EQ(c->Option("missing", "dflt"), "dflt");
}

TEST(ModelConfigTest, DefaultsComeFromTheNode) {
  auto c = ParseModelConfig(
      "backend: identity\ninputs: [{name: a, datatype: FP32, shape: [1]}]\n"
      "outputs: [{name: b, datatype: FP32, shape: [1]}]\n",
      "m", "f", 3, 17);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->instances, 3);
  EXPECT_EQ(c->queue_limit, 17);
  EXPECT_EQ(c->platform, "identity");
  EXPECT_EQ(c->data_policy, DataPolicy::kMesh) << "a model may go anywhere unless it says so";
}

TEST(ModelConfigTest, DataPolicyNames) {
  for (DataPolicy p : {DataPolicy::kMesh, DataPolicy::kZone, DataPolicy::kLocalOnly}) {
    EXPECT_EQ(DataPolicyFromName(DataPolicyName(p)), p);
  }
  const std::string io =
      "inputs: [{name: a, datatype: FP32, shape: [1]}]\noutputs: [{name: b, datatype: FP32, "
      "shape: [1]}]\n";
  auto zone = ParseModelConfig("backend: x\n" + io + "dataPolicy: zone\n", "m", "f");
  ASSERT_TRUE(zone.ok());
  EXPECT_EQ(zone->data_policy, DataPolicy::kZone);
  EXPECT_EQ(ErrorOf("backend: x\n" + io + "dataPolicy: local\n"),
            "repo/m/config.yaml: dataPolicy: 'local' is not one of local-only, zone, mesh");
}

TEST(ModelConfigTest, ErrorsNameTheFileAndTheField) {
  const std::string io =
      "inputs: [{name: a, datatype: FP32, shape: [1]}]\noutputs: [{name: b, datatype: FP32, shape: "
      "[1]}]\n";
  EXPECT_EQ(ErrorOf(io), "repo/m/config.yaml: backend: is required");
  EXPECT_EQ(ErrorOf("backend: x\ninputs: [{name: a, datatype: FP33, shape: [1]}]\n"),
            "repo/m/config.yaml: inputs[0].datatype: unknown datatype 'FP33'");
  EXPECT_EQ(ErrorOf("backend: x\n" + io + "instances: many\n"),
            "repo/m/config.yaml: instances: 'many' is not an integer");
  EXPECT_EQ(ErrorOf("backend: x\n" + io + "instances: 0\n"),
            "repo/m/config.yaml: instances: 0 is outside [1, 256]");
  EXPECT_EQ(ErrorOf("backend: x\ninputs: [{name: a, datatype: FP32, shape: [1, -2]}]\n"),
            "repo/m/config.yaml: inputs[0].shape[1]: -2 is outside [-1, 1073741824]");
  EXPECT_EQ(
      ErrorOf("backend: x\ninputs: [{name: a, datatype: FP32}]\n"),
      "repo/m/config.yaml: inputs[0].shape: is required, as a list of dimensions (-1 = variable)");
  EXPECT_EQ(ErrorOf("backend: x\n" + io + "colour: blue\n"),
            "repo/m/config.yaml: colour: unknown field");
  EXPECT_EQ(ErrorOf("backend: x\ninputs: [{name: a, datatype: FP32, shape: [1]}, {name: a, "
                    "datatype: FP32, shape: [1]}]\n"),
            "repo/m/config.yaml: inputs[1].name: duplicate tensor name 'a'");
  EXPECT_THAT(ErrorOf("backend: [unclosed\n"), HasSubstr("repo/m/config.yaml: invalid YAML"));
  EXPECT_EQ(
      ErrorOf("backend: x\n" + std::string("inputs: [{name: a, datatype: FP32, shape: [1]}]\n")),
      "repo/m/config.yaml: outputs: is required, as a non-empty list of tensors");
}

TEST(ModelConfigTest, ParsesBatching) {
  auto c = ParseModelConfig(R"(backend: identity
inputs: [{name: a, datatype: FP32, shape: [-1, 4]}]
outputs: [{name: b, datatype: FP32, shape: [-1, 4]}]
max_batch_size: 16
preferred_batch_sizes: [8, 4, 8, 16]
max_queue_delay_us: 250
)",
                            "m", "f");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->batching.enabled());
  EXPECT_EQ(c->batching.max_batch_size, 16);
  EXPECT_EQ(c->batching.preferred_batch_sizes, (std::vector<int>{4, 8, 16})) << "sorted, unique";
  EXPECT_EQ(c->batching.max_queue_delay_us, 250);
  auto none = ParseModelConfig(
      "backend: identity\ninputs: [{name: a, datatype: FP32, shape: [1]}]\n"
      "outputs: [{name: b, datatype: FP32, shape: [1]}]\n",
      "m", "f");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->batching.enabled()) << "no batching unless asked for";
  EXPECT_EQ(none->batching.max_queue_delay_us, 0);
}

TEST(ModelConfigTest, BatchingErrorsNameTheField) {
  const std::string io =
      "inputs: [{name: a, datatype: FP32, shape: [-1, 4]}]\noutputs: [{name: b, datatype: FP32, "
      "shape: [-1]}]\n";
  EXPECT_EQ(ErrorOf("backend: hog-people\n" + io + "max_batch_size: 4\n"),
            "repo/m/config.yaml: max_batch_size: backend 'hog-people' cannot batch requests (only "
            "onnx, identity can); remove max_batch_size or set it to 0");
  EXPECT_EQ(ErrorOf("backend: onnx\n" + io + "max_batch_size: -1\n"),
            "repo/m/config.yaml: max_batch_size: -1 is outside [0, 65536]");
  EXPECT_EQ(ErrorOf("backend: onnx\n" + io + "max_batch_size: 4\npreferred_batch_sizes: [2, 8]\n"),
            "repo/m/config.yaml: preferred_batch_sizes[1]: 8 is larger than max_batch_size 4");
  EXPECT_EQ(ErrorOf("backend: onnx\n" + io + "max_batch_size: 4\npreferred_batch_sizes: [0]\n"),
            "repo/m/config.yaml: preferred_batch_sizes[0]: 0 is outside [1, 65536]");
  EXPECT_EQ(ErrorOf("backend: onnx\n" + io + "max_batch_size: 4\npreferred_batch_sizes: 2\n"),
            "repo/m/config.yaml: preferred_batch_sizes: must be a list of batch sizes");
  EXPECT_EQ(ErrorOf("backend: onnx\n" + io + "preferred_batch_sizes: [2]\n"),
            "repo/m/config.yaml: preferred_batch_sizes: needs max_batch_size > 0");
  EXPECT_EQ(ErrorOf("backend: onnx\n" + io + "max_queue_delay_us: 100\n"),
            "repo/m/config.yaml: max_queue_delay_us: needs max_batch_size > 0");
  EXPECT_EQ(ErrorOf("backend: onnx\n" + io + "max_batch_size: 4\nmax_queue_delay_us: soon\n"),
            "repo/m/config.yaml: max_queue_delay_us: 'soon' is not an integer");
  EXPECT_EQ(ErrorOf("backend: identity\ninputs: [{name: a, datatype: FP32, shape: [2, 4]}]\n"
                    "outputs: [{name: b, datatype: FP32, shape: [-1]}]\nmax_batch_size: 4\n"),
            "repo/m/config.yaml: inputs[0].shape: must start with -1 (the batch dimension) when "
            "max_batch_size > 0, not [2,4]");
  EXPECT_EQ(ErrorOf("backend: identity\ninputs: [{name: a, datatype: FP32, shape: [-1]}]\n"
                    "outputs: [{name: b, datatype: FP32, shape: []}]\nmax_batch_size: 4\n"),
            "repo/m/config.yaml: outputs[0].shape: must start with -1 (the batch dimension) when "
            "max_batch_size > 0, not []");
}

TEST(ModelConfigTest, ShapeMatching) {
  EXPECT_TRUE(ShapeMatches(Shape{-1, 3}, Shape{7, 3}));
  EXPECT_FALSE(ShapeMatches(Shape{-1, 3}, Shape{7, 4}));
  EXPECT_FALSE(ShapeMatches(Shape{-1}, Shape{1, 1}));
}

TEST(ModelConfigTest, RawBodyInputPicksTheSingleOrOnlyBytesInput) {
  ModelConfig c;
  c.inputs = {{"image", DataType::kBytes, {1}, true},
              {"pixels", DataType::kUint8, {-1, -1, 3}, true}};
  ASSERT_NE(RawBodyInput(c), nullptr);
  EXPECT_EQ(RawBodyInput(c)->name, "image");
  c.inputs.push_back({"other", DataType::kBytes, {1}, true});
  EXPECT_EQ(RawBodyInput(c), nullptr);
}

}  // namespace
}  // namespace hivemesh
