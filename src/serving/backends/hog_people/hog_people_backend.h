// The `hog-people` backend: OpenCV's HOG + linear SVM pedestrian detector (Dalal-Triggs, the
// built-in getDefaultPeopleDetector, 64x128 window). Needs no model file.
//
//   backend: hog-people
//   inputs:  image BYTES [1] (JPEG/PNG) and/or pixels UINT8 [-1,-1,3] (BGR), both optional;
//            a request sends exactly one of them (see image/image_input.h)
//   outputs: boxes FP32 [-1,4], scores FP32 [-1], count INT32 [1] (see image/detector.h);
//            scores are the SVM margins of the grouped detections
//   options:
//     hit_threshold: SVM margin a window needs to count as a hit (default 0, OpenCV's default;
//                    raise it to trade recall for precision)
//     win_stride:    window step in pixels, a multiple of the 8-pixel block stride (default 8;
//                    16 is ~4x faster and misses more)
//     scale:         pyramid step between scales, > 1 (default 1.05, OpenCV's default)
//     max_width:     wider images are downscaled to this width before detecting, boxes are
//                    scaled back to the original image (default 0 = never). HOG cost grows with
//                    pixels: ~130 ms for 768x576 on one core.
//
// Threading: one cv::HOGDescriptor per worker instance; OpenCV parallelizes inside a call with
// its own thread pool, which the backend does not configure.
#pragma once

#include "serving/backend.h"

namespace hivemesh {

void RegisterHogPeopleBackend(BackendRegistry& registry);

}  // namespace hivemesh
