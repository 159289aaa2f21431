#include "serving/backends/onnx/onnx_backend.h"

#include <array>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numbers>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "serving/backend.h"
#include "serving/backends/backend_test_util.h"

namespace hivemesh {
namespace {

using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;
using testing_util::LoadModelConfig;
using testing_util::ModelDir;

constexpr int kWindow = 128;

// Synthetic accelerometer windows, drawn like tools/gen_vibration_model.py draws its training
// data (but from a different random generator, so these are unseen windows).
class VibrationSource {
 public:
  explicit VibrationSource(uint32_t seed) : rng_(seed) {}

  std::vector<float> Normal() {
    std::vector<double> x = Shaft();
    return {x.begin(), x.end()};
  }

  // Normal plus a bearing-defect signature: periodic impulses ringing at a high resonance.
  std::vector<float> Fault() {
    std::vector<double> x = Shaft();
    const double period = kWindow / (f0_ * Uniform(3.0, 5.0));
    const double resonance = Uniform(30.0, 55.0);
    const double decay = Uniform(2.0, 5.0);
    const double strength = amp_ * Uniform(0.8, 1.6);
    for (double hit = Uniform(0, period); hit < kWindow; hit += period) {
      for (int t = static_cast<int>(std::ceil(hit)); t < kWindow; ++t) {
        const double dt = t - hit;
        x[t] += strength * std::exp(-dt / decay) * std::sin(2 * kPi * resonance * dt / kWindow);
      }
    }
    return {x.begin(), x.end()};
  }

 private:
  static constexpr double kPi = std::numbers::pi;

  double Uniform(double lo, double hi) { return std::uniform_real_distribution<>(lo, hi)(rng_); }

  std::vector<double> Shaft() {
    f0_ = Uniform(3.0, 6.0);
    amp_ = Uniform(0.5, 2.0);
    const double rel2 = Uniform(0.1, 0.4), rel3 = Uniform(0.0, 0.2);
    const double p1 = Uniform(0, 2 * kPi), p2 = Uniform(0, 2 * kPi), p3 = Uniform(0, 2 * kPi);
    std::normal_distribution<> noise(0.0, Uniform(0.05, 0.25) * amp_);
    std::vector<double> x(kWindow);
    for (int t = 0; t < kWindow; ++t) {
      const double w = 2 * kPi * f0_ * t / kWindow;
      x[t] = amp_ * (std::sin(w + p1) + rel2 * std::sin(2 * w + p2) + rel3 * std::sin(3 * w + p3)) +
             noise(rng_);
    }
    return x;
  }

  std::mt19937 rng_;
  double f0_ = 0, amp_ = 0;
};

Tensor WindowTensor(const std::vector<std::vector<float>>& windows) {
  std::string data;
  for (const auto& w : windows) data.append(reinterpret_cast<const char*>(w.data()), w.size() * 4);
  return Tensor::Owned("window", DataType::kFp32, {static_cast<int64_t>(windows.size()), kWindow},
                       std::move(data));
}

class OnnxBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    RegisterBuiltinBackends(registry_);
    absl::StatusOr<ModelConfig> config = LoadModelConfig("vibration-anomaly");
    ASSERT_TRUE(config.ok()) << config.status();
    config_ = *config;
  }

  absl::StatusOr<std::unique_ptr<Backend>> Load(const ModelConfig& config,
                                                std::string version_path = "") {
    if (version_path.empty()) version_path = ModelDir("vibration-anomaly") + "/1";
    const BackendFactory* factory = registry_.Find(config.backend);
    if (factory == nullptr) return absl::NotFoundError("no backend " + config.backend);
    return (*factory)(BackendContext{config, version_path});
  }

  // Runs `windows` as one batch; returns the [N,2] scores row by row.
  std::vector<std::array<float, 2>> Scores(Backend& backend,
                                           const std::vector<std::vector<float>>& windows) {
    const std::vector<Tensor> inputs = {WindowTensor(windows)};
    std::vector<Tensor> outputs;
    const absl::Status s = backend.Execute(inputs, &outputs);
    EXPECT_TRUE(s.ok()) << s;
    if (outputs.size() != 1) {
      ADD_FAILURE() << "expected one output, got " << outputs.size();
      return {};
    }
    const Tensor& scores = outputs[0];
    EXPECT_EQ(scores.name(), "scores");
    EXPECT_EQ(scores.type(), DataType::kFp32);
    EXPECT_EQ(scores.shape(), (Shape{static_cast<int64_t>(windows.size()), 2}));
    std::vector<std::array<float, 2>> rows;
    const std::span<const float> values = scores.As<float>();
    for (size_t i = 0; i + 1 < values.size(); i += 2) rows.push_back({values[i], values[i + 1]});
    return rows;
  }

  BackendRegistry registry_;
  ModelConfig config_;
};

TEST_F(OnnxBackendTest, BuiltinsRegisterEveryBackend) {
  EXPECT_THAT(registry_.Names(), UnorderedElementsAre("cascade", "hog-people", "identity", "onnx"));
}

TEST_F(OnnxBackendTest, ClassifiesNormalAndFaultWindows) {
  absl::StatusOr<std::unique_ptr<Backend>> backend = Load(config_);
  ASSERT_TRUE(backend.ok()) << backend.status();
  VibrationSource source(42);

  const auto normal = Scores(**backend, {source.Normal()});
  ASSERT_EQ(normal.size(), 1u);
  EXPECT_GT(normal[0][0], 0.5f) << "p_normal of a normal window";
  EXPECT_NEAR(normal[0][0] + normal[0][1], 1.0f, 1e-5);

  const auto fault = Scores(**backend, {source.Fault()});
  ASSERT_EQ(fault.size(), 1u);
  EXPECT_GT(fault[0][1], 0.5f) << "p_fault of a fault window";
}

TEST_F(OnnxBackendTest, AccuracyOnUnseenWindows) {
  absl::StatusOr<std::unique_ptr<Backend>> backend = Load(config_);
  ASSERT_TRUE(backend.ok()) << backend.status();
  VibrationSource source(7);
  std::vector<std::vector<float>> normal, fault;
  for (int i = 0; i < 100; ++i) {
    normal.push_back(source.Normal());
    fault.push_back(source.Fault());
  }
  int correct_normal = 0, correct_fault = 0;
  for (const auto& row : Scores(**backend, normal)) correct_normal += row[0] > 0.5f;
  for (const auto& row : Scores(**backend, fault)) correct_fault += row[1] > 0.5f;
  // The generator reports ~98% held-out accuracy over both fault kinds.
  EXPECT_GE(correct_normal, 90);
  EXPECT_GE(correct_fault, 90);
}

TEST_F(OnnxBackendTest, BatchesOfAnySize) {
  absl::StatusOr<std::unique_ptr<Backend>> backend = Load(config_);
  ASSERT_TRUE(backend.ok()) << backend.status();
  VibrationSource source(1);
  const std::vector<std::vector<float>> batch = {source.Normal(), source.Fault(), source.Normal(),
                                                 source.Fault()};
  const auto rows = Scores(**backend, batch);
  ASSERT_EQ(rows.size(), 4u);
  for (const auto& row : rows) EXPECT_NEAR(row[0] + row[1], 1.0f, 1e-5);

  // A batch row scores the same as the window alone.
  const auto single = Scores(**backend, {batch[2]});
  ASSERT_EQ(single.size(), 1u);
  EXPECT_NEAR(single[0][0], rows[2][0], 1e-5);

  // And the net adapts back and forth between batch sizes.
  EXPECT_EQ(Scores(**backend, batch).size(), 4u);
}

TEST_F(OnnxBackendTest, MissingInputIsInvalidArgument) {
  absl::StatusOr<std::unique_ptr<Backend>> backend = Load(config_);
  ASSERT_TRUE(backend.ok()) << backend.status();
  std::vector<Tensor> outputs;
  const absl::Status s = (*backend)->Execute({}, &outputs);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("input 'window'"));
}

TEST_F(OnnxBackendTest, WrongWindowLengthIsInvalidArgument) {
  absl::StatusOr<std::unique_ptr<Backend>> backend = Load(config_);
  ASSERT_TRUE(backend.ok()) << backend.status();
  const std::vector<Tensor> inputs = {
      Tensor::Owned("window", DataType::kFp32, {1, 64}, std::string(64 * 4, '\0'))};
  std::vector<Tensor> outputs;
  const absl::Status s = (*backend)->Execute(inputs, &outputs);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("'window' [1,64]"));
}

TEST_F(OnnxBackendTest, MissingFileNamesOptionsFile) {
  ModelConfig config = config_;
  config.options["file"] = "nope.onnx";
  const absl::Status s = Load(config).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("options.file: "));
  EXPECT_THAT(s.message(), HasSubstr("nope.onnx"));
}

TEST_F(OnnxBackendTest, NotAnOnnxFileNamesOptionsFile) {
  const std::string dir = ::testing::TempDir() + "/onnx_backend_test_bad";
  std::filesystem::create_directories(dir);
  { std::ofstream(dir + "/model.onnx") << "this is not protobuf"; }
  const absl::Status s = Load(config_, dir).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("options.file: "));
  EXPECT_THAT(s.message(), HasSubstr("cannot load the ONNX model"));
}

TEST_F(OnnxBackendTest, NonFp32InputNamesTheField) {
  ModelConfig config = config_;
  config.inputs[0].type = DataType::kInt32;
  const absl::Status s = Load(config).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("inputs[0].datatype"));
  EXPECT_THAT(s.message(), HasSubstr("FP32 only"));
}

TEST_F(OnnxBackendTest, UnknownNamesAreCaughtAtLoad) {
  ModelConfig wrong_input = config_;
  wrong_input.inputs[0].name = "samples";
  absl::Status s = Load(wrong_input).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("inputs[0].name: 'samples' is not an input"));

  ModelConfig wrong_output = config_;
  wrong_output.outputs[0].name = "probabilities";
  s = Load(wrong_output).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("outputs[0].name: 'probabilities' is not an output"));
  EXPECT_THAT(s.message(), HasSubstr("its outputs: scores"));
}

TEST_F(OnnxBackendTest, ShapeMismatchesAreCaughtAtLoad) {
  ModelConfig wrong_output = config_;
  wrong_output.outputs[0].dims = {-1, 3};
  absl::Status s = Load(wrong_output).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("outputs[0].shape"));
  EXPECT_THAT(s.message(), HasSubstr("[1,2]"));

  ModelConfig wrong_input = config_;
  wrong_input.inputs[0].dims = {-1, 100};
  s = Load(wrong_input).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("inputs: the ONNX model does not run"));
}

}  // namespace
}  // namespace hivemesh

namespace hivemesh {
namespace {

// A binary request body puts a tensor at any byte offset; the backend must read it correctly
// (and without misaligned float access) from there.
TEST_F(OnnxBackendTest, MisalignedInputFromABinaryBodyGivesTheSameScores) {
  absl::StatusOr<std::unique_ptr<Backend>> backend = Load(config_);
  ASSERT_TRUE(backend.ok()) << backend.status();
  VibrationSource source(9);
  const std::vector<float> window = source.Fault();
  const std::vector<std::array<float, 2>> aligned = Scores(**backend, {window});

  auto body = std::make_shared<std::string>(1, 'x');  // one byte of "JSON header" first
  body->append(reinterpret_cast<const char*>(window.data()), window.size() * sizeof(float));
  const std::string_view data = std::string_view(*body).substr(1);
  const std::vector<Tensor> inputs = {
      Tensor::View("window", DataType::kFp32, {1, kWindow}, body, data)};
  ASSERT_FALSE(inputs[0].AlignedFor<float>());
  std::vector<Tensor> outputs;
  ASSERT_TRUE((*backend)->Execute(inputs, &outputs).ok());
  ASSERT_EQ(outputs.size(), 1u);
  ASSERT_EQ(aligned.size(), 1u);
  EXPECT_EQ(outputs[0].As<float>()[0], aligned[0][0]);
  EXPECT_EQ(outputs[0].As<float>()[1], aligned[0][1]);
}

}  // namespace
}  // namespace hivemesh
