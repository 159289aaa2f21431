#include "cli/demo/vibration_signal.h"

#include <gtest/gtest.h>

#include <cmath>
#include <numbers>

namespace hivemesh::demo {
namespace {

// Share of a window's spectral power (DFT bins 1..64) in bins 19..64: above the healthy
// machine's 3x harmonic, even for the fastest shaft (6 turns per window).
double HighBandShare(const std::array<float, kVibrationWindow>& x) {
  double high = 0, total = 0;
  for (int k = 1; k <= kVibrationWindow / 2; ++k) {
    double re = 0, im = 0;
    for (int t = 0; t < kVibrationWindow; ++t) {
      const double a = 2 * std::numbers::pi * k * t / kVibrationWindow;
      re += x[t] * std::cos(a);
      im -= x[t] * std::sin(a);
    }
    const double p = re * re + im * im;
    total += p;
    if (k >= 19) high += p;
  }
  return high / total;
}

TEST(VibrationSignalTest, TheSameSeedGivesTheSameWindows) {
  VibrationSignal a(7), b(7), c(8);
  EXPECT_EQ(a.Window(false), b.Window(false));
  EXPECT_EQ(a.Window(true), b.Window(true));
  EXPECT_NE(a.Window(false), c.Window(false));
}

TEST(VibrationSignalTest, FaultsPutPowerAboveTheShaftHarmonics) {
  // Over many windows, faulty ones (impulses ringing at 30..55 cycles per window, or 4x..8x
  // harmonics) carry far more power above the 3x harmonic than healthy ones, whose only power
  // there is sensor noise.
  VibrationSignal signal(20261126);
  double normal = 0, fault = 0;
  constexpr int kWindows = 200;
  for (int i = 0; i < kWindows; ++i) {
    normal += HighBandShare(signal.Window(false));
    fault += HighBandShare(signal.Window(true));
  }
  normal /= kWindows;
  fault /= kWindows;
  EXPECT_LT(normal, 0.08);
  EXPECT_GT(fault, 2 * normal);
}

TEST(VibrationSignalTest, AmplitudesStayPhysical) {
  VibrationSignal signal(1);
  for (int i = 0; i < 100; ++i) {
    for (float v : signal.Window(i % 2 == 0)) {
      ASSERT_TRUE(std::isfinite(v));
      ASSERT_LT(std::abs(v), 20.0f);
    }
  }
}

}  // namespace
}  // namespace hivemesh::demo
