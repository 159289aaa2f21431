#include "serving/backends/image/image_input.h"

#include <png.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "opencv2/core.hpp"
#include "opencv2/imgproc.hpp"
#include "serving/backends/backend_test_util.h"

namespace hivemesh {
namespace {

using ::testing::HasSubstr;
using testing_util::BytesTensor;

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

  absl::StatusOr<cv::Mat> decoded = DecodeImage(*jpeg);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->type(), CV_8UC3);
  EXPECT_EQ(decoded->size(), original.size());
  EXPECT_LT(MeanAbsDiff(*decoded, original), 3.0);  // lossy, but close
}

TEST(DecodeImage, JpegKeepsChannelOrder) {
  cv::Mat blue(64, 64, CV_8UC3, cv::Scalar(255, 0, 0));  // BGR: pure blue
  absl::StatusOr<cv::Mat> decoded = DecodeImage(*EncodeJpeg(blue, 90));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  const cv::Scalar mean = cv::mean(*decoded);
  EXPECT_GT(mean[0], 240);
  EXPECT_LT(mean[2], 15);
}

TEST(DecodeImage, PngBgrIsLossless) {
  const cv::Mat original = TestImage(97, 61);  // odd sizes: no stride assumptions
  const std::string png = EncodePng(original.data, original.cols, original.rows, PNG_FORMAT_BGR, 0);
  absl::StatusOr<cv::Mat> decoded = DecodeImage(png);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  ASSERT_EQ(decoded->size(), original.size());
  EXPECT_EQ(cv::norm(*decoded, original, cv::NORM_INF), 0);
}

TEST(DecodeImage, PngGrayscaleAndAlphaBecomeBgr) {
  std::vector<uint8_t> gray(32 * 16);
  for (size_t i = 0; i < gray.size(); ++i) gray[i] = static_cast<uint8_t>(i % 256);
  absl::StatusOr<cv::Mat> decoded = DecodeImage(EncodePng(gray.data(), 32, 16, PNG_FORMAT_GRAY, 0));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  ASSERT_EQ(decoded->type(), CV_8UC3);
  EXPECT_EQ(decoded->at<cv::Vec3b>(1, 3), cv::Vec3b(35, 35, 35));  // 1*32+3

  // Opaque RGBA: the alpha channel is dropped and R/B swap into BGR.
  std::vector<uint8_t> rgba = {255, 0, 0, 255, 0, 0, 255, 255};  // red, blue
  decoded = DecodeImage(EncodePng(rgba.data(), 2, 1, PNG_FORMAT_RGBA, 0));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->at<cv::Vec3b>(0, 0), cv::Vec3b(0, 0, 255));
  EXPECT_EQ(decoded->at<cv::Vec3b>(0, 1), cv::Vec3b(255, 0, 0));
}

TEST(DecodeImage, RejectsEmptyAndUnknownFormats) {
  absl::StatusOr<cv::Mat> empty = DecodeImage("");
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(empty.status().message(), HasSubstr("empty"));

  absl::StatusOr<cv::Mat> gif = DecodeImage("GIF89a\x01\x00\x01\x00");
  EXPECT_EQ(gif.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(gif.status().message(), HasSubstr("unknown image format"));
  EXPECT_THAT(gif.status().message(), HasSubstr("47 49 46 38"));  // "GIF8"
}

TEST(DecodeImage, RejectsCorruptData) {
  const std::string jpeg = *EncodeJpeg(TestImage(64, 64), 80);
  absl::StatusOr<cv::Mat> truncated = DecodeImage(std::string_view(jpeg).substr(0, 20));
  EXPECT_EQ(truncated.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(truncated.status().message(), HasSubstr("corrupt JPEG"));

  std::string garbage_jpeg = "\xFF\xD8\xFF";
  garbage_jpeg += std::string(200, '\x42');
  EXPECT_EQ(DecodeImage(garbage_jpeg).status().code(), absl::StatusCode::kInvalidArgument);

  const cv::Mat image = TestImage(40, 30);
  std::string png = EncodePng(image.data, image.cols, image.rows, PNG_FORMAT_BGR, 0);
  absl::StatusOr<cv::Mat> bad_header = DecodeImage(png.substr(0, 12));
  EXPECT_EQ(bad_header.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad_header.status().message(), HasSubstr("corrupt PNG"));

  // Valid header, damaged pixel data (the IDAT payload is overwritten).
  for (size_t i = 60; i < png.size() - 16; ++i) png[i] = static_cast<char>(i * 7);
  absl::StatusOr<cv::Mat> bad_data = DecodeImage(png);
  EXPECT_EQ(bad_data.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad_data.status().message(), HasSubstr("corrupt PNG"));
}

TEST(DecodeImage, RejectsOversizedImages) {
  // Wide but tiny once compressed: the limit applies to the header's size, before decoding.
  std::vector<uint8_t> row(kMaxImageSide + 1, 0);
  absl::StatusOr<cv::Mat> png =
      DecodeImage(EncodePng(row.data(), kMaxImageSide + 1, 1, PNG_FORMAT_GRAY, 0));
  EXPECT_EQ(png.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(png.status().message(), HasSubstr("larger than the limit of 8192x8192"));

  cv::Mat tall(kMaxImageSide + 8, 8, CV_8UC3, cv::Scalar::all(0));
  absl::StatusOr<cv::Mat> jpeg = DecodeImage(*EncodeJpeg(tall, 50));
  EXPECT_EQ(jpeg.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(jpeg.status().message(), HasSubstr("8x8200"));
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
      absl::StatusOr<cv::Mat> decoded = DecodeImage(mutated);
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
  absl::StatusOr<cv::Mat> image = ImageFromInputs(inputs);
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(image->size(), original.size());
}

TEST(ImageFromInputs, ViewsRawPixelsWithoutCopying) {
  const cv::Mat original = TestImage(50, 30);
  std::string bytes(reinterpret_cast<const char*>(original.data), original.total() * 3);
  const std::vector<Tensor> inputs = {
      Tensor::Owned("pixels", DataType::kUint8, {30, 50, 3}, std::move(bytes))};
  absl::StatusOr<cv::Mat> image = ImageFromInputs(inputs);
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
  EXPECT_TRUE(ImageFromInputs(inputs).ok());
}

TEST(ImageFromInputs, NeedsExactlyOneImage) {
  absl::StatusOr<cv::Mat> none = ImageFromInputs({});
  EXPECT_EQ(none.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(none.status().message(), HasSubstr("no image"));

  const std::string jpeg = *EncodeJpeg(TestImage(16, 16), 80);
  const std::vector<Tensor> both = {
      BytesTensor("image", jpeg),
      Tensor::Owned("pixels", DataType::kUint8, {16, 16, 3}, std::string(16 * 16 * 3, '\0'))};
  absl::StatusOr<cv::Mat> two = ImageFromInputs(both);
  EXPECT_EQ(two.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(two.status().message(), HasSubstr("not both"));
  EXPECT_THAT(two.status().message(), HasSubstr("'image'"));
  EXPECT_THAT(two.status().message(), HasSubstr("'pixels'"));
}

TEST(ImageFromInputs, NamesTheTensorInErrors) {
  const std::vector<Tensor> undecodable = {BytesTensor("image", "definitely not an image")};
  absl::StatusOr<cv::Mat> bad = ImageFromInputs(undecodable);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("input 'image': unknown image format"));

  std::string two_elements;
  AppendBytesElement(two_elements, "a");
  AppendBytesElement(two_elements, "b");
  const std::vector<Tensor> batch = {
      Tensor::Owned("image", DataType::kBytes, {2}, std::move(two_elements))};
  EXPECT_THAT(ImageFromInputs(batch).status().message(),
              HasSubstr("input 'image': expected shape [1]"));

  const std::vector<Tensor> gray = {
      Tensor::Owned("pixels", DataType::kUint8, {4, 4}, std::string(16, '\0'))};
  EXPECT_THAT(ImageFromInputs(gray).status().message(),
              HasSubstr("input 'pixels': expected shape [H,W,3]"));

  const std::vector<Tensor> short_data = {
      Tensor::Owned("pixels", DataType::kUint8, {4, 4, 3}, std::string(10, '\0'))};
  EXPECT_THAT(ImageFromInputs(short_data).status().message(),
              HasSubstr("input 'pixels': 10 bytes"));
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
