#include "serving/backends/image/image_input.h"

#include <png.h>
#include <turbojpeg.h>
#include <zlib.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "base/memory_budget.h"
#include "base/rejections.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "opencv2/core.hpp"
#include "opencv2/imgproc.hpp"
#include "serving/backends/backend_test_util.h"

namespace hivemesh {
namespace {

using ::testing::HasSubstr;
using testing_util::BytesTensor;
using testing_util::JpegDeclaring;

// A smooth colour gradient with a few shapes: compresses well, and JPEG keeps it close.
cv::Mat TestImage(int width, int height) {
  cv::Mat image(height, width, CV_8UC3);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      image.at<cv::Vec3b>(y, x) =
          cv::Vec3b(static_cast<uchar>(x * 255 / width), static_cast<uchar>(y * 255 / height), 128);
    }
  }
  cv::circle(image, {width / 3, height / 2}, std::min(width, height) / 5, {20, 200, 40}, -1);
  return image;
}

// Encodes with libpng's simplified write API. `format` is a PNG_FORMAT_* of `pixels`' layout.
std::string EncodePng(const void* pixels, int width, int height, png_uint_32 format,
                      int row_stride) {
  png_image png;
  std::memset(&png, 0, sizeof(png));
  png.version = PNG_IMAGE_VERSION;
  png.width = width;
  png.height = height;
  png.format = format;
  png_alloc_size_t size = 0;
  EXPECT_TRUE(png_image_write_to_memory(&png, nullptr, &size, 0, pixels, row_stride, nullptr));
  std::string out(size, '\0');
  EXPECT_TRUE(png_image_write_to_memory(&png, out.data(), &size, 0, pixels, row_stride, nullptr))
      << png.message;
  out.resize(size);
  return out;
}

// DecodeImage and ImageFromInputs without a budget: the pixels only.
absl::StatusOr<cv::Mat> Decode(std::string_view encoded) {
  absl::StatusOr<Image> image = DecodeImage(encoded);
  if (!image.ok()) return image.status();
  return std::move(image->bgr);
}
absl::StatusOr<cv::Mat> FromInputs(std::span<const Tensor> inputs) {
  absl::StatusOr<Image> image = ImageFromInputs(inputs);
  if (!image.ok()) return image.status();
  return std::move(image->bgr);
}

// A PNG that is only its signature and header (IHDR): enough for the size to be read, nothing
// to decode. `width` x `height` RGB.
std::string PngHeaderOnly(uint32_t width, uint32_t height) {
  auto be32 = [](std::string& out, uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8) out += static_cast<char>((v >> shift) & 0xFF);
  };
  std::string chunk = "IHDR";
  be32(chunk, width);
  be32(chunk, height);
  chunk += std::string("\x08\x02\x00\x00\x00", 5);  // 8 bits, RGB, deflate, no filter, no interlace
  std::string png = "\x89PNG\r\n\x1a\n";
  be32(png, 13);
  png += chunk;
  be32(png,
       static_cast<uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(chunk.data()), chunk.size())));
  return png;
}

double MeanAbsDiff(const cv::Mat& a, const cv::Mat& b) {
  cv::Mat diff;
  cv::absdiff(a, b, diff);
  const cv::Scalar mean = cv::mean(diff);
  return (mean[0] + mean[1] + mean[2]) / 3;
}

TEST(DecodeImage, JpegRoundTrip) {
  const cv::Mat original = TestImage(160, 120);
  absl::StatusOr<std::string> jpeg = EncodeJpeg(original, 95);
  ASSERT_TRUE(jpeg.ok()) << jpeg.status();
  EXPECT_EQ(static_cast<unsigned char>((*jpeg)[0]), 0xFF);

  absl::StatusOr<cv::Mat> decoded = Decode(*jpeg);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->type(), CV_8UC3);
  EXPECT_EQ(decoded->size(), original.size());
  EXPECT_LT(MeanAbsDiff(*decoded, original), 3.0);  // lossy, but close
}

TEST(DecodeImage, JpegKeepsChannelOrder) {
  cv::Mat blue(64, 64, CV_8UC3, cv::Scalar(255, 0, 0));  // BGR: pure blue
  absl::StatusOr<cv::Mat> decoded = Decode(*EncodeJpeg(blue, 90));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  const cv::Scalar mean = cv::mean(*decoded);
  EXPECT_GT(mean[0], 240);
  EXPECT_LT(mean[2], 15);
}

TEST(DecodeImage, PngBgrIsLossless) {
  const cv::Mat original = TestImage(97, 61);  // odd sizes: no stride assumptions
  const std::string png = EncodePng(original.data, original.cols, original.rows, PNG_FORMAT_BGR, 0);
  absl::StatusOr<cv::Mat> decoded = Decode(png);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  ASSERT_EQ(decoded->size(), original.size());
  EXPECT_EQ(cv::norm(*decoded, original, cv::NORM_INF), 0);
}

TEST(DecodeImage, PngGrayscaleAndAlphaBecomeBgr) {
  std::vector<uint8_t> gray(32 * 16);
  for (size_t i = 0; i < gray.size(); ++i) gray[i] = static_cast<uint8_t>(i % 256);
  absl::StatusOr<cv::Mat> decoded = Decode(EncodePng(gray.data(), 32, 16, PNG_FORMAT_GRAY, 0));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  ASSERT_EQ(decoded->type(), CV_8UC3);
  EXPECT_EQ(decoded->at<cv::Vec3b>(1, 3), cv::Vec3b(35, 35, 35));  // 1*32+3

  // Opaque RGBA: the alpha channel is dropped and R/B swap into BGR.
  std::vector<uint8_t> rgba = {255, 0, 0, 255, 0, 0, 255, 255};  // red, blue
  decoded = Decode(EncodePng(rgba.data(), 2, 1, PNG_FORMAT_RGBA, 0));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->at<cv::Vec3b>(0, 0), cv::Vec3b(0, 0, 255));
  EXPECT_EQ(decoded->at<cv::Vec3b>(0, 1), cv::Vec3b(255, 0, 0));
}

TEST(DecodeImage, RejectsEmptyAndUnknownFormats) {
  absl::StatusOr<cv::Mat> empty = Decode("");
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(empty.status().message(), HasSubstr("empty"));

  absl::StatusOr<cv::Mat> gif = Decode("GIF89a\x01\x00\x01\x00");
  EXPECT_EQ(gif.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(gif.status().message(), HasSubstr("unknown image format"));
  EXPECT_THAT(gif.status().message(), HasSubstr("47 49 46 38"));  // "GIF8"
}

TEST(DecodeImage, RejectsCorruptData) {
  const std::string jpeg = *EncodeJpeg(TestImage(64, 64), 80);
  absl::StatusOr<cv::Mat> truncated = Decode(std::string_view(jpeg).substr(0, 20));
  EXPECT_EQ(truncated.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(truncated.status().message(), HasSubstr("corrupt JPEG"));

  std::string garbage_jpeg = "\xFF\xD8\xFF";
  garbage_jpeg += std::string(200, '\x42');
  EXPECT_EQ(Decode(garbage_jpeg).status().code(), absl::StatusCode::kInvalidArgument);

  const cv::Mat image = TestImage(40, 30);
  std::string png = EncodePng(image.data, image.cols, image.rows, PNG_FORMAT_BGR, 0);
  absl::StatusOr<cv::Mat> bad_header = Decode(png.substr(0, 12));
  EXPECT_EQ(bad_header.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad_header.status().message(), HasSubstr("corrupt PNG"));

  // Valid header, damaged pixel data (the IDAT payload is overwritten).
  for (size_t i = 60; i < png.size() - 16; ++i) png[i] = static_cast<char>(i * 7);
  absl::StatusOr<cv::Mat> bad_data = Decode(png);
  EXPECT_EQ(bad_data.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad_data.status().message(), HasSubstr("corrupt PNG"));
}

TEST(DecodeImage, RefusesImagesOverMaxPixelsBeforeDecoding) {
  // Headers alone: the size is read and refused before any pixel is decoded or reserved.
  auto budget = MemoryBudget::Create(64 << 20);
  Rejections rejections;
  ImageLimits limits;
  limits.budget = budget.get();
  limits.rejections = &rejections;
  absl::StatusOr<Image> png = DecodeImage(PngHeaderOnly(8192, 8192), limits);
  EXPECT_EQ(png.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(png.status().message(),
              HasSubstr("PNG image is 8192x8192 (67108864 pixels), more than "
                        "max_image_pixels (33177600)"));
  absl::StatusOr<Image> jpeg = DecodeImage(JpegDeclaring(65500, 65500), limits);
  EXPECT_EQ(jpeg.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(jpeg.status().message(), HasSubstr("max_image_pixels"));
  EXPECT_EQ(rejections.count(Rejection::kImageTooLarge), 2u);
  EXPECT_EQ(budget->used(), 0u);
  EXPECT_EQ(budget->refusals(), 0u);

  // A model may allow less than the node's default.
  limits.max_pixels = 640 * 480;
  EXPECT_THAT(DecodeImage(JpegDeclaring(641, 480), limits).status().message(),
              HasSubstr("more than max_image_pixels (307200)"));
  EXPECT_TRUE(DecodeImage(*EncodeJpeg(TestImage(640, 480), 80), limits).ok());

  // Wider than any JPEG: refused whatever max_image_pixels says.
  limits.max_pixels = int64_t{1} << 32;
  std::vector<uint8_t> row(kMaxImageSide + 1, 0);
  absl::StatusOr<Image> wide =
      DecodeImage(EncodePng(row.data(), kMaxImageSide + 1, 1, PNG_FORMAT_GRAY, 0), limits);
  EXPECT_EQ(wide.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(wide.status().message(), HasSubstr("wider or taller than 65535 pixels"));
}

TEST(DecodeImage, AFewBytesDeclaringAHugeFrameDecodeWithinTheLimit) {
  // 4096 x 4096 from 300 bytes: allowed by max_image_pixels, reserved, decoded as flat grey.
  auto budget = MemoryBudget::Create(256 << 20);
  ImageLimits limits;
  limits.budget = budget.get();
  absl::StatusOr<Image> image = DecodeImage(JpegDeclaring(4096, 4096), limits);
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(image->bgr.size(), cv::Size(4096, 4096));
  EXPECT_EQ(budget->used(), uint64_t{4096} * 4096 * 3);
  image = absl::InternalError("released");
  EXPECT_EQ(budget->used(), 0u);
}

TEST(DecodeImage, ReservesThePixelsAndTheBackendsWorkFromTheBudget) {
  const cv::Mat original = TestImage(200, 100);
  const std::string png = EncodePng(original.data, original.cols, original.rows, PNG_FORMAT_BGR, 0);
  // large_limit: 2 MiB - 256 KiB = 1835008 bytes.
  auto budget = MemoryBudget::Create(2 << 20, 64 * 1024);
  Rejections rejections;
  ImageLimits limits;
  limits.budget = budget.get();
  limits.rejections = &rejections;
  limits.work_bytes = [](int64_t w, int64_t h) { return static_cast<uint64_t>(w * h * 10); };
  {
    absl::StatusOr<Image> image = DecodeImage(png, limits);
    ASSERT_TRUE(image.ok()) << image.status();
    EXPECT_EQ(budget->used(), 200u * 100 * (3 + 10));
    EXPECT_EQ(cv::norm(image->bgr, original, cv::NORM_INF), 0);

    // While it is held, a second image does not fit: RESOURCE_EXHAUSTED, retry later.
    limits.work_bytes = [](int64_t w, int64_t h) { return static_cast<uint64_t>(w * h * 80); };
    absl::StatusOr<Image> second = DecodeImage(png, limits);
    EXPECT_EQ(second.status().code(), absl::StatusCode::kResourceExhausted) << second.status();
  }
  EXPECT_EQ(budget->used(), 0u);

  // More than the budget ever lends one request: OUT_OF_RANGE, naming memory_budget_mb.
  limits.work_bytes = [](int64_t w, int64_t h) { return static_cast<uint64_t>(w * h * 1000); };
  absl::StatusOr<Image> never = DecodeImage(png, limits);
  EXPECT_EQ(never.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(never.status().message(), HasSubstr("memory_budget_mb"));
  EXPECT_EQ(rejections.count(Rejection::kMemoryBudget), 2u);
  EXPECT_EQ(budget->used(), 0u);
}

TEST(DecodeImage, AJpegInManyScansReservesItsCoefficients) {
  const cv::Mat original = TestImage(256, 128);
  tjhandle tj = tjInitCompress();
  unsigned char* out = nullptr;
  unsigned long size = 0;
  ASSERT_EQ(tjCompress2(tj, original.data, original.cols, static_cast<int>(original.step),
                        original.rows, TJPF_BGR, &out, &size, TJSAMP_444, 90, TJFLAG_PROGRESSIVE),
            0);
  const std::string progressive(reinterpret_cast<const char*>(out), size);
  tjFree(out);
  tjDestroy(tj);
  auto budget = MemoryBudget::Create(64 << 20);
  ImageLimits limits;
  limits.budget = budget.get();
  absl::StatusOr<Image> image = DecodeImage(progressive, limits);
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(budget->used(), 256u * 128 * (3 + 8));
  EXPECT_LT(MeanAbsDiff(image->bgr, original), 3.0);
  image = absl::InternalError("released");
  // A baseline JPEG is decoded a row of blocks at a time: the pixels alone.
  image = DecodeImage(*EncodeJpeg(original, 90), limits);
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(budget->used(), 256u * 128 * 3);
}

TEST(ImageFromInputs, RawPixelsReserveOnlyTheBackendsWork) {
  const cv::Mat original = TestImage(40, 20);
  std::string bytes(reinterpret_cast<const char*>(original.data), original.total() * 3);
  const std::vector<Tensor> inputs = {
      Tensor::Owned("pixels", DataType::kUint8, {20, 40, 3}, std::move(bytes))};
  auto budget = MemoryBudget::Create(64 << 20);
  ImageLimits limits;
  limits.budget = budget.get();
  limits.work_bytes = [](int64_t w, int64_t h) { return static_cast<uint64_t>(w * h * 7); };
  absl::StatusOr<Image> image = ImageFromInputs(inputs, limits);
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(budget->used(), 40u * 20 * 7);

  limits.max_pixels = 799;
  absl::StatusOr<Image> over = ImageFromInputs(inputs, limits);
  EXPECT_EQ(over.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(over.status().message(),
              HasSubstr("input 'pixels': raw image is 40x20 (800 pixels), more than "
                        "max_image_pixels (799)"));
}

TEST(DecodeImage, MutatedImagesFailCleanly) {
  // Request bytes are untrusted: damaged JPEGs and PNGs either decode or return InvalidArgument
  // (run under the sanitizers, this also checks that no decode reads out of bounds).
  const cv::Mat image = TestImage(48, 40);
  const std::string seeds[] = {*EncodeJpeg(image, 85),
                               EncodePng(image.data, image.cols, image.rows, PNG_FORMAT_BGR, 0)};
  std::mt19937 rng(1234);
  for (const std::string& seed : seeds) {
    for (int round = 0; round < 300; ++round) {
      std::string mutated = seed;
      const int edits = 1 + static_cast<int>(rng() % 8);
      for (int e = 0; e < edits; ++e) {
        const size_t pos = 3 + rng() % (mutated.size() - 3);  // keep the magic bytes
        mutated[pos] = static_cast<char>(rng());
      }
      if (round % 5 == 0) mutated.resize(3 + rng() % (mutated.size() - 3));
      absl::StatusOr<cv::Mat> decoded = Decode(mutated);
      if (decoded.ok()) {
        EXPECT_EQ(decoded->type(), CV_8UC3);
      } else {
        EXPECT_EQ(decoded.status().code(), absl::StatusCode::kInvalidArgument) << decoded.status();
      }
    }
  }
}

TEST(ImageFromInputs, DecodesAnEncodedImage) {
  const cv::Mat original = TestImage(80, 60);
  const std::vector<Tensor> inputs = {BytesTensor("image", *EncodeJpeg(original, 95))};
  absl::StatusOr<cv::Mat> image = FromInputs(inputs);
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(image->size(), original.size());
}

TEST(ImageFromInputs, ViewsRawPixelsWithoutCopying) {
  const cv::Mat original = TestImage(50, 30);
  std::string bytes(reinterpret_cast<const char*>(original.data), original.total() * 3);
  const std::vector<Tensor> inputs = {
      Tensor::Owned("pixels", DataType::kUint8, {30, 50, 3}, std::move(bytes))};
  absl::StatusOr<cv::Mat> image = FromInputs(inputs);
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(image->size(), cv::Size(50, 30));
  EXPECT_EQ(image->type(), CV_8UC3);
  EXPECT_EQ(reinterpret_cast<const char*>(image->data), inputs[0].data().data());
  EXPECT_EQ(cv::norm(*image, original, cv::NORM_INF), 0);
}

TEST(ImageFromInputs, IgnoresOtherDatatypes) {
  const cv::Mat original = TestImage(16, 16);
  std::string bytes(reinterpret_cast<const char*>(original.data), original.total() * 3);
  const std::vector<Tensor> inputs = {
      Tensor::Owned("threshold", DataType::kFp32, {1}, std::string(4, '\0')),
      Tensor::Owned("pixels", DataType::kUint8, {16, 16, 3}, std::move(bytes))};
  EXPECT_TRUE(FromInputs(inputs).ok());
}

TEST(ImageFromInputs, NeedsExactlyOneImage) {
  absl::StatusOr<cv::Mat> none = FromInputs({});
  EXPECT_EQ(none.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(none.status().message(), HasSubstr("no image"));

  const std::string jpeg = *EncodeJpeg(TestImage(16, 16), 80);
  const std::vector<Tensor> both = {
      BytesTensor("image", jpeg),
      Tensor::Owned("pixels", DataType::kUint8, {16, 16, 3}, std::string(16 * 16 * 3, '\0'))};
  absl::StatusOr<cv::Mat> two = FromInputs(both);
  EXPECT_EQ(two.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(two.status().message(), HasSubstr("not both"));
  EXPECT_THAT(two.status().message(), HasSubstr("'image'"));
  EXPECT_THAT(two.status().message(), HasSubstr("'pixels'"));
}

TEST(ImageFromInputs, NamesTheTensorInErrors) {
  const std::vector<Tensor> undecodable = {BytesTensor("image", "definitely not an image")};
  absl::StatusOr<cv::Mat> bad = FromInputs(undecodable);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("input 'image': unknown image format"));

  std::string two_elements;
  AppendBytesElement(two_elements, "a");
  AppendBytesElement(two_elements, "b");
  const std::vector<Tensor> batch = {
      Tensor::Owned("image", DataType::kBytes, {2}, std::move(two_elements))};
  EXPECT_THAT(FromInputs(batch).status().message(), HasSubstr("input 'image': expected shape [1]"));

  const std::vector<Tensor> gray = {
      Tensor::Owned("pixels", DataType::kUint8, {4, 4}, std::string(16, '\0'))};
  EXPECT_THAT(FromInputs(gray).status().message(),
              HasSubstr("input 'pixels': expected shape [H,W,3]"));

  const std::vector<Tensor> short_data = {
      Tensor::Owned("pixels", DataType::kUint8, {4, 4, 3}, std::string(10, '\0'))};
  EXPECT_THAT(FromInputs(short_data).status().message(), HasSubstr("input 'pixels': 10 bytes"));
}

TEST(EncodeJpeg, RejectsBadArguments) {
  EXPECT_EQ(EncodeJpeg(cv::Mat(), 90).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(EncodeJpeg(cv::Mat(8, 8, CV_8UC1), 90).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(EncodeJpeg(TestImage(8, 8), 0).status().code(), absl::StatusCode::kInvalidArgument);
  // A region of interest (rows with padding) encodes exactly like a compact copy of it.
  const cv::Mat big = TestImage(64, 64);
  const cv::Mat roi = big(cv::Rect(8, 8, 32, 16));
  ASSERT_FALSE(roi.isContinuous());
  absl::StatusOr<std::string> from_roi = EncodeJpeg(roi, 95);
  ASSERT_TRUE(from_roi.ok()) << from_roi.status();
  EXPECT_EQ(*from_roi, *EncodeJpeg(roi.clone(), 95));
}

}  // namespace
}  // namespace hivemesh
