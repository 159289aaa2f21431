#include "serving/backends/cascade/cascade_backend.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <new>
#include <utility>
#include <vector>

#include "base/strings.h"
#include "opencv2/core.hpp"
#include "opencv2/imgproc.hpp"
#include "opencv2/objdetect.hpp"
#include "serving/backends/cascade/cascade_memory.h"
#include "serving/backends/image/detector.h"
#include "serving/backends/image/image_input.h"

namespace hivemesh {
namespace {

struct CascadeOptions {
  double scale_factor = 1.1;
  int min_neighbors = 3;
  int min_size = 30;
  int64_t max_image_pixels = kDefaultMaxImagePixels;
};

absl::StatusOr<CascadeOptions> ParseOptions(const ModelConfig& config,
                                            const BackendEnvironment& env) {
  CascadeOptions o;
  absl::StatusOr<int64_t> pixels = MaxImagePixelsOption(config, env.max_image_pixels);
  if (!pixels.ok()) return pixels.status();
  o.max_image_pixels = *pixels;
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

// The int32 channels OpenCV 4 keeps per pixel of each scaled image for the cascade in `file`:
// LBP its sum; Haar (the default, and old files' only kind) its sum and squared sum, and its
// tilted sum when a feature is tilted. Read from the file, which says all of it.
int IntegralChannels(const std::filesystem::path& file) {
  std::ifstream in(file);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (text.find("<featureType>LBP") != std::string::npos) return 1;
  return text.find("<tilted>1</tilted>") == std::string::npos ? 2 : 3;
}

class CascadeBackend final : public Backend {
 public:
  static absl::StatusOr<std::unique_ptr<Backend>> Create(const BackendContext& ctx) {
    if (absl::Status s = CheckDetectorConfig(ctx.config, "cascade"); !s.ok()) return s;
    absl::StatusOr<CascadeOptions> options = ParseOptions(ctx.config, ctx.env());
    if (!options.ok()) return options.status();
    absl::StatusOr<std::filesystem::path> path = ResolveCascadeFile(ctx);
    if (!path.ok()) return path.status();
    std::unique_ptr<CascadeBackend> backend(new CascadeBackend(*options, ctx.env()));
    try {
      if (!backend->classifier_.load(path->string()) || backend->classifier_.empty()) {
        return absl::InvalidArgumentError(
            StrCat("options.file: ", path->string(), ": not a valid OpenCV cascade classifier"));
      }
    } catch (const cv::Exception& e) {
      return absl::InvalidArgumentError(
          StrCat("options.file: ", path->string(), ": cannot load the cascade: ", e.err));
    }
    const cv::Size window = backend->classifier_.getOriginalWindowSize();
    backend->path_ = *path;
    backend->search_ = CascadeSearch{options->scale_factor, options->min_size, window.width,
                                     window.height, IntegralChannels(*path)};
    // What a search adds to what the classifier holds already, and its grey copy.
    backend->limits_.work_bytes = [b = backend.get()](int64_t width, int64_t height) {
      const uint64_t after =
          ScratchAfterSearch(width, height, b->search_, b->held_).Bytes(b->search_.channels);
      const uint64_t grey = static_cast<uint64_t>(width) * static_cast<uint64_t>(height);
      return grey + (after > b->scratch_.bytes() ? after - b->scratch_.bytes() : 0);
    };
    return backend;
  }

  absl::Status Execute(std::span<const Tensor> inputs, std::vector<Tensor>* outputs) override {
    // The reservation in `image` is held until the detection is done.
    absl::StatusOr<Image> image = ImageFromInputs(inputs, limits_);
    if (!image.ok()) return image.status();
    absl::StatusOr<std::vector<Detection>> detections = Detect(image->bgr);
    KeepOrFreeScratch(image->bgr.cols, image->bgr.rows);
    if (!detections.ok()) return detections.status();
    AppendDetectionOutputs(*detections, outputs);
    return absl::OkStatus();
  }

 private:
  CascadeBackend(const CascadeOptions& options, const BackendEnvironment& env)
      : options_(options), budget_(env.memory_budget), rejections_(env.rejections) {
    limits_.max_pixels = options.max_image_pixels;
    limits_.budget = budget_.get();
    limits_.rejections = rejections_.get();
    if (budget_ != nullptr) scratch_ = *budget_->Reserve(0);
  }

  // The classifier keeps its largest search's buffers (cascade_memory.h). Up to
  // kKeptScratchBytes they stay, reserved from the budget in `scratch_` (the next search of
  // that size needs no more); beyond, or when the budget cannot hold them, the classifier is
  // loaded again from its file, which frees them (tens of milliseconds, after a search of an
  // image of several megapixels that took far longer).
  static constexpr uint64_t kKeptScratchBytes = 128 << 20;

  // After a search of a `width` x `height` image, while its reservation is still held.
  void KeepOrFreeScratch(int width, int height) {
    const CascadeScratch after = ScratchAfterSearch(width, height, search_, held_);
    if (after == held_) return;
    const uint64_t bytes = after.Bytes(search_.channels);
    if (bytes <= kKeptScratchBytes && scratch_.Grow(bytes - scratch_.bytes()).ok()) {
      held_ = after;
      return;
    }
    try {
      cv::CascadeClassifier fresh;
      if (fresh.load(path_.string()) && !fresh.empty()) {
        classifier_ = fresh;
        held_ = CascadeScratch();
        scratch_.Release();
        return;
      }
    } catch (const cv::Exception&) {
    }
    // The file is gone or changed: the buffers stay, counted as they were. (A reload of the
    // model replaces this backend and them.)
    held_ = after;
  }

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
  const std::shared_ptr<MemoryBudget> budget_;    // may be null
  const std::shared_ptr<Rejections> rejections_;  // may be null
  ImageLimits limits_;                            // set once by Create
  std::filesystem::path path_;                    // the cascade file
  CascadeSearch search_;
  cv::CascadeClassifier classifier_;
  // The buffers classifier_ holds (its largest search's) and their reservation. The reservation
  // is empty (nothing counted) when there is no budget; held_ is tracked all the same.
  CascadeScratch held_;
  MemoryBudget::Reservation scratch_;
};

}  // namespace

void RegisterCascadeBackend(BackendRegistry& registry) {
  registry.Register("cascade", CascadeBackend::Create);
}

}  // namespace hivemesh
