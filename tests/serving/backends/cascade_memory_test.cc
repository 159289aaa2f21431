// What a cascade search keeps in memory (serving/backends/cascade/cascade_memory.h).
#include "serving/backends/cascade/cascade_memory.h"

#include <gtest/gtest.h>

namespace hivemesh {
namespace {

CascadeSearch FrontalFace() { return CascadeSearch{1.1, 30, 24, 24, 2}; }

TEST(CascadeMemoryTest, AFrameTakesAboutThirtyFiveBytesAPixelAtTheDefaults) {
  // Measured with OpenCV 4.6 and haarcascade_frontalface_default.xml: a 4000x4000 frame grew the
  // node by 536 MB beyond its request body (33.5 bytes per pixel), an 8192x8192 one by 2.05 GB.
  for (auto [w, h] : {std::pair{1920, 1080}, std::pair{4000, 4000}, std::pair{8192, 8192}}) {
    const CascadeScratch s = ScratchAfterSearch(w, h, FrontalFace(), {});
    const double per_pixel = static_cast<double>(s.Bytes(2)) / (static_cast<double>(w) * h);
    EXPECT_GT(per_pixel, 28) << w << "x" << h;
    EXPECT_LT(per_pixel, 40) << w << "x" << h;
  }
}

TEST(CascadeMemoryTest, AnImageSmallerThanAWindowNeedsNothing) {
  const CascadeScratch held{100, 200, 48, 30};
  EXPECT_EQ(ScratchAfterSearch(20, 20, FrontalFace(), held), held);
  // min_size 30 with a 24-pixel window starts at the scale whose window is 32 (factor 1.331):
  // 30 pixels, scaled to 23, hold no window.
  EXPECT_EQ(ScratchAfterSearch(30, 30, FrontalFace(), {}), CascadeScratch());
  EXPECT_NE(ScratchAfterSearch(64, 64, FrontalFace(), {}), CascadeScratch());
}

TEST(CascadeMemoryTest, BuffersOnlyGrowEachDimensionToTheLargestSeen) {
  const CascadeSearch search = FrontalFace();
  const CascadeScratch big = ScratchAfterSearch(1920, 1080, search, {});
  EXPECT_EQ(ScratchAfterSearch(640, 480, search, big), big);  // a smaller frame: nothing new
  const CascadeScratch wide = ScratchAfterSearch(4000, 100, search, {});
  const CascadeScratch tall = ScratchAfterSearch(100, 4000, search, {});
  const CascadeScratch both = ScratchAfterSearch(100, 4000, search, wide);
  // The tall image's scales packed in the wide image's rows: more than either alone.
  EXPECT_EQ(both.sbuf_cols, wide.sbuf_cols);
  EXPECT_GT(both.sbuf_rows, wide.sbuf_rows);
  EXPECT_GT(both.Bytes(2), wide.Bytes(2) + tall.Bytes(2));
  EXPECT_EQ(wide.Max(tall),
            CascadeScratch({wide.sbuf_cols, tall.sbuf_rows, wide.rbuf_cols, tall.rbuf_rows}));
}

TEST(CascadeMemoryTest, ChannelsAndScalesChangeTheSize) {
  const CascadeScratch haar = ScratchAfterSearch(1280, 720, FrontalFace(), {});
  EXPECT_LT(haar.Bytes(1), haar.Bytes(2));
  EXPECT_LT(haar.Bytes(2), haar.Bytes(3));
  CascadeSearch coarse = FrontalFace();
  coarse.scale_factor = 1.5;  // fewer scales
  EXPECT_LT(ScratchAfterSearch(1280, 720, coarse, {}).Bytes(2), haar.Bytes(2));
  CascadeSearch small_objects = FrontalFace();
  small_objects.min_size = 0;  // starts at full size
  EXPECT_GT(ScratchAfterSearch(1280, 720, small_objects, {}).Bytes(2), haar.Bytes(2));
}

}  // namespace
}  // namespace hivemesh
