#include "serving/backends/hog_people/hog_people_backend.h"

#include <algorithm>
#include <cmath>
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

struct HogOptions {
  double hit_threshold = 0;
  int win_stride = 8;
  double scale = 1.05;
  int max_width = 0;
  int64_t max_image_pixels = kDefaultMaxImagePixels;
};

absl::StatusOr<HogOptions> ParseOptions(const ModelConfig& config, const BackendEnvironment& env) {
  HogOptions o;
  absl::StatusOr<int64_t> pixels = MaxImagePixelsOption(config, env.max_image_pixels);
  if (!pixels.ok()) return pixels.status();
  o.max_image_pixels = *pixels;
  absl::StatusOr<double> hit = DoubleOption(config, "hit_threshold", o.hit_threshold);
  if (!hit.ok()) return hit.status();
  o.hit_threshold = *hit;
  absl::StatusOr<int> stride = IntOption(config, "win_stride", o.win_stride, 8, 128);
  if (!stride.ok()) return stride.status();
  if (*stride % 8 != 0) {
    return absl::InvalidArgumentError(StrCat("options.win_stride: ", *stride,
                                             " is not a multiple of the 8-pixel HOG block stride"));
  }
  o.win_stride = *stride;
  absl::StatusOr<double> scale = DoubleOption(config, "scale", o.scale);
  if (!scale.ok()) return scale.status();
  if (*scale <= 1.0 || *scale > 4.0) {
    return absl::InvalidArgumentError(StrCat("options.scale: ", *scale, " must be in (1, 4]"));
  }
  o.scale = *scale;
  // 0 disables; otherwise at least the 64-pixel detection window.
  absl::StatusOr<int> max_width = IntOption(config, "max_width", o.max_width, 0, kMaxImageSide);
  if (!max_width.ok()) return max_width.status();
  if (*max_width != 0 && *max_width < 64) {
    return absl::InvalidArgumentError(StrCat("options.max_width: ", *max_width,
                                             " is narrower than the 64-pixel detection window"));
  }
  o.max_width = *max_width;
  return o;
}

// Bytes HOG detection holds for a `width` x `height` image beyond its BGR pixels: the copy
// scaled down to max_width, if any (3 bytes per pixel), then per OpenCV worker thread
// (HOGInvoker: each searches its own pyramid levels) a buffer for its scaled level (3 bytes per
// pixel of the image searched), the level's gradients (2 floats per pixel) and gradient angles
// (2 bytes), and its block histogram cache: 16 bytes per pixel of the image searched at most.
uint64_t HogWorkBytes(int64_t width, int64_t height, const HogOptions& o, int threads) {
  uint64_t searched = static_cast<uint64_t>(width) * static_cast<uint64_t>(height);
  uint64_t bytes = 0;
  if (o.max_width > 0 && width > o.max_width) {
    const double to_original = static_cast<double>(width) / o.max_width;
    const uint64_t h = static_cast<uint64_t>(
        std::max<int64_t>(1, std::llround(static_cast<double>(height) / to_original)));
    searched = static_cast<uint64_t>(o.max_width) * h;
    bytes += searched * 3;
  }
  return bytes + static_cast<uint64_t>(std::max(1, threads)) * (3 + 16) * searched;
}

class HogPeopleBackend final : public Backend {
 public:
  static absl::StatusOr<std::unique_ptr<Backend>> Create(const BackendContext& ctx) {
    if (absl::Status s = CheckDetectorConfig(ctx.config, "hog-people"); !s.ok()) return s;
    absl::StatusOr<HogOptions> options = ParseOptions(ctx.config, ctx.env());
    if (!options.ok()) return options.status();
    std::unique_ptr<HogPeopleBackend> backend(new HogPeopleBackend(*options, ctx.env()));
    try {
      backend->hog_.setSVMDetector(cv::HOGDescriptor::getDefaultPeopleDetector());
    } catch (const cv::Exception& e) {
      return absl::InternalError(StrCat("hog-people: cannot set up the detector: ", e.err));
    }
    return backend;
  }

  absl::Status Execute(std::span<const Tensor> inputs, std::vector<Tensor>* outputs) override {
    // The reservation in `image` is held until the detection is done.
    absl::StatusOr<Image> image = ImageFromInputs(inputs, limits_);
    if (!image.ok()) return image.status();
    absl::StatusOr<std::vector<Detection>> detections = Detect(image->bgr);
    if (!detections.ok()) return detections.status();
    AppendDetectionOutputs(*detections, outputs);
    return absl::OkStatus();
  }

 private:
  HogPeopleBackend(const HogOptions& options, const BackendEnvironment& env)
      : options_(options), budget_(env.memory_budget), rejections_(env.rejections) {
    limits_.max_pixels = options.max_image_pixels;
    limits_.budget = budget_.get();
    limits_.rejections = rejections_.get();
    limits_.work_bytes = [o = options, threads = cv::getNumThreads()](int64_t w, int64_t h) {
      return HogWorkBytes(w, h, o, threads);
    };
  }

  absl::StatusOr<std::vector<Detection>> Detect(const cv::Mat& image) {
    std::vector<Detection> detections;
    try {
      cv::Mat input = image;
      double to_original = 1.0;  // multiplies coordinates in `input` to the request image's
      if (options_.max_width > 0 && image.cols > options_.max_width) {
        to_original = static_cast<double>(image.cols) / options_.max_width;
        const int height = std::max(1, static_cast<int>(std::lround(image.rows / to_original)));
        cv::resize(image, input, cv::Size(options_.max_width, height), 0, 0, cv::INTER_AREA);
      }
      if (input.cols < hog_.winSize.width || input.rows < hog_.winSize.height) {
        return detections;  // smaller than one detection window: nobody fits
      }
      std::vector<cv::Rect> found;
      std::vector<double> weights;
      const cv::Size stride(options_.win_stride, options_.win_stride);
      hog_.detectMultiScale(input, found, weights, options_.hit_threshold, stride, cv::Size(),
                            options_.scale);
      const cv::Rect bounds(0, 0, image.cols, image.rows);
      for (size_t i = 0; i < found.size(); ++i) {
        const cv::Rect& r = found[i];
        const cv::Rect scaled(static_cast<int>(std::lround(r.x * to_original)),
                              static_cast<int>(std::lround(r.y * to_original)),
                              static_cast<int>(std::lround(r.width * to_original)),
                              static_cast<int>(std::lround(r.height * to_original)));
        const cv::Rect clipped = scaled & bounds;
        if (clipped.empty()) continue;
        detections.push_back({clipped, i < weights.size() ? static_cast<float>(weights[i]) : 0.0f});
      }
    } catch (const cv::Exception& e) {
      return absl::InternalError(StrCat("hog-people: detection failed: ", e.err));
    } catch (const std::bad_alloc&) {
      return absl::ResourceExhaustedError("hog-people: out of memory");
    }
    return detections;
  }

  const HogOptions options_;
  const std::shared_ptr<MemoryBudget> budget_;    // may be null
  const std::shared_ptr<Rejections> rejections_;  // may be null
  ImageLimits limits_;
  cv::HOGDescriptor hog_;  // default: 64x128 window, 16x16 blocks, 8x8 block stride and cells
};

}  // namespace

void RegisterHogPeopleBackend(BackendRegistry& registry) {
  registry.Register("hog-people", HogPeopleBackend::Create);
}

}  // namespace hivemesh
