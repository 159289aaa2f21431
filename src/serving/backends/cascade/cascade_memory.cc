#include "serving/backends/cascade/cascade_memory.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace hivemesh {
namespace {

uint64_t AlignUp(uint64_t v, uint64_t n) { return (v + n - 1) / n * n; }

}  // namespace

CascadeScratch CascadeScratch::Max(const CascadeScratch& other) const {
  return {std::max(sbuf_cols, other.sbuf_cols), std::max(sbuf_rows, other.sbuf_rows),
          std::max(rbuf_cols, other.rbuf_cols), std::max(rbuf_rows, other.rbuf_rows)};
}

uint64_t CascadeScratch::Bytes(int channels) const {
  return sbuf_cols * sbuf_rows * static_cast<uint64_t>(channels) * sizeof(int32_t) +
         rbuf_cols * rbuf_rows;
}

CascadeScratch ScratchAfterSearch(int64_t width, int64_t height, const CascadeSearch& search,
                                  const CascadeScratch& held) {
  // The scales detectMultiScale searches (CascadeClassifierImpl::detectMultiScaleNoGrouping):
  // from factor 1 up by scale_factor, while the scaled image is larger than the window, skipping
  // those whose window is below min_size. Each keeps an integral image one pixel larger.
  struct Size {
    uint64_t w, h;
  };
  std::vector<Size> scaled;
  for (double factor = 1; scaled.size() < 10000; factor *= search.scale_factor) {
    const int64_t w = std::llround(static_cast<double>(width) / factor);
    const int64_t h = std::llround(static_cast<double>(height) / factor);
    if (w - search.window_width <= 0 || h - search.window_height <= 0) break;
    if (std::lround(search.window_width * factor) < search.min_size ||
        std::lround(search.window_height * factor) < search.min_size) {
      continue;
    }
    scaled.push_back({static_cast<uint64_t>(w) + 1, static_cast<uint64_t>(h) + 1});
  }
  if (scaled.empty()) return held;
  // FeatureEvaluator::updateScaleData: rows as wide as the largest scale (or wider, if an earlier
  // image made them so), scales placed side by side while they fit, a new shelf as tall as its
  // first scale when one does not.
  CascadeScratch next = held;
  next.sbuf_cols = std::max(held.sbuf_cols, AlignUp(scaled[0].w - 1 + 31, 32));
  uint64_t top = 0, shelf = scaled[0].h, x = 0;
  for (const Size& s : scaled) {
    if (x + s.w > next.sbuf_cols) {
      top += shelf;
      shelf = s.h;
      x = 0;
    }
    x += s.w;
  }
  next.sbuf_rows = std::max(held.sbuf_rows, top + shelf);
  // FeatureEvaluator::setImage: the scaled copy of the first scale.
  next.rbuf_cols = std::max(held.rbuf_cols, AlignUp(scaled[0].w, 16));
  next.rbuf_rows = std::max(held.rbuf_rows, scaled[0].h);
  return next;
}

}  // namespace hivemesh
