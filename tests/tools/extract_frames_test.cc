// The extract-frames tool against the real sample video (vtest.avi from Debian's opencv-doc,
// fetched by scripts/fetch-samples.sh; a failed fetch fails the tests, it never skips them):
// frame count, numbering, JPEG validity and content, options, and exit codes on bad input.
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <turbojpeg.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "opencv2/core.hpp"
#include "opencv2/videoio.hpp"
#include "support/agent_process.h"

extern char** environ;

namespace {

namespace fs = std::filesystem;
using hivemesh::test::TempDir;

constexpr int kVideoFrames = 795;
constexpr int kWidth = 768;
constexpr int kHeight = 576;

struct RunResult {
  int exit_code = -1;  // -1: did not exit normally
  std::string out;
  std::string err;
};

std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

// Runs argv[0] with argv, stdout and stderr captured through files in `dir`.
RunResult RunProgram(const std::vector<std::string>& argv, const std::string& dir) {
  const std::string out_path = dir + "/stdout";
  const std::string err_path = dir + "/stderr";
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0644);
  posix_spawn_file_actions_addopen(&actions, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0644);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  RunResult result;
  const int rc = posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    result.err = "posix_spawn failed: " + std::to_string(rc);
    return result;
  }
  int status = 0;
  waitpid(pid, &status, 0);
  if (WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  result.out = ReadFile(out_path);
  result.err = ReadFile(err_path);
  return result;
}

// The sample folder, fetched once per process; empty with `error` set when the fetch failed.
const std::string& SamplesDir(std::string* error) {
  static std::string dir;
  static std::string fetch_error;
  static bool fetched = false;
  if (!fetched) {
    fetched = true;
    TempDir tmp;
    RunResult r =
        RunProgram({std::string(HIVEMESH_SOURCE_DIR) + "/scripts/fetch-samples.sh"}, tmp.path());
    std::string path = r.out.substr(0, r.out.find('\n'));
    if (r.exit_code != 0 || !fs::exists(path + "/vtest.avi")) {
      fetch_error =
          "scripts/fetch-samples.sh failed (exit " + std::to_string(r.exit_code) + "): " + r.err;
    } else {
      dir = path;
    }
  }
  *error = fetch_error;
  return dir;
}

std::vector<std::string> Listing(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

std::vector<std::string> FrameNames(int n) {
  std::vector<std::string> names;
  for (int i = 1; i <= n; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "frame-%04d.jpg", i);
    names.push_back(name);
  }
  return names;
}

// Decodes a JPEG file to BGR with libturbojpeg; an empty Mat (and a test failure) if invalid.
cv::Mat DecodeJpeg(const std::string& path) {
  const std::string bytes = ReadFile(path);
  tjhandle tj = tjInitDecompress();
  int width = 0, height = 0, subsamp = 0, colorspace = 0;
  const auto* data = reinterpret_cast<const unsigned char*>(bytes.data());
  if (tjDecompressHeader3(tj, data, bytes.size(), &width, &height, &subsamp, &colorspace) != 0) {
    ADD_FAILURE() << path << ": not a JPEG: " << tjGetErrorStr2(tj);
    tjDestroy(tj);
    return {};
  }
  cv::Mat image(height, width, CV_8UC3);
  if (tjDecompress2(tj, data, bytes.size(), image.data, width, static_cast<int>(image.step), height,
                    TJPF_BGR, 0) != 0) {
    ADD_FAILURE() << path << ": corrupt JPEG data: " << tjGetErrorStr2(tj);
    image.release();
  }
  tjDestroy(tj);
  return image;
}

// Mean absolute difference per channel value between two images of the same size.
double MeanAbsDiff(const cv::Mat& a, const cv::Mat& b) {
  cv::Mat diff;
  cv::absdiff(a, b, diff);
  const cv::Scalar s = cv::mean(diff);
  return (s[0] + s[1] + s[2]) / 3;
}

// Source frames `indices` (0-based) of the video, decoded with videoio.
std::vector<cv::Mat> SourceFrames(const std::string& video, const std::vector<int>& indices) {
  cv::VideoCapture capture(video, cv::CAP_FFMPEG);
  std::vector<cv::Mat> frames;
  cv::Mat frame;
  const int last = *std::max_element(indices.begin(), indices.end());
  for (int i = 0; i <= last && capture.read(frame); ++i) {
    if (std::find(indices.begin(), indices.end(), i) != indices.end())
      frames.push_back(frame.clone());
  }
  return frames;
}

class ExtractFramesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string error;
    samples_ = SamplesDir(&error);
    ASSERT_TRUE(error.empty()) << error;
    video_ = samples_ + "/vtest.avi";
    out_ = tmp_.path() + "/frames";
  }

  RunResult Extract(std::vector<std::string> args) {
    args.insert(args.begin(), EXTRACT_FRAMES_BINARY);
    return RunProgram(args, tmp_.path());
  }

  TempDir tmp_;
  std::string samples_;
  std::string video_;
  std::string out_;
};

TEST_F(ExtractFramesTest, DecodesEveryFrameAndWritesOneInTen) {
  RunResult r = Extract({video_, out_, "--every", "10"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // 795 frames decoded; frames 0, 10, ..., 790 kept.
  EXPECT_NE(r.out.find("wrote 80 JPEG frames (768x576, quality 90) of 795 decoded"),
            std::string::npos)
      << r.out;
  EXPECT_EQ(Listing(out_), FrameNames(80));
  for (const std::string& name : FrameNames(80)) {
    const std::string bytes = ReadFile(out_ + "/" + name);
    ASSERT_GT(bytes.size(), 10'000u) << name;
    EXPECT_EQ(static_cast<unsigned char>(bytes[0]), 0xFF) << name;
    EXPECT_EQ(static_cast<unsigned char>(bytes[1]), 0xD8) << name;  // SOI
    EXPECT_EQ(static_cast<unsigned char>(bytes[bytes.size() - 2]), 0xFF) << name;
    EXPECT_EQ(static_cast<unsigned char>(bytes.back()), 0xD9) << name;  // EOI
  }

  // Decoded back, the files hold the video's frames 0 and 10 (and not each other's).
  const cv::Mat first = DecodeJpeg(out_ + "/frame-0001.jpg");
  const cv::Mat second = DecodeJpeg(out_ + "/frame-0002.jpg");
  ASSERT_EQ(first.cols, kWidth);
  ASSERT_EQ(first.rows, kHeight);
  ASSERT_EQ(second.cols, kWidth);
  ASSERT_EQ(second.rows, kHeight);
  const std::vector<cv::Mat> source = SourceFrames(video_, {0, 10});
  ASSERT_EQ(source.size(), 2u);
  const double same0 = MeanAbsDiff(first, source[0]);
  const double same10 = MeanAbsDiff(second, source[1]);
  const double crossed = MeanAbsDiff(second, source[0]);
  EXPECT_LT(same0, 3.0);
  EXPECT_LT(same10, 3.0);
  EXPECT_GT(crossed, same10);
  const cv::Scalar mean = cv::mean(first);
  EXPECT_GT(mean[0] + mean[1] + mean[2], 100.0) << "frame 1 is (nearly) black";
}

TEST_F(ExtractFramesTest, AllFramesWhenEveryIsOne) {
  RunResult r = Extract({video_, out_, "--quality", "20"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Listing(out_), FrameNames(kVideoFrames));
  const cv::Mat last = DecodeJpeg(out_ + "/frame-0795.jpg");
  EXPECT_EQ(last.cols, kWidth);
  EXPECT_EQ(last.rows, kHeight);
}

TEST_F(ExtractFramesTest, MaxStopsEarlyAndQualityChangesSize) {
  RunResult low = Extract({video_, out_ + "-low", "--max", "3", "--quality", "30"});
  ASSERT_EQ(low.exit_code, 0) << low.err;
  EXPECT_NE(low.out.find("wrote 3 JPEG frames (768x576, quality 30) of 3 decoded"),
            std::string::npos)
      << low.out;
  EXPECT_EQ(Listing(out_ + "-low"), FrameNames(3));
  RunResult high = Extract({video_, out_ + "-high", "--max", "1", "--quality", "95"});
  ASSERT_EQ(high.exit_code, 0) << high.err;
  EXPECT_EQ(Listing(out_ + "-high"), FrameNames(1));
  EXPECT_LT(fs::file_size(out_ + "-low/frame-0001.jpg") * 2,
            fs::file_size(out_ + "-high/frame-0001.jpg"));
  const cv::Mat image = DecodeJpeg(out_ + "-low/frame-0003.jpg");
  EXPECT_EQ(image.cols, kWidth);
  EXPECT_EQ(image.rows, kHeight);
}

TEST_F(ExtractFramesTest, MissingInputExitsOneAndWritesNothing) {
  RunResult r = Extract({tmp_.path() + "/no-such.avi", out_});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("no-such.avi: no such file"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(out_));
}

TEST_F(ExtractFramesTest, UndecodableInputExitsOne) {
  // An AVI-named file of text, and a folder.
  tmp_.Write("not-a-video.avi", std::string(64 * 1024, 'x'));
  RunResult r = Extract({tmp_.path() + "/not-a-video.avi", out_});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("cannot be opened as a video"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(out_));

  RunResult dir = Extract({tmp_.path(), out_});
  EXPECT_EQ(dir.exit_code, 1);
  EXPECT_NE(dir.err.find("not a regular file"), std::string::npos) << dir.err;
}

TEST_F(ExtractFramesTest, BadCommandLineExitsTwo) {
  EXPECT_EQ(Extract({}).exit_code, 2);
  EXPECT_EQ(Extract({video_}).exit_code, 2);
  EXPECT_EQ(Extract({video_, out_, "--every", "0"}).exit_code, 2);
  EXPECT_EQ(Extract({video_, out_, "--quality", "101"}).exit_code, 2);
  EXPECT_EQ(Extract({video_, out_, "--max", "-1"}).exit_code, 2);
  EXPECT_EQ(Extract({video_, out_, "--bogus"}).exit_code, 2);
  EXPECT_FALSE(fs::exists(out_));
  RunResult help = Extract({"--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("--every"), std::string::npos);
}

TEST_F(ExtractFramesTest, UnwritableOutputExitsThree) {
  tmp_.Write("a-file", "x");
  RunResult r = Extract({video_, tmp_.path() + "/a-file", "--max", "1"});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_NE(r.err.find("cannot create the output folder"), std::string::npos) << r.err;
}

}  // namespace
