// JpegEncoder: compresses 8-bit BGR (or grey) pixel buffers to baseline JPEG with libturbojpeg,
// and writes them to files. Used by the extract-frames tool; OpenCV's imgcodecs is deliberately
// not used (it links ~120 libraries).
//
// Thread safety: one encoder per thread (it owns a libturbojpeg handle, which is not shared).
// Ownership: Encode returns a buffer the caller owns; the pixels passed in are only read.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace hivemesh::tools {

// A view of an image in memory: rows of `width * channels` bytes, `stride` bytes apart.
struct PixelView {
  const std::uint8_t* data = nullptr;
  int width = 0;
  int height = 0;
  int channels = 3;  // 3 = BGR (OpenCV's order), 1 = grey
  std::size_t stride = 0;
};

class JpegEncoder {
 public:
  // REQUIRES: 1 <= quality <= 100 (checked: InvalidArgument otherwise).
  static absl::StatusOr<std::unique_ptr<JpegEncoder>> Create(int quality);
  ~JpegEncoder();
  JpegEncoder(const JpegEncoder&) = delete;
  JpegEncoder& operator=(const JpegEncoder&) = delete;

  // The JPEG bytes of `pixels` (4:2:0 chroma subsampling for colour, grey stays grey).
  // InvalidArgument for an empty view or an unsupported channel count.
  absl::StatusOr<std::string> Encode(const PixelView& pixels);

  // Encodes `pixels` and writes the result to `path`, replacing any file there: the bytes go to
  // a temporary file next to it that is then renamed, so a reader never sees half a JPEG.
  absl::Status EncodeToFile(const PixelView& pixels, const std::string& path);

 private:
  JpegEncoder(void* handle, int quality) : handle_(handle), quality_(quality) {}
  void* handle_;  // tjhandle, owned
  int quality_;
};

}  // namespace hivemesh::tools
