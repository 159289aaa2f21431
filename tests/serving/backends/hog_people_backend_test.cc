#include "serving/backends/hog_people/hog_people_backend.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "opencv2/core.hpp"
#include "opencv2/imgproc.hpp"
#include "serving/backend.h"
#include "serving/backends/backend_test_util.h"
#include "serving/backends/image/image_input.h"

namespace hivemesh {
namespace {

using ::testing::HasSubstr;
using testing_util::BytesTensor;
using testing_util::FindTensor;
using testing_util::LoadModelConfig;
using testing_util::ModelDir;

// A dark walking figure about 130 pixels tall, top of the head at `top`: head, torso, arms and
// legs. The default people detector fires on it like on a real pedestrian.
void DrawPerson(cv::Mat& image, cv::Point top, const cv::Scalar& colour) {
  constexpr double s = 1.3;
  auto at = [&](double x, double y) {
    return cv::Point(top.x + static_cast<int>(x * s), top.y + static_cast<int>(y * s));
  };
  cv::circle(image, at(0, 8), static_cast<int>(8 * s), colour, -1, cv::LINE_AA);
  cv::ellipse(image, at(0, 35), cv::Size(static_cast<int>(11 * s), static_cast<int>(20 * s)), 0, 0,
              360, colour, -1, cv::LINE_AA);
  const int leg = static_cast<int>(7 * s), arm = static_cast<int>(5 * s);
  cv::line(image, at(-5, 52), at(-9, 98), colour, leg, cv::LINE_AA);
  cv::line(image, at(5, 52), at(9, 98), colour, leg, cv::LINE_AA);
  cv::line(image, at(-10, 20), at(-14, 55), colour, arm, cv::LINE_AA);
  cv::line(image, at(10, 20), at(14, 55), colour, arm, cv::LINE_AA);
}

// Two figures on a plain background, 400x300; their head tops sit at (120,60) and (280,80).
cv::Mat TwoPeople() {
  cv::Mat image(300, 400, CV_8UC3, cv::Scalar(190, 190, 190));
  DrawPerson(image, {120, 60}, {40, 40, 40});
  DrawPerson(image, {280, 80}, {60, 50, 40});
  cv::GaussianBlur(image, image, {3, 3}, 0);
  return image;
}

// No people: gradients, a few boxes and circles (things with edges that are not pedestrians).
cv::Mat EmptyScene() {
  cv::Mat image(300, 400, CV_8UC3);
  for (int y = 0; y < image.rows; ++y) {
    for (int x = 0; x < image.cols; ++x) {
      image.at<cv::Vec3b>(y, x) =
          cv::Vec3b(static_cast<uchar>(x / 2), 120, static_cast<uchar>(y * 255 / 300));
    }
  }
  cv::rectangle(image, {30, 200, 120, 60}, {20, 30, 200}, -1);
  cv::circle(image, {300, 90}, 50, {230, 230, 230}, -1);
  return image;
}

Tensor PixelsTensor(const cv::Mat& bgr) {
  const cv::Mat compact = bgr.isContinuous() ? bgr : bgr.clone();
  return Tensor::Owned(
      "pixels", DataType::kUint8, {compact.rows, compact.cols, 3},
      std::string(reinterpret_cast<const char*>(compact.data), compact.total() * 3));
}

struct Result {
  std::vector<cv::Rect2f> boxes;
  std::vector<float> scores;
  int32_t count = -1;
};

class HogPeopleBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    RegisterHogPeopleBackend(registry_);
    absl::StatusOr<ModelConfig> config = LoadModelConfig("people-detector");
    ASSERT_TRUE(config.ok()) << config.status();
    config_ = *config;
    config_.options.erase("max_width");  // the committed 640 would not apply to these images
  }

  absl::StatusOr<std::unique_ptr<Backend>> Load(const ModelConfig& config) {
    return (*registry_.Find("hog-people"))(BackendContext{config, ModelDir("people-detector")});
  }

  // Runs `inputs`, checks the three outputs agree with each other, and returns them.
  Result Run(Backend& backend, const std::vector<Tensor>& inputs) {
    std::vector<Tensor> outputs;
    const absl::Status s = backend.Execute(inputs, &outputs);
    EXPECT_TRUE(s.ok()) << s;
    Result r;
    const Tensor* boxes = FindTensor(outputs, "boxes");
    const Tensor* scores = FindTensor(outputs, "scores");
    const Tensor* count = FindTensor(outputs, "count");
    if (boxes == nullptr || scores == nullptr || count == nullptr) {
      ADD_FAILURE() << "missing outputs";
      return r;
    }
    EXPECT_EQ(boxes->type(), DataType::kFp32);
    EXPECT_EQ(scores->type(), DataType::kFp32);
    EXPECT_EQ(count->type(), DataType::kInt32);
    EXPECT_EQ(count->shape(), (Shape{1}));
    r.count = count->As<int32_t>()[0];
    EXPECT_EQ(boxes->shape(), (Shape{r.count, 4}));
    EXPECT_EQ(scores->shape(), (Shape{r.count}));
    const auto b = boxes->As<float>();
    EXPECT_EQ(b.size(), static_cast<size_t>(r.count) * 4);
    for (size_t i = 0; i + 3 < b.size(); i += 4)
      r.boxes.emplace_back(b[i], b[i + 1], b[i + 2], b[i + 3]);
    const auto sc = scores->As<float>();
    r.scores.assign(sc.begin(), sc.end());
    return r;
  }

  BackendRegistry registry_;
  ModelConfig config_;
};

TEST_F(HogPeopleBackendTest, FindsNobodyInAnEmptyScene) {
  absl::StatusOr<std::unique_ptr<Backend>> backend = Load(config_);
  ASSERT_TRUE(backend.ok()) << backend.status();
  const Result r = Run(**backend, {PixelsTensor(EmptyScene())});
  EXPECT_EQ(r.count, 0);
  EXPECT_TRUE(r.boxes.empty());
}

TEST_F(HogPeopleBackendTest, FindsBothPeopleInAJpeg) {
  absl::StatusOr<std::unique_ptr<Backend>> backend = Load(config_);
  ASSERT_TRUE(backend.ok()) << backend.status();
  const cv::Mat image = TwoPeople();
  absl::StatusOr<std::string> jpeg = EncodeJpeg(image, 90);
  ASSERT_TRUE(jpeg.ok()) << jpeg.status();
  Result r = Run(**backend, {BytesTensor("image", *jpeg)});
  ASSERT_EQ(r.count, 2);
  // Each figure (head top to feet, x ± 20) lies inside one box; boxes lie inside the image.
  const cv::Rect2f figures[] = {{100, 60, 40, 127}, {260, 80, 40, 127}};
  for (const cv::Rect2f& figure : figures) {
    int containing = 0;
    for (const cv::Rect2f& box : r.boxes) containing += (box & figure).area() > 0.8 * figure.area();
    EXPECT_EQ(containing, 1) << "figure at " << figure;
  }
  for (size_t i = 0; i < r.boxes.size(); ++i) {
    EXPECT_GE(r.boxes[i].x, 0);
    EXPECT_GE(r.boxes[i].y, 0);
    EXPECT_LE(r.boxes[i].br().x, image.cols);
    EXPECT_LE(r.boxes[i].br().y, image.rows);
    EXPECT_GT(r.scores[i], 0) << "SVM margin above the zero hit threshold";
  }
}

TEST_F(HogPeopleBackendTest, RawPixelsGiveTheSameAnswerAsPng) {
  absl::StatusOr<std::unique_ptr<Backend>> backend = Load(config_);
  ASSERT_TRUE(backend.ok()) << backend.status();
  const Result r = Run(**backend, {PixelsTensor(TwoPeople())});
  EXPECT_EQ(r.count, 2);
  EXPECT_EQ(r.scores.size(), 2u);
}

TEST_F(HogPeopleBackendTest, MaxWidthScalesBoxesBackToTheOriginal) {
  const cv::Mat small = TwoPeople();
  cv::Mat large;
  cv::resize(small, large, {}, 2.0, 2.0, cv::INTER_LINEAR);

  absl::StatusOr<std::unique_ptr<Backend>> plain = Load(config_);
  ASSERT_TRUE(plain.ok()) << plain.status();
  const Result expected = Run(**plain, {PixelsTensor(small)});
  ASSERT_EQ(expected.count, 2);

  ModelConfig config = config_;
  config.options["max_width"] = "400";
  absl::StatusOr<std::unique_ptr<Backend>> capped = Load(config);
  ASSERT_TRUE(capped.ok()) << capped.status();
  const Result r = Run(**capped, {PixelsTensor(large)});
  ASSERT_EQ(r.count, 2);
  for (const cv::Rect2f& box : r.boxes) {
    // The large image's boxes are the small image's, doubled (within resampling noise).
    double best = 1e9;
    for (const cv::Rect2f& e : expected.boxes) {
      best = std::min(best, cv::norm(cv::Vec4f(box.x, box.y, box.width, box.height) -
                                     2.0f * cv::Vec4f(e.x, e.y, e.width, e.height)));
    }
    EXPECT_LT(best, 12.0) << box;
  }
}

TEST_F(HogPeopleBackendTest, TinyImagesHaveNobody) {
  absl::StatusOr<std::unique_ptr<Backend>> backend = Load(config_);
  ASSERT_TRUE(backend.ok()) << backend.status();
  const Result r = Run(**backend, {PixelsTensor(cv::Mat(20, 30, CV_8UC3, cv::Scalar::all(0)))});
  EXPECT_EQ(r.count, 0);
}

TEST_F(HogPeopleBackendTest, UndecodableBytesAreInvalidArgument) {
  absl::StatusOr<std::unique_ptr<Backend>> backend = Load(config_);
  ASSERT_TRUE(backend.ok()) << backend.status();
  std::vector<Tensor> outputs;
  const std::vector<Tensor> inputs = {BytesTensor("image", "<html>not an image</html>")};
  const absl::Status s = (*backend)->Execute(inputs, &outputs);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("input 'image': unknown image format"));
  EXPECT_TRUE(outputs.empty());
}

TEST_F(HogPeopleBackendTest, NoImageIsInvalidArgument) {
  absl::StatusOr<std::unique_ptr<Backend>> backend = Load(config_);
  ASSERT_TRUE(backend.ok()) << backend.status();
  std::vector<Tensor> outputs;
  const absl::Status s = (*backend)->Execute({}, &outputs);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("no image"));
}

TEST_F(HogPeopleBackendTest, ConfigErrorsNameTheField) {
  struct Case {
    std::function<void(ModelConfig&)> edit;
    std::string message;
  };
  const std::vector<Case> cases = {
      {[](ModelConfig& c) { c.outputs.pop_back(); }, "outputs: hog-people produces 'count'"},
      {[](ModelConfig& c) { c.outputs[2].type = DataType::kFp32; },
       "outputs[2].datatype: 'count' is INT32, not FP32"},
      {[](ModelConfig& c) {
         c.outputs.push_back({"labels", DataType::kBytes, {-1}});
       },
       "outputs[3].name: hog-people produces no output 'labels'"},
      {[](ModelConfig& c) {
         c.inputs = {{"x", DataType::kFp32, {-1}}};
       },
       "inputs: "},
      {[](ModelConfig& c) { c.options["win_stride"] = "12"; }, "options.win_stride: 12"},
      {[](ModelConfig& c) { c.options["scale"] = "fast"; }, "options.scale: 'fast'"},
      {[](ModelConfig& c) { c.options["scale"] = "1"; }, "options.scale: 1 must be in (1, 4]"},
      {[](ModelConfig& c) { c.options["hit_threshold"] = "nan"; }, "options.hit_threshold"},
      {[](ModelConfig& c) { c.options["max_width"] = "32"; }, "options.max_width: 32"},
  };
  for (const Case& c : cases) {
    ModelConfig config = config_;
    c.edit(config);
    const absl::Status s = Load(config).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.message;
    EXPECT_THAT(s.message(), HasSubstr(c.message));
  }
}

TEST_F(HogPeopleBackendTest, CommittedConfigLoads) {
  absl::StatusOr<ModelConfig> config = LoadModelConfig("people-detector");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->backend, "hog-people");
  absl::StatusOr<std::unique_ptr<Backend>> backend = Load(*config);
  ASSERT_TRUE(backend.ok()) << backend.status();
  // With max_width 640, a 1280-wide image is searched at half size; both people still show.
  cv::Mat large;
  cv::resize(TwoPeople(), large, {}, 3.2, 3.2, cv::INTER_LINEAR);
  EXPECT_EQ(Run(**backend, {PixelsTensor(large)}).count, 2);
}

}  // namespace
}  // namespace hivemesh
