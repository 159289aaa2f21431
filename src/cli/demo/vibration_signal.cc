#include "cli/demo/vibration_signal.h"

#include <cmath>
#include <numbers>

namespace hivemesh::demo {

std::array<float, kVibrationWindow> VibrationSignal::Window(bool fault) {
  constexpr double kTwoPi = 2 * std::numbers::pi;
  constexpr double kN = kVibrationWindow;
  constexpr double kBins = kVibrationWindow / 2;
  std::array<double, kVibrationWindow> x{};
  // The healthy machine: shaft rotation, decaying harmonics, sensor noise.
  const double f0 = Uniform(3.0, 6.0);  // cycles per window (speed jitter)
  const double amp = Uniform(0.5, 2.0);
  const double phase = Uniform(0, kTwoPi);
  const double rel2 = Uniform(0.1, 0.4), phase2 = Uniform(0, kTwoPi);
  const double rel3 = Uniform(0.0, 0.2), phase3 = Uniform(0, kTwoPi);
  std::normal_distribution<> noise(0.0, Uniform(0.05, 0.25) * amp);
  for (int t = 0; t < kVibrationWindow; ++t) {
    x[t] = amp * std::sin(kTwoPi * f0 * t / kN + phase) +
           amp * rel2 * std::sin(kTwoPi * 2 * f0 * t / kN + phase2) +
           amp * rel3 * std::sin(kTwoPi * 3 * f0 * t / kN + phase3) + noise(rng_);
  }
  if (fault) {
    if (Uniform(0, 1) < 0.6) {
      // Bearing defect: an impulse each time a rolling element passes the defect, each ringing
      // at a high structural resonance.
      const double period = kN / (f0 * Uniform(3.0, 5.0));
      const double resonance = Uniform(30.0, 55.0);
      const double decay = Uniform(2.0, 5.0);
      const double strength = amp * Uniform(0.8, 1.6);
      for (double hit = Uniform(0, period); hit < kN; hit += period) {
        for (int t = static_cast<int>(std::ceil(hit)); t < kVibrationWindow; ++t) {
          const double dt = t - hit;
          x[t] += strength * std::exp(-dt / decay) * std::sin(kTwoPi * resonance * dt / kN);
        }
      }
    } else {
      // Mechanical looseness: strong higher shaft harmonics.
      for (int k = 4; k < 9; ++k) {
        if (k * f0 >= kBins - 1) continue;
        const double a = amp * Uniform(0.2, 0.5), p = Uniform(0, kTwoPi);
        for (int t = 0; t < kVibrationWindow; ++t)
          x[t] += a * std::sin(kTwoPi * k * f0 * t / kN + p);
      }
    }
  }
  std::array<float, kVibrationWindow> out;
  for (int t = 0; t < kVibrationWindow; ++t) out[t] = static_cast<float>(x[t]);
  return out;
}

}  // namespace hivemesh::demo
