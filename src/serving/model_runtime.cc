#include "serving/model_runtime.h"

#include <algorithm>
#include <atomic>
#include <chrono>

#include "base/strings.h"

namespace hivemesh {
namespace {

uint64_t NanosBetween(SteadyTime a, SteadyTime b) {
  return static_cast<uint64_t>(std::max<int64_t>(0, (b - a).count()));
}

uint64_t WallMillis() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

}  // namespace

struct ModelRuntime::Job {
  enum State : int { kQueued, kRunning, kExpired };
  InferRequest request;
  InferCallback done;
  SteadyTime enqueued;
  std::atomic<int> state{kQueued};

  bool Claim(State to) {
    int expected = kQueued;
    return state.compare_exchange_strong(expected, to);
  }
};

absl::Status ValidateRequest(const ModelConfig& config, const InferRequest& request) {
  for (size_t i = 0; i < request.inputs.size(); ++i) {
    const Tensor& in = request.inputs[i];
    const TensorConfig* decl = config.FindInput(in.name());
    if (decl == nullptr) {
      return absl::InvalidArgumentError(
          StrCat("input '", in.name(), "' is not an input of model '", config.name, "'"));
    }
    for (size_t j = 0; j < i; ++j) {
      if (request.inputs[j].name() == in.name()) {
        return absl::InvalidArgumentError(StrCat("input '", in.name(), "' is given twice"));
      }
    }
    if (in.type() != decl->type) {
      return absl::InvalidArgumentError(
          StrCat("input '", in.name(), "': datatype ", DataTypeName(in.type()),
                 " does not match the model's ", DataTypeName(decl->type)));
    }
    if (!ShapeMatches(decl->dims, in.shape())) {
      return absl::InvalidArgumentError(
          StrCat("input '", in.name(), "': shape ", ShapeString(in.shape()),
                 " does not match the model's ", ShapeString(decl->dims)));
    }
    absl::Status data = ValidateTensorData(in);
    if (!data.ok()) return data;
  }
  for (const TensorConfig& decl : config.inputs) {
    if (decl.optional) continue;
    const bool present = std::any_of(request.inputs.begin(), request.inputs.end(),
                                     [&](const Tensor& t) { return t.name() == decl.name; });
    if (!present) {
      return absl::InvalidArgumentError(
          StrCat("input '", decl.name, "' is required by model '", config.name, "' but missing"));
    }
  }
  for (const RequestedOutput& out : request.outputs) {
    if (config.FindOutput(out.name) == nullptr) {
      return absl::InvalidArgumentError(StrCat("requested output '", out.name,
                                               "' is not an output of model '", config.name, "'"));
    }
  }
  return absl::OkStatus();
}

ModelRuntime::ModelRuntime(ModelConfig config, std::string version, Expirer* expirer)
    : config_(std::move(config)), version_(std::move(version)), expirer_(expirer) {}

absl::StatusOr<std::unique_ptr<ModelRuntime>> ModelRuntime::Create(ModelConfig config,
                                                                   std::string version,
                                                                   std::string version_path,
                                                                   const BackendRegistry& registry,
                                                                   Expirer* expirer) {
  const BackendFactory* factory = registry.Find(config.backend);
  if (factory == nullptr) {
    std::string known;
    for (const std::string& n : registry.Names()) StrAppend(&known, known.empty() ? "" : ", ", n);
    return absl::InvalidArgumentError(
        StrCat("backend: unknown backend '", config.backend, "' (known: ", known, ")"));
  }
  std::unique_ptr<ModelRuntime> rt(
      new ModelRuntime(std::move(config), std::move(version), expirer));
  const BackendContext ctx{rt->config_, std::move(version_path)};
  for (int i = 0; i < rt->config_.instances; ++i) {
    absl::StatusOr<std::unique_ptr<Backend>> backend = (*factory)(ctx);
    if (!backend.ok()) return backend.status();
    rt->backends_.push_back(std::move(*backend));
  }
  for (auto& backend : rt->backends_) {
    rt->workers_.emplace_back([r = rt.get(), b = backend.get()] { r->WorkerLoop(b); });
  }
  return rt;
}

ModelRuntime::~ModelRuntime() {
  Drain();
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  work_cv_.notify_all();
  for (std::thread& t : workers_) t.join();
}

absl::Status ModelRuntime::Submit(InferRequest&& request, InferCallback done) {
  absl::Status valid = ValidateRequest(config_, request);
  if (!valid.ok()) return valid;
  const SteadyTime now = SystemClock::Get().Now();
  if (request.deadline && *request.deadline <= now) {
    stats_.expired_in_queue.fetch_add(1, std::memory_order_relaxed);
    return absl::DeadlineExceededError("the request's deadline passed before it was queued");
  }
  auto job = std::make_shared<Job>();
  job->done = std::move(done);
  job->enqueued = now;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (draining_) return absl::UnavailableError("the node is shutting down");
    if (static_cast<int>(queue_.size()) >= config_.queue_limit) {
      stats_.rejected_queue_full.fetch_add(1, std::memory_order_relaxed);
      return absl::ResourceExhaustedError(StrCat("model '", config_.name,
                                                 "' is overloaded: its queue is full (",
                                                 config_.queue_limit, " requests waiting)"));
    }
    job->request = std::move(request);  // only once admitted: a refused request stays the caller's
    queue_.push_back(job);
    stats_.queue_depth.store(static_cast<int64_t>(queue_.size()), std::memory_order_relaxed);
  }
  work_cv_.notify_one();
  if (job->request.deadline) {
    std::weak_ptr<Job> weak = job;
    expirer_->Watch(*job->request.deadline, weak, [this, weak] {
      if (std::shared_ptr<Job> j = weak.lock()) Expire(j);
    });
  }
  return absl::OkStatus();
}

void ModelRuntime::Expire(const std::shared_ptr<Job>& job) {
  if (!job->Claim(Job::kExpired)) return;  // a worker took it first
  std::string message;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = std::find(queue_.begin(), queue_.end(), job);
    if (it != queue_.end()) queue_.erase(it);
    stats_.queue_depth.store(static_cast<int64_t>(queue_.size()), std::memory_order_relaxed);
    stats_.expired_in_queue.fetch_add(1, std::memory_order_relaxed);
    stats_.fail.Add(NanosBetween(job->enqueued, SystemClock::Get().Now()));
    message = StrCat("the request's deadline passed while it waited in model '", config_.name,
                     "''s queue; it was not computed");
    ++running_;  // counted until answered, so Drain() waits for this answer
  }
  job->done(absl::DeadlineExceededError(message));
  // Notify under the lock: once Drain() can see running_ == 0 this object may be destroyed.
  std::lock_guard<std::mutex> lock(mu_);
  --running_;
  drained_cv_.notify_all();
}

void ModelRuntime::WorkerLoop(Backend* backend) {
  while (true) {
    std::shared_ptr<Job> job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      work_cv_.wait(lock, [&] { return !queue_.empty() || stopping_; });
      if (queue_.empty()) return;  // stopping and nothing left
      job = std::move(queue_.front());
      queue_.pop_front();
      stats_.queue_depth.store(static_cast<int64_t>(queue_.size()), std::memory_order_relaxed);
      if (!job->Claim(Job::kRunning)) continue;  // expired while queued
      ++running_;
      stats_.in_flight.store(running_, std::memory_order_relaxed);
    }
    Run(backend, *job);
    job.reset();  // release the request's buffers before reporting idle
    {
      std::lock_guard<std::mutex> lock(mu_);
      --running_;
      stats_.in_flight.store(running_, std::memory_order_relaxed);
    }
    drained_cv_.notify_all();
  }
}

void ModelRuntime::Run(Backend* backend, Job& job) {
  const SteadyTime start = SystemClock::Get().Now();
  stats_.queue.Add(NanosBetween(job.enqueued, start));
  std::vector<Tensor> produced;
  absl::Status status;
  try {
    status = backend->Execute(job.request.inputs, &produced);
  } catch (const std::exception& e) {
    status = absl::InternalError(StrCat("model '", config_.name, "' failed: ", e.what()));
  }
  const SteadyTime computed = SystemClock::Get().Now();
  stats_.execution_count.fetch_add(1, std::memory_order_relaxed);
  stats_.batch_size.Add(1);  // one request per execution until dynamic batching
  const uint64_t service = NanosBetween(start, computed);
  stats_.compute_infer.Add(service);
  const uint64_t prev = stats_.ewma_service_ns.load(std::memory_order_relaxed);
  stats_.ewma_service_ns.store(prev == 0 ? service : (prev * 4 + service) / 5,
                               std::memory_order_relaxed);
  if (!status.ok()) {
    stats_.fail.Add(NanosBetween(job.enqueued, computed));
    job.done(status);
    return;
  }

  InferResponse response;
  response.model_name = config_.name;
  response.model_version = version_;
  response.id = std::move(job.request.id);
  response.compute_ns = NanosBetween(start, computed);
  const InferRequest& req = job.request;
  auto emit = [&](Tensor& t, bool binary) {
    response.outputs.push_back(std::move(t));
    response.binary.push_back(binary);
  };
  if (req.outputs.empty()) {
    for (Tensor& t : produced) emit(t, req.binary_output);
  } else {
    for (const RequestedOutput& want : req.outputs) {
      auto it = std::find_if(produced.begin(), produced.end(),
                             [&](const Tensor& t) { return t.name() == want.name; });
      if (it == produced.end()) {
        status = absl::InternalError(
            StrCat("model '", config_.name, "' did not produce output '", want.name, "'"));
        break;
      }
      Tensor t = *it;
      emit(t, want.binary || req.binary_output);
    }
  }
  const SteadyTime end = SystemClock::Get().Now();
  stats_.compute_output.Add(NanosBetween(computed, end));
  if (!status.ok()) {
    stats_.fail.Add(NanosBetween(job.enqueued, end));
    job.done(status);
    return;
  }
  stats_.success.Add(NanosBetween(job.enqueued, end));
  stats_.inference_count.fetch_add(1, std::memory_order_relaxed);
  stats_.last_inference_ms.store(WallMillis(), std::memory_order_relaxed);
  job.done(std::move(response));
}

void ModelRuntime::Drain() {
  std::unique_lock<std::mutex> lock(mu_);
  draining_ = true;
  drained_cv_.wait(lock, [&] { return queue_.empty() && running_ == 0; });
}

}  // namespace hivemesh
