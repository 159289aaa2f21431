#include "serving/backends/cascade/cascade_backend.h"

#include <filesystem>
#include <new>
#include <utility>
#include <vector>

#include "base/strings.h"
#include "opencv2/core.hpp"
#include "opencv2/imgproc.hpp"
#include "opencv2/objdetect.hpp"
#include "serving/backends/image/detector.h"
#include "serving/backends/image/image_input.h"

namespace hivemesh {
namespace {

struct CascadeOptions {
  double scale_factor = 1.1;
  int min_neighbors = 3;
  int min_size = 30;
};

absl::StatusOr<CascadeOptions> ParseOptions(const ModelConfig& config) {
  CascadeOptions o;
  absl::StatusOr<double> scale = DoubleOption(config, "scale_factor", o.scale_factor);
  if (!scale.ok()) return scale.status();
  if (*scale <= 1.0 || *scale > 4.0) {
    return absl::InvalidArgumentError(
        StrCat("options.scale_factor: ", *scale, " must be in (1, 4]"));
  }
  o.scale_factor = *scale;
  absl::StatusOr<int> neighbors = IntOption(config, "min_neighbors", o.min_neighbors, 0, 1000);
  if (!neighbors.ok()) return neighbors.status();
  o.min_neighbors = *neighbors;
  absl::StatusOr<int> min_size = IntOption(config, "min_size", o.min_size, 0, kMaxImageSide);
  if (!min_size.ok()) return min_size.status();
  o.min_size = *min_size;
  return o;
}

// options.file: absolute; else in the version directory; else in OpenCV's data directory.
absl::StatusOr<std::filesystem::path> ResolveCascadeFile(const BackendContext& ctx) {
  const std::string file = ctx.config.Option("file");
  if (file.empty()) {
    return absl::InvalidArgumentError(
        "options.file: required: the cascade XML, e.g. "
        "haarcascades/haarcascade_frontalface_default.xml");
  }
  const std::filesystem::path path(file);
  std::error_code ec;
  if (path.is_absolute()) {
    if (std::filesystem::is_regular_file(path, ec)) return path;
    return absl::InvalidArgumentError(
        StrCat("options.file: ", path.string(), ": no such cascade file"));
  }
  const std::filesystem::path in_version = std::filesystem::path(ctx.version_path) / path;
  if (std::filesystem::is_regular_file(in_version, ec)) return in_version;
  const std::filesystem::path in_data = std::filesystem::path(kOpenCvDataDir) / path;
  if (std::filesystem::is_regular_file(in_data, ec)) return in_data;
  return absl::InvalidArgumentError(StrCat("options.file: '", file, "' not found (looked for ",
                                           in_version.string(), " and ", in_data.string(), ")"));
}

class CascadeBackend final : public Backend {
 public:
  static absl::StatusOr<std::unique_ptr<Backend>> Create(const BackendContext& ctx) {
    if (absl::Status s = CheckDetectorConfig(ctx.config, "cascade"); !s.ok()) return s;
    absl::StatusOr<CascadeOptions> options = ParseOptions(ctx.config);
    if (!options.ok()) return options.status();
    absl::StatusOr<std::filesystem::path> path = ResolveCascadeFile(ctx);
    if (!path.ok()) return path.status();
    std::unique_ptr<CascadeBackend> backend(new CascadeBackend(*options));
    try {
      if (!backend->classifier_.load(path->string()) || backend->classifier_.empty()) {
        return absl::InvalidArgumentError(
            StrCat("options.file: ", path->string(), ": not a valid OpenCV cascade classifier"));
      }
    } catch (const cv::Exception& e) {
      return absl::InvalidArgumentError(
          StrCat("options.file: ", path->string(), ": cannot load the cascade: ", e.err));
    }
    return backend;
  }

  absl::Status Execute(std::span<const Tensor> inputs, std::vector<Tensor>* outputs) override {
    absl::StatusOr<cv::Mat> image = ImageFromInputs(inputs);
    if (!image.ok()) return image.status();
    absl::StatusOr<std::vector<Detection>> detections = Detect(*image);
    if (!detections.ok()) return detections.status();
    AppendDetectionOutputs(*detections, outputs);
    return absl::OkStatus();
  }

 private:
  explicit CascadeBackend(const CascadeOptions& options) : options_(options) {}

  absl::StatusOr<std::vector<Detection>> Detect(const cv::Mat& image) {
    std::vector<Detection> detections;
    try {
      cv::Mat gray;
      cv::cvtColor(image, gray, cv::COLOR_BGR2GRAY);
      cv::equalizeHist(gray, gray);
      std::vector<cv::Rect> found;
      std::vector<int> neighbours;
      classifier_.detectMultiScale(gray, found, neighbours, options_.scale_factor,
                                   options_.min_neighbors, 0,
                                   cv::Size(options_.min_size, options_.min_size));
      const cv::Rect bounds(0, 0, image.cols, image.rows);
      for (size_t i = 0; i < found.size(); ++i) {
        const cv::Rect clipped = found[i] & bounds;
        if (clipped.empty()) continue;
        detections.push_back(
            {clipped, i < neighbours.size() ? static_cast<float>(neighbours[i]) : 0.0f});
      }
    } catch (const cv::Exception& e) {
      return absl::InternalError(StrCat("cascade: detection failed: ", e.err));
    } catch (const std::bad_alloc&) {
      return absl::ResourceExhaustedError("cascade: out of memory");
    }
    return detections;
  }

  const CascadeOptions options_;
  cv::CascadeClassifier classifier_;
};

}  // namespace

void RegisterCascadeBackend(BackendRegistry& registry) {
  registry.Register("cascade", CascadeBackend::Create);
}

}  // namespace hivemesh
