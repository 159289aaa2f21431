#include "serving/backends/image/image_input.h"

#include <png.h>
#include <turbojpeg.h>

#include <cstdint>
#include <cstring>
#include <memory>

#include "absl/strings/str_format.h"
#include "base/strings.h"

namespace hivemesh {
namespace {

constexpr unsigned char kJpegMagic[] = {0xFF, 0xD8, 0xFF};
constexpr unsigned char kPngMagic[] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};

template <size_t N>
bool HasMagic(std::string_view data, const unsigned char (&magic)[N]) {
  return data.size() >= N && std::memcmp(data.data(), magic, N) == 0;
}

struct TjDeleter {
  void operator()(void* handle) const { tjDestroy(handle); }
};
using TjHandle = std::unique_ptr<void, TjDeleter>;

absl::Status CheckSize(const char* format, int64_t width, int64_t height) {
  if (width <= 0 || height <= 0) {
    return absl::InvalidArgumentError(
        StrCat("corrupt ", format, " header: empty image size ", width, "x", height));
  }
  if (width > kMaxImageSide || height > kMaxImageSide) {
    return absl::InvalidArgumentError(StrCat(format, " image is ", width, "x", height,
                                             ", larger than the limit of ", kMaxImageSide, "x",
                                             kMaxImageSide));
  }
  return absl::OkStatus();
}

absl::StatusOr<cv::Mat> DecodeJpeg(std::string_view encoded) {
  TjHandle tj(tjInitDecompress());
  if (!tj) return absl::InternalError(StrCat("tjInitDecompress: ", tjGetErrorStr2(nullptr)));
  const auto* buf = reinterpret_cast<const unsigned char*>(encoded.data());
  int width = 0, height = 0, subsamp = 0, colorspace = 0;
  if (tjDecompressHeader3(tj.get(), buf, encoded.size(), &width, &height, &subsamp, &colorspace) !=
      0) {
    return absl::InvalidArgumentError(StrCat("corrupt JPEG header: ", tjGetErrorStr2(tj.get())));
  }
  if (absl::Status s = CheckSize("JPEG", width, height); !s.ok()) return s;
  cv::Mat image(height, width, CV_8UC3);
  // TJFLAG_LIMITSCANS rejects progressive JPEGs with absurd scan counts (a decode-time DoS).
  // Warnings (e.g. extraneous bytes, a truncated tail) are tolerated like other decoders do;
  // only fatal errors fail the request.
  if (tjDecompress2(tj.get(), buf, encoded.size(), image.data, width, static_cast<int>(image.step),
                    height, TJPF_BGR, TJFLAG_LIMITSCANS) != 0 &&
      tjGetErrorCode(tj.get()) != TJERR_WARNING) {
    return absl::InvalidArgumentError(StrCat("corrupt JPEG data: ", tjGetErrorStr2(tj.get())));
  }
  return image;
}

absl::StatusOr<cv::Mat> DecodePng(std::string_view encoded) {
  png_image png;
  std::memset(&png, 0, sizeof(png));
  png.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&png, encoded.data(), encoded.size())) {
    // libpng frees its state itself when a call fails.
    return absl::InvalidArgumentError(StrCat("corrupt PNG header: ", png.message));
  }
  if (absl::Status s = CheckSize("PNG", png.width, png.height); !s.ok()) {
    png_image_free(&png);
    return s;
  }
  png.format = PNG_FORMAT_BGR;
  cv::Mat image(static_cast<int>(png.height), static_cast<int>(png.width), CV_8UC3);
  const png_color black = {0, 0, 0};
  if (!png_image_finish_read(&png, &black, image.data, static_cast<png_int_32>(image.step),
                             nullptr)) {
    return absl::InvalidArgumentError(StrCat("corrupt PNG data: ", png.message));
  }
  return image;
}

std::string FirstBytesHex(std::string_view data) {
  std::string out;
  for (size_t i = 0; i < data.size() && i < 4; ++i) {
    absl::StrAppendFormat(&out, "%s%02x", i == 0 ? "" : " ", static_cast<unsigned char>(data[i]));
  }
  return out;
}

}  // namespace

absl::StatusOr<cv::Mat> DecodeImage(std::string_view encoded) {
  if (encoded.empty()) return absl::InvalidArgumentError("empty image data");
  if (HasMagic(encoded, kJpegMagic)) return DecodeJpeg(encoded);
  if (HasMagic(encoded, kPngMagic)) return DecodePng(encoded);
  return absl::InvalidArgumentError(StrCat("unknown image format (first bytes ",
                                           FirstBytesHex(encoded), "); expected JPEG or PNG"));
}

absl::StatusOr<cv::Mat> ImageFromInputs(std::span<const Tensor> inputs) {
  const Tensor* encoded = nullptr;
  const Tensor* pixels = nullptr;
  for (const Tensor& t : inputs) {
    const Tensor** slot = t.type() == DataType::kBytes   ? &encoded
                          : t.type() == DataType::kUint8 ? &pixels
                                                         : nullptr;
    if (slot == nullptr) continue;
    if (*slot != nullptr) {
      return absl::InvalidArgumentError(StrCat("inputs '", (*slot)->name(), "' and '", t.name(),
                                               "': expected one image, got two ",
                                               std::string(DataTypeName(t.type())), " tensors"));
    }
    *slot = &t;
  }
  if (encoded != nullptr && pixels != nullptr) {
    return absl::InvalidArgumentError(
        StrCat("inputs '", encoded->name(), "' and '", pixels->name(),
               "': send either an encoded image (BYTES) or raw pixels (UINT8), not both"));
  }
  if (encoded == nullptr && pixels == nullptr) {
    return absl::InvalidArgumentError(
        "no image: send an encoded JPEG/PNG as a BYTES tensor of shape [1] or BGR pixels as a "
        "UINT8 tensor of shape [H,W,3]");
  }

  if (encoded != nullptr) {
    const Tensor& t = *encoded;
    absl::StatusOr<int64_t> count = ElementCount(t.shape());
    if (!count.ok() || *count != 1) {
      return absl::InvalidArgumentError(StrCat("input '", t.name(), "': expected shape [1] ",
                                               "(one encoded image), got ",
                                               ShapeString(t.shape())));
    }
    if (absl::Status s = ValidateBytesRaw(t.data(), 1); !s.ok()) {
      return absl::InvalidArgumentError(StrCat("input '", t.name(), "': ", s.message()));
    }
    std::string_view image_bytes;
    ForEachBytesElement(t.data(), [&](std::string_view e) { image_bytes = e; });
    absl::StatusOr<cv::Mat> image = DecodeImage(image_bytes);
    if (!image.ok()) {
      return absl::Status(image.status().code(),
                          StrCat("input '", t.name(), "': ", image.status().message()));
    }
    return image;
  }

  const Tensor& t = *pixels;
  const Shape& shape = t.shape();
  if (shape.size() != 3 || shape[2] != 3 || shape[0] <= 0 || shape[1] <= 0) {
    return absl::InvalidArgumentError(StrCat(
        "input '", t.name(), "': expected shape [H,W,3] (BGR pixels), got ", ShapeString(shape)));
  }
  if (shape[0] > kMaxImageSide || shape[1] > kMaxImageSide) {
    return absl::InvalidArgumentError(StrCat("input '", t.name(), "': image is ", shape[1], "x",
                                             shape[0], ", larger than the limit of ", kMaxImageSide,
                                             "x", kMaxImageSide));
  }
  const size_t expected = static_cast<size_t>(shape[0] * shape[1] * 3);
  if (t.data().size() != expected) {
    return absl::InvalidArgumentError(StrCat("input '", t.name(), "': ", t.data().size(),
                                             " bytes of data for shape ", ShapeString(shape),
                                             ", expected ", expected));
  }
  // A view of the request's bytes. cv::Mat has no const variant; callers only read it.
  return cv::Mat(static_cast<int>(shape[0]), static_cast<int>(shape[1]), CV_8UC3,
                 const_cast<char*>(t.data().data()));
}

absl::StatusOr<std::string> EncodeJpeg(const cv::Mat& bgr, int quality) {
  if (bgr.empty() || bgr.type() != CV_8UC3) {
    return absl::InvalidArgumentError("EncodeJpeg: expected a non-empty CV_8UC3 image");
  }
  if (quality < 1 || quality > 100) {
    return absl::InvalidArgumentError(
        StrCat("EncodeJpeg: quality ", quality, " is outside 1..100"));
  }
  TjHandle tj(tjInitCompress());
  if (!tj) return absl::InternalError(StrCat("tjInitCompress: ", tjGetErrorStr2(nullptr)));
  unsigned char* out = nullptr;
  unsigned long out_size = 0;
  const int rc = tjCompress2(tj.get(), bgr.data, bgr.cols, static_cast<int>(bgr.step), bgr.rows,
                             TJPF_BGR, &out, &out_size, TJSAMP_420, quality, 0);
  std::unique_ptr<unsigned char, void (*)(unsigned char*)> owned(out, tjFree);
  if (rc != 0) {
    return absl::InternalError(StrCat("tjCompress2: ", tjGetErrorStr2(tj.get())));
  }
  return std::string(reinterpret_cast<const char*>(out), out_size);
}

}  // namespace hivemesh
