// The KServe v2 workloads this node runs, watched (docs/services.md, "KServe v2 workloads"): on
// its own thread, for each workload the node runs that is a KServe v2 server (annotated
// hivemesh.io/kserve, or answering the protocol at its first container port), the watcher reads
// the server's ready models (services/kserve_backend.h) and attaches them to the node's
// repository, so that the mesh routes to them; it detaches them when the server stops answering
// (three health checks in a row), drops them from its index, or stops running here.
//
// Checks: every 2 s until a server's models are known, every 10 s after; a workload that does not
// answer the protocol (and is not annotated) is asked again after 30 s. Each call waits at most
// 2 s, so a hung server delays the others by that much.
//
// Thread safety: SetWorkloads and Stop may be called from any thread.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "base/clock.h"

namespace hivemesh {
class ModelRepository;
class PeerClient;
struct PeerResponse;
}  // namespace hivemesh

namespace hivemesh::services {

// A workload this node runs that may be a KServe v2 server.
struct KserveTarget {
  uint16_t port = 0;       // its first container port, on 127.0.0.1
  bool annotated = false;  // hivemesh.io/kserve: "true"
  int instances = 4;       // requests sent to it at once, per model
  bool operator==(const KserveTarget&) const = default;
};

class KserveWatcher {
 public:
  // `client` (plain HTTP) and `repository` must outlive the watcher. The thread starts here.
  KserveWatcher(PeerClient* client, ModelRepository* repository, Clock& clock = SystemClock::Get());
  ~KserveWatcher();

  // The workloads this node runs now, by name (those left out have their models detached).
  void SetWorkloads(std::map<std::string, KserveTarget> workloads);
  // Detaches every model and joins the thread. Idempotent.
  void Stop();

 private:
  struct Watched {
    KserveTarget target;
    std::set<std::string> models;  // attached
    SteadyTime next{};             // when to check again
    int failures = 0;              // health checks failed in a row
    bool logged_not_kserve = false;
  };
  void Loop();
  void Check(const std::string& name, Watched& w);
  void DetachAll(const std::string& name, Watched& w, const std::string& why);
  absl::StatusOr<PeerResponse> Call(uint16_t port, const std::string& method,
                                    const std::string& target);

  PeerClient* const client_;
  ModelRepository* const repository_;
  Clock& clock_;
  std::map<std::string, Watched> watched_;  // the thread's own

  absl::Mutex mu_;
  absl::CondVar cv_;
  std::map<std::string, KserveTarget> wanted_ ABSL_GUARDED_BY(mu_);
  bool changed_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace hivemesh::services
