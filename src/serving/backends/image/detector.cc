#include "serving/backends/image/detector.h"

#include <charconv>
#include <cmath>
#include <cstring>

#include "base/strings.h"

namespace hivemesh {
namespace {

struct OutputSpec {
  const char* name;
  DataType type;
  const char* shape;
};
constexpr OutputSpec kOutputs[] = {
    {"boxes", DataType::kFp32, "[N,4]"},
    {"scores", DataType::kFp32, "[N]"},
    {"count", DataType::kInt32, "[1]"},
};

template <typename T>
void AppendRaw(std::string& out, T value) {
  char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));
  out.append(bytes, sizeof(T));
}

}  // namespace

absl::Status CheckDetectorConfig(const ModelConfig& config, std::string_view backend_name) {
  const std::string backend(backend_name);  // StrCat takes absl::string_view only
  bool has_image_input = false;
  for (const TensorConfig& in : config.inputs) {
    if (in.type == DataType::kBytes || in.type == DataType::kUint8) has_image_input = true;
  }
  if (!has_image_input) {
    return absl::InvalidArgumentError(
        StrCat("inputs: ", backend,
               " needs an image input: an encoded JPEG/PNG (BYTES [1]) and/or BGR pixels "
               "(UINT8 [-1,-1,3])"));
  }
  for (const OutputSpec& spec : kOutputs) {
    if (config.FindOutput(spec.name) == nullptr) {
      return absl::InvalidArgumentError(StrCat("outputs: ", backend, " produces '", spec.name,
                                               "' (", std::string(DataTypeName(spec.type)), " ",
                                               spec.shape, "); declare it"));
    }
  }
  for (size_t i = 0; i < config.outputs.size(); ++i) {
    const TensorConfig& out = config.outputs[i];
    const OutputSpec* spec = nullptr;
    for (const OutputSpec& s : kOutputs) {
      if (out.name == s.name) spec = &s;
    }
    if (spec == nullptr) {
      return absl::InvalidArgumentError(StrCat("outputs[", i, "].name: ", backend,
                                               " produces no output '", out.name,
                                               "' (only boxes, scores and count)"));
    }
    if (out.type != spec->type) {
      return absl::InvalidArgumentError(StrCat("outputs[", i, "].datatype: '", out.name, "' is ",
                                               std::string(DataTypeName(spec->type)), ", not ",
                                               std::string(DataTypeName(out.type))));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<double> DoubleOption(const ModelConfig& config, const std::string& key,
                                    double fallback) {
  auto it = config.options.find(key);
  if (it == config.options.end()) return fallback;
  const std::string& text = it->second;
  double value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || ptr != text.data() + text.size() || !std::isfinite(value)) {
    return absl::InvalidArgumentError(
        StrCat("options.", key, ": '", text, "' is not a finite number"));
  }
  return value;
}

absl::StatusOr<int> IntOption(const ModelConfig& config, const std::string& key, int fallback,
                              int min_value, int max_value) {
  auto it = config.options.find(key);
  if (it == config.options.end()) return fallback;
  const std::string& text = it->second;
  int value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || ptr != text.data() + text.size()) {
    return absl::InvalidArgumentError(StrCat("options.", key, ": '", text, "' is not an integer"));
  }
  if (value < min_value || value > max_value) {
    return absl::InvalidArgumentError(
        StrCat("options.", key, ": ", value, " is outside ", min_value, "..", max_value));
  }
  return value;
}

absl::StatusOr<int64_t> MaxImagePixelsOption(const ModelConfig& config, int64_t fallback) {
  auto it = config.options.find("max_image_pixels");
  if (it == config.options.end()) return fallback;
  const std::string& text = it->second;
  int64_t value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  // 2^32: a 65535 x 65535 image, the largest JPEG.
  if (ec != std::errc() || ptr != text.data() + text.size() || value < 1 ||
      value > (int64_t{1} << 32)) {
    return absl::InvalidArgumentError(
        StrCat("options.max_image_pixels: '", text,
               "' is not a whole number of pixels between 1 and 4294967296 (e.g. 33177600 for "
               "7680x4320)"));
  }
  return value;
}

void AppendDetectionOutputs(std::span<const Detection> detections, std::vector<Tensor>* outputs) {
  const int64_t n = static_cast<int64_t>(detections.size());
  std::string boxes, scores, count;
  boxes.reserve(detections.size() * 4 * sizeof(float));
  scores.reserve(detections.size() * sizeof(float));
  for (const Detection& d : detections) {
    AppendRaw(boxes, static_cast<float>(d.box.x));
    AppendRaw(boxes, static_cast<float>(d.box.y));
    AppendRaw(boxes, static_cast<float>(d.box.width));
    AppendRaw(boxes, static_cast<float>(d.box.height));
    AppendRaw(scores, d.score);
  }
  AppendRaw(count, static_cast<int32_t>(n));
  outputs->push_back(Tensor::Owned("boxes", DataType::kFp32, {n, 4}, std::move(boxes)));
  outputs->push_back(Tensor::Owned("scores", DataType::kFp32, {n}, std::move(scores)));
  outputs->push_back(Tensor::Owned("count", DataType::kInt32, {1}, std::move(count)));
}

}  // namespace hivemesh
