#include "serving/backends/image/image_input.h"

#include <png.h>
#include <turbojpeg.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <utility>

#include "absl/strings/str_format.h"
#include "base/rejections.h"
#include "base/strings.h"

namespace hivemesh {
namespace {

constexpr unsigned char kJpegMagic[] = {0xFF, 0xD8, 0xFF};
constexpr unsigned char kPngMagic[] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};

// A JPEG decoded in more than one scan (progressive, or a sequential one whose first scan lacks
// some components) keeps every DCT coefficient of the image until the last scan: 64 two-byte
// coefficients per 8x8 block and component, at most 4 components at full resolution.
constexpr uint64_t kJpegCoefficientBytesPerPixel = 2 * 4;

template <size_t N>
bool HasMagic(std::string_view data, const unsigned char (&magic)[N]) {
  return data.size() >= N && std::memcmp(data.data(), magic, N) == 0;
}

struct TjDeleter {
  void operator()(void* handle) const { tjDestroy(handle); }
};
using TjHandle = std::unique_ptr<void, TjDeleter>;

// Checks the size an image's header declares against the limits (counting a refusal).
absl::Status CheckSize(const char* format, int64_t width, int64_t height,
                       const ImageLimits& limits) {
  if (width <= 0 || height <= 0) {
    return absl::InvalidArgumentError(
        StrCat("corrupt ", format, " header: empty image size ", width, "x", height));
  }
  std::string refused;
  if (width > kMaxImageSide || height > kMaxImageSide) {
    refused = StrCat(format, " image is ", width, "x", height, ", wider or taller than ",
                     kMaxImageSide, " pixels");
  } else if (width * height > limits.max_pixels) {  // both sides < 2^16: no overflow
    refused = StrCat(format, " image is ", width, "x", height, " (", width * height,
                     " pixels), more than max_image_pixels (", limits.max_pixels, ") allows");
  }
  if (!refused.empty()) {
    if (limits.rejections != nullptr) {
      limits.rejections->Note(Rejection::kImageTooLarge, "", refused);
    }
    return absl::InvalidArgumentError(
        StrCat(refused,
               "; send a smaller image (the model's options.max_image_pixels or the "
               "node's max_image_pixels sets the limit)"));
  }
  return absl::OkStatus();
}

// Checks the size an image's header declares, then reserves what decoding it and the backend's
// work on it need: `decode_bytes` beyond the BGR pixels (a decoder's own buffers).
absl::StatusOr<MemoryBudget::Reservation> Admit(const char* format, int64_t width, int64_t height,
                                                uint64_t decode_bytes, bool decoded, uint64_t held,
                                                const ImageLimits& limits) {
  if (absl::Status s = CheckSize(format, width, height, limits); !s.ok()) return s;
  const uint64_t pixels = static_cast<uint64_t>(width) * static_cast<uint64_t>(height);
  uint64_t bytes = decode_bytes;
  if (decoded) bytes += pixels * 3;
  if (limits.work_bytes) bytes += limits.work_bytes(width, height);
  absl::StatusOr<MemoryBudget::Reservation> reserved =
      ReserveFor(limits.budget, bytes, StrCat("a ", width, "x", height, " image"),
                 "send a smaller image", held);
  if (!reserved.ok() && limits.rejections != nullptr) {
    limits.rejections->Note(Rejection::kMemoryBudget, "", MessageOf(reserved.status()));
  }
  return reserved;
}

// True if a JPEG is decoded in more than one scan: its frame is progressive (SOF2, 6, 10, 14),
// or its first scan carries fewer components than its frame. Reads markers up to the first
// scan; anything it does not understand counts as one scan (the decoder then says what is
// wrong).
bool JpegHasMultipleScans(std::string_view data) {
  const auto* p = reinterpret_cast<const unsigned char*>(data.data());
  size_t pos = 2;  // after SOI
  int frame_components = 0;
  while (pos + 4 <= data.size()) {
    if (p[pos] != 0xFF) return false;
    const unsigned char marker = p[pos + 1];
    if (marker == 0xFF) {  // fill byte
      ++pos;
      continue;
    }
    const size_t length = (size_t{p[pos + 2]} << 8) | p[pos + 3];
    if (length < 2 || pos + 2 + length > data.size()) return false;
    const bool sof =
        marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
    if (sof) {
      if (marker == 0xC2 || marker == 0xC6 || marker == 0xCA || marker == 0xCE) return true;
      if (length >= 8) frame_components = p[pos + 9];
    } else if (marker == 0xDA) {  // start of scan
      return length >= 3 && p[pos + 4] < frame_components;
    }
    pos += 2 + length;
  }
  return false;
}

absl::StatusOr<Image> DecodeJpeg(std::string_view encoded, const ImageLimits& limits) {
  TjHandle tj(tjInitDecompress());
  if (!tj) return absl::InternalError(StrCat("tjInitDecompress: ", tjGetErrorStr2(nullptr)));
  const auto* buf = reinterpret_cast<const unsigned char*>(encoded.data());
  int width = 0, height = 0, subsamp = 0, colorspace = 0;
  if (tjDecompressHeader3(tj.get(), buf, encoded.size(), &width, &height, &subsamp, &colorspace) !=
      0) {
    return absl::InvalidArgumentError(StrCat("corrupt JPEG header: ", tjGetErrorStr2(tj.get())));
  }
  const uint64_t coefficients = JpegHasMultipleScans(encoded)
                                    ? kJpegCoefficientBytesPerPixel * static_cast<uint64_t>(width) *
                                          static_cast<uint64_t>(height)
                                    : 0;
  absl::StatusOr<MemoryBudget::Reservation> memory =
      Admit("JPEG", width, height, coefficients, /*decoded=*/true, encoded.size(), limits);
  if (!memory.ok()) return memory.status();
  Image image{cv::Mat(height, width, CV_8UC3), *std::move(memory)};
  // TJFLAG_LIMITSCANS rejects progressive JPEGs with absurd scan counts (a decode-time DoS).
  // Warnings (e.g. extraneous bytes, a truncated tail) are tolerated like other decoders do;
  // only fatal errors fail the request.
  if (tjDecompress2(tj.get(), buf, encoded.size(), image.bgr.data, width,
                    static_cast<int>(image.bgr.step), height, TJPF_BGR, TJFLAG_LIMITSCANS) != 0 &&
      tjGetErrorCode(tj.get()) != TJERR_WARNING) {
    return absl::InvalidArgumentError(StrCat("corrupt JPEG data: ", tjGetErrorStr2(tj.get())));
  }
  return image;
}

// The width and height a PNG's first chunk (IHDR, which must come first) declares, read before
// libpng is given the image; nullopt if the bytes do not start with an IHDR chunk (libpng then
// says what is wrong).
std::optional<std::pair<uint32_t, uint32_t>> PngDeclaredSize(std::string_view png) {
  // Signature (8), chunk length (4) = 13, "IHDR", width (4), height (4), big-endian.
  if (png.size() < 24 || png.substr(12, 4) != "IHDR") return std::nullopt;
  const auto* p = reinterpret_cast<const unsigned char*>(png.data());
  auto be32 = [p](size_t at) {
    return (uint32_t{p[at]} << 24) | (uint32_t{p[at + 1]} << 16) | (uint32_t{p[at + 2]} << 8) |
           uint32_t{p[at + 3]};
  };
  if (be32(8) != 13) return std::nullopt;
  return std::make_pair(be32(16), be32(20));
}

absl::StatusOr<Image> DecodePng(std::string_view encoded, const ImageLimits& limits) {
  // The declared size is checked from the header's bytes first: an image over the limits is
  // refused without libpng allocating anything for it.
  if (const auto size = PngDeclaredSize(encoded)) {
    if (absl::Status s = CheckSize("PNG", size->first, size->second, limits); !s.ok()) return s;
  }
  png_image png;
  std::memset(&png, 0, sizeof(png));
  png.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&png, encoded.data(), encoded.size())) {
    // libpng frees its state itself when a call fails.
    return absl::InvalidArgumentError(StrCat("corrupt PNG header: ", png.message));
  }
  // libpng's simplified reader decodes a row at a time into the caller's buffer.
  absl::StatusOr<MemoryBudget::Reservation> memory =
      Admit("PNG", png.width, png.height, 0, /*decoded=*/true, encoded.size(), limits);
  if (!memory.ok()) {
    png_image_free(&png);
    return memory.status();
  }
  png.format = PNG_FORMAT_BGR;
  Image image{cv::Mat(static_cast<int>(png.height), static_cast<int>(png.width), CV_8UC3),
              *std::move(memory)};
  const png_color black = {0, 0, 0};
  if (!png_image_finish_read(&png, &black, image.bgr.data, static_cast<png_int_32>(image.bgr.step),
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

// The tensor's name before an error's message, keeping its code.
absl::Status Named(const Tensor& t, const absl::Status& s) {
  return absl::Status(s.code(), StrCat("input '", t.name(), "': ", s.message()));
}

}  // namespace

absl::StatusOr<Image> DecodeImage(std::string_view encoded, const ImageLimits& limits) {
  if (encoded.empty()) return absl::InvalidArgumentError("empty image data");
  if (HasMagic(encoded, kJpegMagic)) return DecodeJpeg(encoded, limits);
  if (HasMagic(encoded, kPngMagic)) return DecodePng(encoded, limits);
  return absl::InvalidArgumentError(StrCat("unknown image format (first bytes ",
                                           FirstBytesHex(encoded), "); expected JPEG or PNG"));
}

absl::StatusOr<Image> ImageFromInputs(std::span<const Tensor> inputs, const ImageLimits& limits) {
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
    if (absl::Status s = ValidateBytesRaw(t.data(), 1); !s.ok()) return Named(t, s);
    std::string_view image_bytes;
    ForEachBytesElement(t.data(), [&](std::string_view e) { image_bytes = e; });
    absl::StatusOr<Image> image = DecodeImage(image_bytes, limits);
    if (!image.ok()) return Named(t, image.status());
    return image;
  }

  const Tensor& t = *pixels;
  const Shape& shape = t.shape();
  if (shape.size() != 3 || shape[2] != 3 || shape[0] <= 0 || shape[1] <= 0) {
    return absl::InvalidArgumentError(StrCat(
        "input '", t.name(), "': expected shape [H,W,3] (BGR pixels), got ", ShapeString(shape)));
  }
  // Sides beyond kMaxImageSide are refused first, so the product below cannot overflow.
  const bool huge = shape[0] > kMaxImageSide || shape[1] > kMaxImageSide;
  const uint64_t expected =
      huge ? 0 : static_cast<uint64_t>(shape[0]) * static_cast<uint64_t>(shape[1]) * 3;
  if (!huge && t.data().size() != expected) {
    return absl::InvalidArgumentError(StrCat("input '", t.name(), "': ", t.data().size(),
                                             " bytes of data for shape ", ShapeString(shape),
                                             ", expected ", expected));
  }
  absl::StatusOr<MemoryBudget::Reservation> memory =
      Admit("raw", shape[1], shape[0], 0, /*decoded=*/false, t.data().size(), limits);
  if (!memory.ok()) return Named(t, memory.status());
  // A view of the request's bytes. cv::Mat has no const variant; callers only read it.
  return Image{cv::Mat(static_cast<int>(shape[0]), static_cast<int>(shape[1]), CV_8UC3,
                       const_cast<char*>(t.data().data())),
               *std::move(memory)};
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
