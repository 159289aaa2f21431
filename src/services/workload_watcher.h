// The workloads this node runs, watched over HTTP on loopback (docs/services.md), on a thread of
// its own:
//
// - Readiness (services/readiness.h): each replica is checked every probe period (the
//   Deployment's readinessProbe.httpGet: a 2xx or 3xx answer within the period, at most 2 s), or,
//   without a probe, every second by whether its process runs. The set of ready workloads is
//   what the node announces to the mesh; `on_change` is told when it changes.
// - KServe v2 workloads: for each ready workload that is a KServe v2 server (annotated
//   hivemesh.io/kserve, or answering the protocol at its first container port), the watcher
//   reads the server's ready models (services/kserve_backend.h) and attaches them to the node's
//   repository, so that the mesh routes to them; it detaches them when the workload is no longer
//   ready, the server stops answering (three health checks in a row), drops them from its index,
//   or the workload stops running here. Checks: every 2 s until a server's models are known,
//   every 10 s after; a workload that answers 404 (and is not annotated) is asked again after
//   30 s. Each call waits at most 2 s, so a hung server delays the others by that much.
//
// Thread safety: every public method may be called from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "base/clock.h"
#include "services/readiness.h"

namespace hivemesh {
class ModelRepository;
class PeerClient;
struct PeerResponse;
}  // namespace hivemesh

namespace hivemesh::services {

// A readinessProbe.httpGet, its port resolved to a number.
struct ReadinessCheck {
  std::string path = "/";
  uint16_t port = 0;
  std::chrono::milliseconds period{2000};
  int failure_threshold = 3;
  bool operator==(const ReadinessCheck&) const = default;
};

// A workload this node runs.
struct WatchedWorkload {
  uint16_t port = 0;                    // its first container port, on 127.0.0.1 (0: none)
  bool kserve_annotated = false;        // hivemesh.io/kserve: "true"
  int instances = 4;                    // KServe v2: requests sent to it at once, per model
  std::optional<ReadinessCheck> probe;  // none: ready while its process runs
  bool operator==(const WatchedWorkload&) const = default;
};

class WorkloadWatcher {
 public:
  // Whether the process of the workload named so runs now (the supervisor's view).
  using Running = std::function<bool(const std::string& workload)>;
  // `client` (plain HTTP) and `repository` must outlive the watcher; `on_change` runs on the
  // watcher's thread when the set of ready workloads changes. The thread starts here.
  WorkloadWatcher(PeerClient* client, ModelRepository* repository, Running running,
                  std::function<void()> on_change, Clock& clock = SystemClock::Get());
  ~WorkloadWatcher();

  // The workloads this node runs now, by name (those left out are forgotten: their models
  // detached).
  void SetWorkloads(std::map<std::string, WatchedWorkload> workloads);
  // The workloads ready now.
  std::set<std::string> Ready() const;
  // Detaches every model and joins the thread. Idempotent.
  void Stop();

 private:
  struct Watched {
    explicit Watched(const WatchedWorkload& t)
        : target(t),
          readiness(t.probe ? t.probe->period : std::chrono::milliseconds(1000),
                    t.probe ? t.probe->failure_threshold : 1) {}
    WatchedWorkload target;
    Readiness readiness;
    SteadyTime next_check{};
    // KServe v2.
    std::set<std::string> models;  // attached
    SteadyTime next_kserve{};
    int failures = 0;  // health checks failed in a row
    bool logged_not_kserve = false;
  };
  void Loop();
  // Checks readiness; true if it changed.
  bool CheckReady(const std::string& name, Watched& w);
  void CheckKserve(const std::string& name, Watched& w);
  void DetachAll(const std::string& name, Watched& w, const std::string& why);
  // One call to the workload; any HTTP status is an answer.
  absl::StatusOr<PeerResponse> Call(uint16_t port, const std::string& method,
                                    const std::string& target, std::chrono::milliseconds timeout);
  // `Call`'s answer if it is a 200 with a body of at most kMaxKserveAnswerBytes.
  absl::StatusOr<PeerResponse> Get200(uint16_t port, const std::string& method,
                                      const std::string& target);

  PeerClient* const client_;
  ModelRepository* const repository_;
  const Running running_;
  const std::function<void()> on_change_;
  Clock& clock_;
  std::map<std::string, Watched> watched_;  // the thread's own

  mutable absl::Mutex mu_;
  absl::CondVar cv_;
  std::map<std::string, WatchedWorkload> wanted_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> ready_ ABSL_GUARDED_BY(mu_);
  bool changed_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace hivemesh::services
