// extract-frames: decodes a video file with OpenCV's videoio (FFmpeg) and writes its frames as
// JPEG files OUTDIR/frame-0001.jpg, frame-0002.jpg, ... (numbered in the order written).
//
//   extract-frames INPUT OUTDIR [--every N] [--max N] [--quality Q]
//
// A separate program, not part of the `hivemesh` binary: videoio and FFmpeg stay out of the agent.
// Exit codes: 0 frames written; 1 the input is missing, unreadable or not a decodable video;
// 2 bad command line; 3 OUTDIR or a frame file could not be written.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "base/strings.h"
#include "jpeg_encoder.h"
#include "opencv2/core.hpp"
#include "opencv2/core/utils/logger.hpp"
#include "opencv2/videoio.hpp"

namespace {

namespace fs = std::filesystem;
using hivemesh::MessageOf;
using hivemesh::StrCat;

constexpr int kExitOk = 0;
constexpr int kExitInput = 1;
constexpr int kExitUsage = 2;
constexpr int kExitOutput = 3;

struct Options {
  std::string input;
  std::string outdir;
  int every = 1;     // keep one decoded frame in `every`, starting with the first
  int max = 0;       // stop after writing this many frames; 0 = no limit
  int quality = 90;  // JPEG quality, 1..100
};

int Fail(int code, const std::string& message) {
  std::fprintf(stderr, "extract-frames: %s\n", message.c_str());
  return code;
}

std::string FrameName(int number) {
  char name[32];
  std::snprintf(name, sizeof name, "frame-%04d.jpg", number);
  return name;
}

// Checks the input before handing it to FFmpeg, whose own errors do not say what is wrong.
int CheckInput(const std::string& input) {
  std::error_code ec;
  const fs::file_status st = fs::status(input, ec);
  if (ec || !fs::exists(st)) return Fail(kExitInput, StrCat(input, ": no such file"));
  if (!fs::is_regular_file(st)) return Fail(kExitInput, StrCat(input, ": not a regular file"));
  if (!std::ifstream(input, std::ios::binary)) {
    return Fail(kExitInput, StrCat(input, ": cannot be read (permissions?)"));
  }
  return kExitOk;
}

int Run(const Options& opt) {
  if (int rc = CheckInput(opt.input); rc != kExitOk) return rc;

  cv::VideoCapture capture;
  try {
    capture.open(opt.input, cv::CAP_FFMPEG);
  } catch (const cv::Exception& e) {
    return Fail(kExitInput, StrCat(opt.input, ": cannot be opened as a video: ", e.what()));
  }
  if (!capture.isOpened()) {
    return Fail(kExitInput, StrCat(opt.input,
                                   ": cannot be opened as a video (not a container and codec "
                                   "that FFmpeg decodes)"));
  }
  const double reported_frames = capture.get(cv::CAP_PROP_FRAME_COUNT);

  std::error_code ec;
  fs::create_directories(opt.outdir, ec);
  if (ec || !fs::is_directory(opt.outdir)) {
    return Fail(kExitOutput, StrCat(opt.outdir, ": cannot create the output folder: ",
                                    ec ? ec.message() : std::string("exists and is not a folder")));
  }
  absl::StatusOr<std::unique_ptr<hivemesh::tools::JpegEncoder>> encoder =
      hivemesh::tools::JpegEncoder::Create(opt.quality);
  if (!encoder.ok()) return Fail(kExitUsage, std::string(MessageOf(encoder.status())));

  cv::Mat frame;
  int decoded = 0;
  int written = 0;
  int width = 0;
  int height = 0;
  bool stopped_at_max = false;
  while (true) {
    bool got = false;
    try {
      got = capture.read(frame);
    } catch (const cv::Exception& e) {
      return Fail(kExitInput,
                  StrCat(opt.input, ": frame ", decoded + 1, " could not be decoded: ", e.what()));
    }
    if (!got || frame.empty()) break;
    const int index = decoded++;
    if (index % opt.every != 0) continue;
    if (frame.depth() != CV_8U || (frame.channels() != 3 && frame.channels() != 1)) {
      return Fail(kExitInput,
                  StrCat(opt.input, ": frame ", decoded, " has an unsupported pixel ", "format (",
                         frame.channels(), " channels, depth ", frame.depth(), ")"));
    }
    const hivemesh::tools::PixelView view{frame.data, frame.cols, frame.rows, frame.channels(),
                                          frame.step[0]};
    const std::string path = (fs::path(opt.outdir) / FrameName(written + 1)).string();
    if (absl::Status s = (*encoder)->EncodeToFile(view, path); !s.ok()) {
      return Fail(kExitOutput, std::string(MessageOf(s)));
    }
    ++written;
    width = frame.cols;
    height = frame.rows;
    if (opt.max > 0 && written >= opt.max) {
      stopped_at_max = true;
      break;
    }
  }
  if (decoded == 0) {
    return Fail(kExitInput, StrCat(opt.input, ": opened, but no frame could be decoded"));
  }
  if (!stopped_at_max && reported_frames > 0 && decoded < static_cast<int>(reported_frames)) {
    std::fprintf(stderr,
                 "extract-frames: warning: %s: decoding stopped after %d of the %d frames its "
                 "container lists\n",
                 opt.input.c_str(), decoded, static_cast<int>(reported_frames));
  }
  std::printf("extract-frames: wrote %d JPEG frames (%dx%d, quality %d) of %d decoded to %s\n",
              written, width, height, opt.quality, decoded, opt.outdir.c_str());
  return kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  CLI::App app{
      "extract-frames: decode a video (OpenCV videoio / FFmpeg) and write its frames as JPEG "
      "files OUTDIR/frame-0001.jpg, ... numbered in the order written.\n"
      "Exit codes: 0 ok, 1 input missing or not a decodable video, 2 bad command line, "
      "3 output not writable."};
  app.add_option("input", opt.input, "video file (any container/codec FFmpeg decodes)")->required();
  app.add_option("outdir", opt.outdir, "folder for the JPEG files (created if missing)")
      ->required();
  app.add_option("--every", opt.every, "keep one frame in N, starting with the first [default: 1]")
      ->check(CLI::Range(1, 1 << 30));
  app.add_option("--max", opt.max, "stop after writing N frames; 0 = all [default: 0]")
      ->check(CLI::Range(0, 1 << 30));
  app.add_option("--quality", opt.quality, "JPEG quality 1..100 [default: 90]")
      ->check(CLI::Range(1, 100));
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kExitUsage;
  }
  // FFmpeg's and OpenCV's own diagnostics are replaced by the messages above.
  cv::utils::logging::setLogLevel(cv::utils::logging::LOG_LEVEL_SILENT);
  return Run(opt);
}
