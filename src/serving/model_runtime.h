// ModelRuntime: one loaded model version. It owns the version's config, a bounded request queue
// and `instances` worker threads, each with its own backend object. Model compute runs only on
// these workers, never on the caller's (network) thread.
//
// Admission is decided at once in Submit(): an invalid request, a full queue (load shedding) or
// a draining runtime is refused with a status and no callback. An admitted request gets exactly
// one callback: its response, its error, or DEADLINE_EXCEEDED if its deadline passed while queued
// (it is then never computed).
//
// Thread safety: Submit, Drain and the accessors may be called from any thread. Callbacks run on
// a worker thread or on the Expirer's thread and must not block.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "base/clock.h"
#include "serving/backend.h"
#include "serving/expirer.h"
#include "serving/inference.h"
#include "serving/model_config.h"
#include "serving/model_stats.h"

namespace hivemesh {

using InferCallback = std::function<void(absl::StatusOr<InferResponse>)>;

// Checks a request against a model's config: every input declared and at most once, every
// required input present, datatypes and shapes as declared, data sizes that agree with shapes,
// requested outputs declared. Messages name the tensor and the field.
absl::Status ValidateRequest(const ModelConfig& config, const InferRequest& request);

class ModelRuntime {
 public:
  // Builds `config.instances` backends (each through the registry) and starts the workers.
  // `expirer` must outlive the runtime.
  static absl::StatusOr<std::unique_ptr<ModelRuntime>> Create(ModelConfig config,
                                                              std::string version,
                                                              std::string version_path,
                                                              const BackendRegistry& registry,
                                                              Expirer* expirer);
  ~ModelRuntime();  // drains, then joins the workers

  // Admits `request` or refuses it:
  //   INVALID_ARGUMENT   the request does not fit the model (see ValidateRequest)
  //   RESOURCE_EXHAUSTED the queue holds queue_limit requests already (shed; retry later)
  //   UNAVAILABLE        the runtime is draining
  //   DEADLINE_EXCEEDED  the deadline has already passed
  // `request` is taken only when admitted; a refused request is left intact for the caller.
  absl::Status Submit(InferRequest&& request, InferCallback done);

  // Stops admitting, then waits until every queued and running request has been answered.
  void Drain();

  const ModelConfig& config() const { return config_; }
  const std::string& version() const { return version_; }
  const ModelStats& stats() const { return stats_; }

 private:
  struct Job;
  ModelRuntime(ModelConfig config, std::string version, Expirer* expirer);
  void WorkerLoop(Backend* backend);
  void Run(Backend* backend, Job& job);
  void Expire(const std::shared_ptr<Job>& job);

  const ModelConfig config_;
  const std::string version_;
  Expirer* const expirer_;
  ModelStats stats_;
  std::vector<std::unique_ptr<Backend>> backends_;

  std::mutex mu_;
  std::condition_variable work_cv_;     // a job was queued, or stopping
  std::condition_variable drained_cv_;  // queue empty and nothing running
  std::deque<std::shared_ptr<Job>> queue_ ABSL_GUARDED_BY(mu_);
  int running_ ABSL_GUARDED_BY(mu_) = 0;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;

  std::vector<std::thread> workers_;
};

}  // namespace hivemesh
