// Image inputs for the vision backends: decoding JPEG/PNG request bytes into BGR pixels, and
// picking the image out of a request that carries either encoded bytes or raw pixels.
//
// JPEG is decoded with libturbojpeg and PNG with libpng's simplified API; OpenCV's imgcodecs is
// deliberately not used (it links ~120 libraries into the agent). Request data is untrusted:
// every failure is an absl::Status, never an exception or an abort.
//
// Thread safety: all functions are free functions without shared state; call them from any
// thread.
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "opencv2/core/mat.hpp"
#include "tensor/tensor.h"

namespace hivemesh {

// Largest accepted image side in pixels. Bounds the decode buffer (8192*8192*3 = 192 MiB) so a
// tiny, hostile header cannot make a worker allocate gigabytes.
inline constexpr int kMaxImageSide = 8192;

// Decodes a JPEG or PNG (told apart by their magic bytes) into an 8-bit, 3-channel BGR image
// (CV_8UC3) that owns its pixels. Grayscale and palette images are expanded to BGR; 16-bit PNGs
// are reduced to 8 bits; an alpha channel is composited onto black.
// Errors (InvalidArgument): empty input, a format that is neither JPEG nor PNG, corrupt data,
// an image wider or taller than kMaxImageSide.
absl::StatusOr<cv::Mat> DecodeImage(std::string_view encoded);

// The image a vision request carries. `inputs` must hold exactly one of:
//   - a BYTES tensor of shape [1]: one encoded JPEG or PNG image, decoded with DecodeImage;
//   - a UINT8 tensor of shape [H, W, 3]: raw pixels, treated as BGR. The returned Mat views the
//     tensor's bytes without copying: it is valid only while the tensor's owner is alive, and its
//     pixels must not be written.
// Inputs of other datatypes are ignored. Errors (InvalidArgument, naming the tensor): neither or
// both kinds present, a wrong shape, an undecodable image.
absl::StatusOr<cv::Mat> ImageFromInputs(std::span<const Tensor> inputs);

// Encodes a BGR image (CV_8UC3) as a baseline JPEG, 4:2:0, at `quality` (1..100). For tests and
// tools that need encoded images without imgcodecs.
absl::StatusOr<std::string> EncodeJpeg(const cv::Mat& bgr, int quality);

}  // namespace hivemesh
