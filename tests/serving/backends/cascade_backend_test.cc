#include "serving/backends/cascade/cascade_backend.h"

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "base/memory_budget.h"
#include "base/rejections.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "opencv2/core.hpp"
#include "opencv2/imgproc.hpp"
#include "serving/backend.h"
#include "serving/backends/backend_test_util.h"
#include "serving/backends/cascade/cascade_memory.h"
#include "serving/backends/image/image_input.h"

namespace hivemesh {
namespace {

using ::testing::HasSubstr;
using testing_util::BytesTensor;
using testing_util::FindTensor;
using testing_util::JpegDeclaring;
using testing_util::LoadModelConfig;
using testing_util::ModelDir;

constexpr char kFrontalFace[] = "haarcascades/haarcascade_frontalface_default.xml";

// A cartoon face about 180 pixels across centred on `c`: skin, hair, dark eyes under brows, a
// nose and a mouth. Enough of a face for the Viola-Jones frontal-face cascade.
void DrawFace(cv::Mat& image, cv::Point c) {
  constexpr double s = 2.2;
  auto at = [&](double x, double y) {
    return cv::Point(c.x + static_cast<int>(x * s), c.y + static_cast<int>(y * s));
  };
  auto size = [&](double w, double h) {
    return cv::Size(static_cast<int>(w * s), static_cast<int>(h * s));
  };
  const int thick = static_cast<int>(3 * s);
  cv::ellipse(image, at(0, 0), size(40, 52), 0, 0, 360, {150, 170, 210}, -1, cv::LINE_AA);
  cv::ellipse(image, at(0, -48), size(42, 20), 0, 180, 360, {30, 30, 40}, -1, cv::LINE_AA);
  for (int side : {-1, 1}) {
    cv::ellipse(image, at(side * 17, -12), size(10, 5), 0, 0, 360, {60, 60, 70}, -1, cv::LINE_AA);
    cv::circle(image, at(side * 17, -12), thick, {10, 10, 10}, -1, cv::LINE_AA);
    cv::line(image, at(side * 8, -24), at(side * 27, -24), {40, 40, 50}, thick, cv::LINE_AA);
  }
  cv::line(image, at(0, -8), at(-3, 12), {120, 140, 180}, static_cast<int>(2 * s), cv::LINE_AA);
  cv::ellipse(image, at(0, 26), size(14, 5), 0, 0, 180, {60, 60, 140}, thick, cv::LINE_AA);
}

cv::Mat FaceImage() {
  cv::Mat image(320, 400, CV_8UC3, cv::Scalar(200, 210, 205));
  DrawFace(image, {200, 170});
  cv::GaussianBlur(image, image, {5, 5}, 0);
  return image;
}

Tensor PixelsTensor(const cv::Mat& bgr) {
  return Tensor::Owned("pixels", DataType::kUint8, {bgr.rows, bgr.cols, 3},
                       std::string(reinterpret_cast<const char*>(bgr.data), bgr.total() * 3));
}

class CascadeBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    RegisterCascadeBackend(registry_);
    absl::StatusOr<ModelConfig> config = LoadModelConfig("face-detector");
    ASSERT_TRUE(config.ok()) << config.status();
    config_ = *config;
  }

  absl::StatusOr<std::unique_ptr<Backend>> Load(const ModelConfig& config,
                                                std::string version_path = "") {
    if (version_path.empty()) version_path = ModelDir("face-detector") + "/1";
    return (*registry_.Find("cascade"))(BackendContext{config, version_path});
  }

  // Runs one image; checks the outputs agree with each other; returns boxes (x,y,w,h) and scores.
  int32_t Run(Backend& backend, const Tensor& input, std::vector<cv::Rect2f>* boxes = nullptr,
              std::vector<float>* scores = nullptr) {
    std::vector<Tensor> outputs;
    const absl::Status s = backend.Execute(std::vector<Tensor>{input}, &outputs);
    EXPECT_TRUE(s.ok()) << s;
    const Tensor* b = FindTensor(outputs, "boxes");
    const Tensor* sc = FindTensor(outputs, "scores");
    const Tensor* count = FindTensor(outputs, "count");
    if (b == nullptr || sc == nullptr || count == nullptr) {
      ADD_FAILURE() << "missing outputs";
      return -1;
    }
    const int32_t n = count->As<int32_t>()[0];
    EXPECT_EQ(count->type(), DataType::kInt32);
    EXPECT_EQ(b->shape(), (Shape{n, 4}));
    EXPECT_EQ(sc->shape(), (Shape{n}));
    const auto v = b->As<float>();
    for (size_t i = 0; boxes != nullptr && i + 3 < v.size(); i += 4) {
      boxes->emplace_back(v[i], v[i + 1], v[i + 2], v[i + 3]);
    }
    if (scores != nullptr) scores->assign(sc->As<float>().begin(), sc->As<float>().end());
    return n;
  }

  BackendRegistry registry_;
  ModelConfig config_;
};

TEST_F(CascadeBackendTest, CommittedConfigUsesOpenCvData) {
  EXPECT_EQ(config_.backend, "cascade");
  EXPECT_EQ(config_.Option("file"), kFrontalFace);
  EXPECT_TRUE(std::filesystem::exists(std::string(kOpenCvDataDir) + "/" + kFrontalFace))
      << "opencv-data is not installed (scripts/install-deps.sh)";
  absl::StatusOr<std::unique_ptr<Backend>> backend = Load(config_);
  ASSERT_TRUE(backend.ok()) << backend.status();
}

TEST_F(CascadeBackendTest, BlankImageHasNoFaces) {
  absl::StatusOr<std::unique_ptr<Backend>> backend = Load(config_);
  ASSERT_TRUE(backend.ok()) << backend.status();
  EXPECT_EQ(Run(**backend, PixelsTensor(cv::Mat(240, 320, CV_8UC3, cv::Scalar(90, 120, 150)))), 0);
}

TEST_F(CascadeBackendTest, FindsADrawnFace) {
  absl::StatusOr<std::unique_ptr<Backend>> backend = Load(config_);
  ASSERT_TRUE(backend.ok()) << backend.status();
  std::vector<cv::Rect2f> boxes;
  std::vector<float> scores;
  const cv::Mat image = FaceImage();
  ASSERT_EQ(Run(**backend, BytesTensor("image", *EncodeJpeg(image, 95)), &boxes, &scores), 1);
  EXPECT_TRUE(boxes[0].contains({200, 170})) << boxes[0];
  EXPECT_GT(boxes[0].width, 80);
  EXPECT_GE(scores[0], 3) << "at least min_neighbors raw detections";

  // The same pixels sent raw give the same face.
  std::vector<cv::Rect2f> raw_boxes;
  ASSERT_EQ(Run(**backend, PixelsTensor(image), &raw_boxes), 1);
  EXPECT_NEAR(raw_boxes[0].x, boxes[0].x, 10);
}

TEST_F(CascadeBackendTest, MinSizeFiltersSmallFaces) {
  ModelConfig config = config_;
  config.options["min_size"] = "300";  // larger than the drawn face
  absl::StatusOr<std::unique_ptr<Backend>> backend = Load(config);
  ASSERT_TRUE(backend.ok()) << backend.status();
  EXPECT_EQ(Run(**backend, PixelsTensor(FaceImage())), 0);
}

TEST_F(CascadeBackendTest, MissingCascadeFileNamesOptionsFile) {
  ModelConfig config = config_;
  config.options["file"] = "haarcascades/no_such_cascade.xml";
  const absl::Status s = Load(config).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("options.file: 'haarcascades/no_such_cascade.xml' not found"));
  EXPECT_THAT(s.message(), HasSubstr("/usr/share/opencv4/haarcascades/no_such_cascade.xml"));

  config.options["file"] = "/nonexistent/cascade.xml";
  EXPECT_THAT(Load(config).status().message(), HasSubstr("options.file: /nonexistent/cascade.xml"));

  config.options.erase("file");
  EXPECT_THAT(Load(config).status().message(), HasSubstr("options.file: required"));
}

TEST_F(CascadeBackendTest, InvalidCascadeFileNamesOptionsFile) {
  const std::string dir = ::testing::TempDir() + "/cascade_backend_test_invalid";
  std::filesystem::create_directories(dir);
  {
    std::ofstream(dir + "/broken.xml")
        << "<?xml version=\"1.0\"?><opencv_storage></opencv_storage>";
  }
  ModelConfig config = config_;
  config.options["file"] = "broken.xml";
  const absl::Status s = Load(config, dir).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("options.file: " + dir + "/broken.xml"));
}

TEST_F(CascadeBackendTest, VersionDirectoryComesBeforeOpenCvData) {
  // A file in the version directory shadows the one of the same name in /usr/share/opencv4.
  const std::string dir = ::testing::TempDir() + "/cascade_backend_test_version";
  std::filesystem::create_directories(dir + "/haarcascades");
  { std::ofstream(dir + "/" + kFrontalFace) << "not a cascade"; }
  const absl::Status s = Load(config_, dir).status();
  EXPECT_THAT(s.message(), HasSubstr("options.file: " + dir + "/" + kFrontalFace));

  // An absolute path is used as is.
  ModelConfig config = config_;
  config.options["file"] = std::string(kOpenCvDataDir) + "/" + kFrontalFace;
  EXPECT_TRUE(Load(config, dir).ok());
}

TEST_F(CascadeBackendTest, BadOptionsNameTheField) {
  ModelConfig config = config_;
  config.options["scale_factor"] = "1.0";
  EXPECT_THAT(Load(config).status().message(), HasSubstr("options.scale_factor"));
  config = config_;
  config.options["min_neighbors"] = "-1";
  EXPECT_THAT(Load(config).status().message(), HasSubstr("options.min_neighbors"));
  config = config_;
  config.options["min_size"] = "big";
  EXPECT_THAT(Load(config).status().message(), HasSubstr("options.min_size: 'big'"));
  config = config_;
  config.outputs[1].type = DataType::kInt32;
  EXPECT_THAT(Load(config).status().message(), HasSubstr("outputs[1].datatype"));
}

TEST_F(CascadeBackendTest, ImagesAreCheckedAndReservedAndTheSearchBuffersCounted) {
  auto budget = MemoryBudget::Create(uint64_t{1} << 30);
  auto rejections = std::make_shared<Rejections>();
  const BackendEnvironment env{budget, rejections, kDefaultMaxImagePixels};
  absl::StatusOr<std::unique_ptr<Backend>> backend =
      (*registry_.Find("cascade"))(BackendContext{config_, ModelDir("face-detector") + "/1", &env});
  ASSERT_TRUE(backend.ok()) << backend.status();
  const CascadeSearch search{1.1, 30, 24, 24, 2};  // the committed config, frontalface_default

  // A frame of 640x480: once searched, the classifier keeps its buffers, counted in the budget.
  EXPECT_EQ(Run(**backend, PixelsTensor(cv::Mat(480, 640, CV_8UC3, cv::Scalar(90, 120, 150)))), 0);
  EXPECT_EQ(budget->used(), ScratchAfterSearch(640, 480, search, {}).Bytes(2));

  // 2100x2100 needs more than the classifier may keep: searched, then its buffers are freed.
  EXPECT_GT(ScratchAfterSearch(2100, 2100, search, {}).Bytes(2), uint64_t{128} << 20);
  EXPECT_EQ(Run(**backend, PixelsTensor(cv::Mat(2100, 2100, CV_8UC3, cv::Scalar(9, 9, 9)))), 0);
  EXPECT_EQ(budget->used(), 0u);

  // 8192x8192 declared by 300 bytes of JPEG: refused before decoding, counted.
  std::vector<Tensor> outputs;
  const absl::Status bomb = (*backend)->Execute(
      std::vector<Tensor>{BytesTensor("image", JpegDeclaring(8192, 8192))}, &outputs);
  EXPECT_EQ(bomb.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bomb.message(), HasSubstr("more than max_image_pixels (33177600)"));
  EXPECT_EQ(rejections->count(Rejection::kImageTooLarge), 1u);

  // A budget too small for a frame and the search's buffers: OUT_OF_RANGE, naming it.
  auto small = MemoryBudget::Create(64 << 20);
  const BackendEnvironment tight{small, rejections, kDefaultMaxImagePixels};
  backend = (*registry_.Find("cascade"))(
      BackendContext{config_, ModelDir("face-detector") + "/1", &tight});
  ASSERT_TRUE(backend.ok()) << backend.status();
  const absl::Status refused = (*backend)->Execute(
      std::vector<Tensor>{PixelsTensor(cv::Mat(1080, 1920, CV_8UC3, cv::Scalar(9, 9, 9)))},
      &outputs);
  EXPECT_EQ(refused.code(), absl::StatusCode::kOutOfRange) << refused;
  EXPECT_THAT(refused.message(), HasSubstr("memory_budget_mb"));
  EXPECT_EQ(small->used(), 0u);
}

}  // namespace
}  // namespace hivemesh
