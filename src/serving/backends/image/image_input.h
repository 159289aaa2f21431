// Image inputs for the vision backends: decoding JPEG/PNG request bytes into BGR pixels, and
// picking the image out of a request that carries either encoded bytes or raw pixels.
//
// JPEG is decoded with libturbojpeg and PNG with libpng's simplified API; OpenCV's imgcodecs is
// deliberately not used (it links ~120 libraries into the agent). Request data is untrusted:
// every failure is an absl::Status, never an exception or an abort.
//
// An image's header says how large it is before any pixel is decoded, and a few hundred bytes
// can declare gigabytes of pixels. So the size is checked first: more than `max_pixels`
// (width x height) is refused (INVALID_ARGUMENT naming the limit, counted as image_too_large),
// and the memory the pixels need, with what the backend needs on top while it works on them, is
// reserved from the node's memory budget before the decoder allocates anything: memory the
// budget can never hold is refused (OUT_OF_RANGE, naming memory_budget_mb); memory it cannot
// hold now is RESOURCE_EXHAUSTED (the request may be retried).
//
// Thread safety: all functions are free functions without shared state; call them from any
// thread. The budget and rejection counters they are given are thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "base/memory_budget.h"
#include "opencv2/core/mat.hpp"
#include "tensor/tensor.h"

namespace hivemesh {

class Rejections;

// The most pixels (width x height) an image may have unless the node (max_image_pixels) or the
// model (options.max_image_pixels) says otherwise: 8K UHD, 7680 x 4320, the largest frame
// common cameras make.
inline constexpr int64_t kDefaultMaxImagePixels = int64_t{7680} * 4320;
// Largest image side: the most a JPEG header can declare. Pixels are bounded by max_pixels.
inline constexpr int kMaxImageSide = 65535;

// What one request's image may cost.
struct ImageLimits {
  // Most pixels (width x height); a larger image is refused before it is decoded.
  int64_t max_pixels = kDefaultMaxImagePixels;
  // Bytes the backend needs while it works on an image of this size, beyond the decoded BGR
  // pixels (grey and scaled copies, feature buffers): reserved with them. Null: none.
  std::function<uint64_t(int64_t width, int64_t height)> work_bytes;
  // The node's budget for requests in flight. Null: nothing is reserved.
  MemoryBudget* budget = nullptr;
  // Where refusals are counted (image_too_large, memory_budget). Null: not counted.
  Rejections* rejections = nullptr;
};

// An image ready for a backend, with the memory reserved for it and for the backend's work on
// it: hold it until the work is done.
struct Image {
  // 8-bit, 3-channel BGR (CV_8UC3). Owns its pixels when decoded; views the tensor's bytes when
  // the request sent raw pixels (see ImageFromInputs).
  cv::Mat bgr;
  MemoryBudget::Reservation memory;
};

// Decodes a JPEG or PNG (told apart by their magic bytes) into an 8-bit, 3-channel BGR image
// (CV_8UC3) that owns its pixels. Grayscale and palette images are expanded to BGR; 16-bit PNGs
// are reduced to 8 bits; an alpha channel is composited onto black.
// Errors: INVALID_ARGUMENT for empty input, a format that is neither JPEG nor PNG, corrupt data,
// more pixels than limits.max_pixels (saying so before decoding); OUT_OF_RANGE or
// RESOURCE_EXHAUSTED when the budget cannot hold the decoded image (see above).
absl::StatusOr<Image> DecodeImage(std::string_view encoded, const ImageLimits& limits = {});

// The image a vision request carries. `inputs` must hold exactly one of:
//   - a BYTES tensor of shape [1]: one encoded JPEG or PNG image, decoded with DecodeImage;
//   - a UINT8 tensor of shape [H, W, 3]: raw pixels, treated as BGR. The returned Mat views the
//     tensor's bytes without copying: it is valid only while the tensor's owner is alive, and its
//     pixels must not be written. Only the backend's work is reserved for it (the request body
//     holding the pixels is the HTTP server's to count).
// Inputs of other datatypes are ignored. Errors (naming the tensor): neither or both kinds
// present, a wrong shape, an undecodable image (INVALID_ARGUMENT); the limits as for
// DecodeImage.
absl::StatusOr<Image> ImageFromInputs(std::span<const Tensor> inputs,
                                      const ImageLimits& limits = {});

// Encodes a BGR image (CV_8UC3) as a baseline JPEG, 4:2:0, at `quality` (1..100). For tests and
// tools that need encoded images without imgcodecs.
absl::StatusOr<std::string> EncodeJpeg(const cv::Mat& bgr, int quality);

}  // namespace hivemesh
