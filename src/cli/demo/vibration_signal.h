// Synthetic accelerometer windows for the demo's vibration sensors: the same families of signals
// the vibration-anomaly model was trained on (tools/gen_vibration_model.py), from a seeded
// generator, so a run is repeatable and the ground truth of every window is known.
//   normal: shaft-frequency sine + 2x/3x harmonics + sensor noise (random speed, amplitude)
//   fault:  the same plus a bearing defect (impulses ringing at a structural resonance) or
//           mechanical looseness (strong 4x..8x shaft harmonics)
// Not thread-safe: one generator per sensor.
#pragma once

#include <array>
#include <cstdint>
#include <random>

namespace hivemesh::demo {

inline constexpr int kVibrationWindow = 128;

class VibrationSignal {
 public:
  explicit VibrationSignal(uint64_t seed) : rng_(seed) {}
  std::array<float, kVibrationWindow> Window(bool fault);

 private:
  double Uniform(double lo, double hi) { return std::uniform_real_distribution<>(lo, hi)(rng_); }
  std::mt19937_64 rng_;
};

}  // namespace hivemesh::demo
