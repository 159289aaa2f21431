#include "jpeg_encoder.h"

#include <turbojpeg.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "base/strings.h"

namespace hivemesh::tools {

absl::StatusOr<std::unique_ptr<JpegEncoder>> JpegEncoder::Create(int quality) {
  if (quality < 1 || quality > 100) {
    return absl::InvalidArgumentError(StrCat("quality: ", quality, " is not in 1..100"));
  }
  tjhandle handle = tjInitCompress();
  if (handle == nullptr) {
    return absl::InternalError(StrCat("tjInitCompress: ", tjGetErrorStr2(nullptr)));
  }
  return std::unique_ptr<JpegEncoder>(new JpegEncoder(handle, quality));
}

JpegEncoder::~JpegEncoder() { tjDestroy(handle_); }

absl::StatusOr<std::string> JpegEncoder::Encode(const PixelView& pixels) {
  if (pixels.data == nullptr || pixels.width <= 0 || pixels.height <= 0) {
    return absl::InvalidArgumentError("empty image");
  }
  int format = 0;
  int subsamp = 0;
  switch (pixels.channels) {
    case 3:
      format = TJPF_BGR;
      subsamp = TJSAMP_420;
      break;
    case 1:
      format = TJPF_GRAY;
      subsamp = TJSAMP_GRAY;
      break;
    default:
      return absl::InvalidArgumentError(
          StrCat("unsupported channel count ", pixels.channels, " (want 1 or 3)"));
  }
  unsigned char* out = nullptr;
  unsigned long out_size = 0;  // NOLINT(runtime/int): libturbojpeg's type
  const int rc =
      tjCompress2(handle_, pixels.data, pixels.width, static_cast<int>(pixels.stride),
                  pixels.height, format, &out, &out_size, subsamp, quality_, TJFLAG_ACCURATEDCT);
  if (rc != 0) {
    std::string message = tjGetErrorStr2(handle_);
    tjFree(out);
    return absl::InternalError(StrCat("tjCompress2: ", message));
  }
  std::string jpeg(reinterpret_cast<const char*>(out), out_size);
  tjFree(out);
  return jpeg;
}

absl::Status JpegEncoder::EncodeToFile(const PixelView& pixels, const std::string& path) {
  absl::StatusOr<std::string> jpeg = Encode(pixels);
  if (!jpeg.ok()) return jpeg.status();
  const std::string tmp = path + ".part";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) {
    return absl::UnavailableError(StrCat(tmp, ": ", std::strerror(errno)));
  }
  const bool written = std::fwrite(jpeg->data(), 1, jpeg->size(), f) == jpeg->size();
  const int write_errno = errno;
  if (std::fclose(f) != 0 || !written) {
    std::remove(tmp.c_str());
    return absl::UnavailableError(
        StrCat(tmp, ": write failed: ", std::strerror(written ? errno : write_errno)));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int rename_errno = errno;
    std::remove(tmp.c_str());
    return absl::UnavailableError(StrCat(path, ": ", std::strerror(rename_errno)));
  }
  return absl::OkStatus();
}

}  // namespace hivemesh::tools
