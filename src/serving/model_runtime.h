// ModelRuntime: one loaded model version. It owns the version's config, a bounded request queue
// and `instances` worker threads, each with its own backend object. Model compute runs only on
// these workers, never on the caller's (network) thread.
//
// Admission is decided at once in Submit(): an invalid request, a full queue (load shedding) or
// a draining runtime is refused with a status and no callback. An admitted request gets exactly
// one callback: its response, its error, or DEADLINE_EXCEEDED if its deadline passed while queued
// (it is then never computed).
//
// Dynamic batching (config.batching.max_batch_size > 0): a free worker asks the BatchingPolicy
// which queued requests to run together, or how long to wait for more. It concatenates the
// chosen requests' inputs along the first dimension into one buffer (the only copy of tensor bytes
// in the runtime), runs the backend once, splits every output back along the first dimension
// (views of the one output buffer, no copy) and answers each request. A batch of one request runs
// exactly like an unbatched request. Requests batch together only if they give the same inputs
// with the same shapes after the first dimension. Statistics: execution_count counts backend
// executions, inference_count requests, batch_size the requests of each execution.
//
// Time: the runtime reads the time (queue waits, deadlines, batching delays, statistics) from its
// Expirer's clock, and its workers wait for batching delays on that clock: a runtime whose
// Expirer runs on a ManualClock runs on manual time.
//
// Thread safety: Submit, Drain and the accessors may be called from any thread. Callbacks run on
// a worker thread or on the Expirer's thread and must not block.
#pragma once

#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "base/clock.h"
#include "serving/backend.h"
#include "serving/batching_policy.h"
#include "serving/expirer.h"
#include "serving/model_config.h"
#include "serving/model_stats.h"
#include "tensor/inference.h"

namespace hivemesh {

using InferCallback = std::function<void(absl::StatusOr<InferResponse>)>;

// Checks a request against a model's config: every input declared and at most once, every
// required input present, datatypes and shapes as declared, data sizes that agree with shapes,
// requested outputs declared. Messages name the tensor and the field. For a batching model also:
// every input has the same first dimension (the request's batch size), in [1, max_batch_size].
absl::Status ValidateRequest(const ModelConfig& config, const InferRequest& request);

class ModelRuntime {
 public:
  // Builds `config.instances` backends (each through the registry) and starts the workers.
  // `expirer` must outlive the runtime; its clock is the runtime's.
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
  // Drain() for a version being unloaded while the node keeps serving: requests submitted after
  // it are refused with UNAVAILABLE saying so, and retired() is true, so that a caller that
  // looked the version up just before can look the model up again.
  void Retire();
  bool retired() const { return retired_.load(std::memory_order_acquire); }

  const ModelConfig& config() const { return config_; }
  const std::string& version() const { return version_; }
  const ModelStats& stats() const { return stats_; }

 private:
  struct Job;
  ModelRuntime(ModelConfig config, std::string version, Expirer* expirer);
  void WorkerLoop(Backend* backend);
  void Run(Backend* backend, Job& job);
  // Adds one execution's service time to stats_.ewma_service_ns (NextServiceEwma).
  void NoteServiceTime(uint64_t service_ns);
  // Answers a job that was executed (`status`, `produced`) between `start` and `computed`.
  void Finish(Job& job, absl::Status status, std::vector<Tensor> produced, SteadyTime start,
              SteadyTime computed);
  // Every answer to a job goes through here: the job stops counting as in flight, then its
  // callback runs.
  void Answer(Job& job, absl::StatusOr<InferResponse> result);
  void Expire(const std::shared_ptr<Job>& job);
  // Answers a job already claimed as expired and counted in running_; the caller uncounts it.
  void AnswerExpired(Job& job);
  // True if the job's sender cancelled it (InferRequest::cancelled): answered CANCELLED, not run.
  bool AnsweredCancelled(Job& job);

  // Dynamic batching: the worker loop, and one batch (jobs claimed and counted in running_).
  void BatchWorkerLoop(Backend* backend);
  // Moves the batch the policy chooses (or the expired jobs) out of the queue, claimed and counted
  // in running_. False: nothing to do before `*wake_at` (none: before the next arrival).
  bool TakeBatchLocked(std::vector<std::shared_ptr<Job>>* batch,
                       std::vector<std::shared_ptr<Job>>* expired,
                       std::optional<SteadyTime>* wake_at) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RunBatch(Backend* backend, std::vector<std::shared_ptr<Job>>& batch);

  const ModelConfig config_;
  const std::string version_;
  Expirer* const expirer_;
  Clock& clock_;  // expirer_->clock()
  ModelStats stats_;
  std::vector<std::unique_ptr<Backend>> backends_;
  const std::optional<BatchingPolicy> policy_;  // set iff config_.batching.enabled()

  absl::Mutex mu_;
  std::deque<std::shared_ptr<Job>> queue_ ABSL_GUARDED_BY(mu_);
  int running_ ABSL_GUARDED_BY(mu_) = 0;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<bool> retired_{false};  // set before draining_ by Retire()
  std::vector<PendingRequest> pending_scratch_ ABSL_GUARDED_BY(mu_);  // TakeBatchLocked's
  absl::CondVar work_cv_;     // a job was queued, or stopping
  absl::CondVar drained_cv_;  // queue empty and nothing running

  std::vector<std::thread> workers_;
};

}  // namespace hivemesh
