// Traffic: the demo's clients. Each camera and sensor is an open-loop source: a pacer thread
// issues requests at the client's rate (a camera's rate changes during bursts) and a few sender
// threads send them to the client's own node over keep-alive connections, so a slow answer does
// not slow the camera down. When every sender is busy and the backlog is full, the pacer skips
// the frame or window and counts it (`skipped`).
//
// A camera sends each frame raw (`Inference-Header-Content-Length: 0`) to `people-detector`, and
// every `face_every`-th frame also to `face-detector`; a sensor sends a JSON window to
// `vibration-anomaly`. When the client's node cannot be reached (connection refused or reset),
// the same request goes to the client's fallback nodes in turn.
//
// Thread safety: Start() and Stop() from one thread. Outcomes go to the Recorder.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "cli/demo/demo_report.h"
#include "cli/demo/scenario.h"

namespace hivemesh::demo {

// JPEG files "frame-*.jpg" in `dir`, sorted by name. Fails if there are none.
absl::StatusOr<std::vector<std::string>> LoadFrames(const std::string& dir);

// Parses a KServe v2 JSON response: the first value of output `name`, or an error.
absl::StatusOr<double> FirstOutputValue(std::string_view body, std::string_view name,
                                        size_t index = 0);

class Traffic {
 public:
  // `address`: node name -> host:port of its API. `frames` must outlive the Traffic.
  Traffic(const Scenario& scenario, std::map<std::string, std::string> address,
          const std::vector<std::string>& frames, Recorder& recorder);
  ~Traffic();

  void Start();
  // Stops issuing requests, waits for those in flight (each has its own timeout).
  void Stop();

  double ElapsedSeconds() const;
  // Requests not sent because the client's senders were all busy, by client.
  std::map<std::string, size_t> Skipped() const;

 private:
  class Source;
  const std::map<std::string, std::string> address_;  // read by every sender
  std::vector<std::unique_ptr<Source>> sources_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace hivemesh::demo
