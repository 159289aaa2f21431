// The `cascade` backend: an OpenCV cascade classifier (Viola-Jones Haar or LBP features), e.g.
// the frontal-face cascades Debian's opencv-data ships in /usr/share/opencv4/.
//
//   backend: cascade
//   inputs:  image BYTES [1] (JPEG/PNG) and/or pixels UINT8 [-1,-1,3] (BGR), both optional;
//            a request sends exactly one of them (see image/image_input.h)
//   outputs: boxes FP32 [-1,4], scores FP32 [-1], count INT32 [1] (see image/detector.h);
//            a score is the number of neighbouring raw detections merged into the box
//   options:
//     file:          the cascade XML (required). An absolute path; else relative to the version
//                    directory if it exists there; else relative to /usr/share/opencv4/
//                    (e.g. haarcascades/haarcascade_frontalface_default.xml)
//     scale_factor:  pyramid step between scales, > 1 (default 1.1, OpenCV's default)
//     min_neighbors: raw detections a box needs to be kept (default 3, OpenCV's default;
//                    higher = fewer false positives)
//     min_size:      smallest object side in pixels (default 30: smaller faces are rarely
//                    recognizable and the smallest scales cost the most)
//
// The image is converted to grayscale and histogram-equalized before detection.
//
// Threading: one cv::CascadeClassifier per worker instance.
#pragma once

#include <string>

#include "serving/backend.h"

namespace hivemesh {

// Where relative cascade files are looked up after the version directory.
inline constexpr char kOpenCvDataDir[] = "/usr/share/opencv4";

void RegisterCascadeBackend(BackendRegistry& registry);

}  // namespace hivemesh
