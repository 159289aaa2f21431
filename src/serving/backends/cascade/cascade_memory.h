// The memory OpenCV 4's CascadeClassifier::detectMultiScale takes for an image, computed the way
// its FeatureEvaluator lays it out, so that the cascade backend can reserve it from the node's
// memory budget before it searches (a 300-byte JPEG can declare an 8K frame: 1 GiB of it).
//
// A search keeps two buffers in the classifier: a scaled copy of the image for the largest scale
// searched (`rbuf`, one byte per pixel) and the integral images of every scale searched (`sbuf`:
// `channels` int32 per pixel, the scales packed in shelves as wide as the largest). Neither is
// freed after the search, and each only ever grows, every dimension to the largest an image has
// needed; so what the classifier holds is the dimension-wise largest of the images it has seen.
//
// Pure functions and a value type; no OpenCV calls.
#pragma once

#include <cstdint>

namespace hivemesh {

// How a cascade searches: the model's options and what its file says.
struct CascadeSearch {
  double scale_factor = 1.1;  // > 1
  int min_size = 30;          // smallest object searched, in pixels
  int window_width = 24;      // the cascade's window
  int window_height = 24;
  // int32 channels per pixel of each integral image: 1 for LBP, 2 for Haar (sum, squared sum),
  // 3 for Haar with tilted features.
  int channels = 2;
};

// The dimensions of the buffers a classifier keeps (0 before its first search).
struct CascadeScratch {
  uint64_t sbuf_cols = 0;  // int32 elements per row of the integral images
  uint64_t sbuf_rows = 0;  // rows per channel
  uint64_t rbuf_cols = 0;  // bytes per row of the scaled copy
  uint64_t rbuf_rows = 0;

  // Each dimension at its larger: what a classifier holding `*this` holds after also searching
  // an image needing `other`.
  CascadeScratch Max(const CascadeScratch& other) const;
  uint64_t Bytes(int channels) const;
  bool operator==(const CascadeScratch&) const = default;
};

// The buffers a search of a `width` x `height` image makes a classifier that holds `held` keep.
// Nothing (held unchanged) if the image is smaller than one window.
CascadeScratch ScratchAfterSearch(int64_t width, int64_t height, const CascadeSearch& search,
                                  const CascadeScratch& held);

}  // namespace hivemesh
