#include "serving/model_runtime.h"

#include <algorithm>
#include <atomic>
#include <chrono>

#include "base/strings.h"
#include "serving/service_ewma.h"

namespace hivemesh {
namespace {

// How much earlier than strictly needed a batch with a deadline-bound member is closed: covers a
// worker's wake-up jitter, so that the request starts before the Expirer answers it 504. On a
// loaded two-core machine a sleeping worker was seen to wake more than 2 ms late.
constexpr Nanos kDeadlineSlack = std::chrono::milliseconds(5);

uint64_t NanosBetween(SteadyTime a, SteadyTime b) {
  return static_cast<uint64_t>(std::max<int64_t>(0, (b - a).count()));
}

uint64_t WallMillis() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

// Requests can be concatenated along the first dimension when they give the same inputs with the
// same shapes after it. Collisions are harmless: RunBatch checks the shapes again.
uint64_t BatchGroupOf(const ModelConfig& config, const InferRequest& request) {
  // A hash of each declared input's dimensions after the first (or its absence), built without
  // allocating: it is computed for every request submitted.
  uint64_t h = 0xcbf29ce484222325ull;
  auto mix = [&h](uint64_t v) { h = (h ^ v) * 0x100000001b3ull; };
  for (const TensorConfig& decl : config.inputs) {
    auto it = std::find_if(request.inputs.begin(), request.inputs.end(),
                           [&](const Tensor& t) { return t.name() == decl.name; });
    if (it == request.inputs.end()) {
      mix(~uint64_t{0});
      continue;
    }
    mix(it->shape().size());
    for (size_t d = 1; d < it->shape().size(); ++d) mix(static_cast<uint64_t>(it->shape()[d]));
  }
  return h;
}

bool SameTail(const Shape& a, const Shape& b) {
  return a.size() == b.size() && std::equal(a.begin() + 1, a.end(), b.begin() + 1);
}

// Byte offset of each row boundary of `t` (rows + 1 entries), split along the first dimension.
// REQUIRES: ValidateTensorData(t) is OK, t.shape() not empty.
std::vector<size_t> RowOffsets(const Tensor& t) {
  const int64_t rows = t.shape()[0];
  std::vector<size_t> offsets(static_cast<size_t>(rows) + 1, 0);
  if (rows == 0) return offsets;
  if (t.type() != DataType::kBytes) {
    const size_t row_bytes = t.data().size() / static_cast<size_t>(rows);
    for (size_t r = 0; r < offsets.size(); ++r) offsets[r] = r * row_bytes;
    return offsets;
  }
  int64_t per_row = 1;
  for (size_t d = 1; d < t.shape().size(); ++d) per_row *= t.shape()[d];
  int64_t element = 0;
  size_t pos = 0;
  ForEachBytesElement(t.data(), [&](std::string_view e) {
    pos += 4 + e.size();
    ++element;
    if (per_row > 0 && element % per_row == 0)
      offsets[static_cast<size_t>(element / per_row)] = pos;
  });
  if (per_row == 0) std::fill(offsets.begin(), offsets.end(), 0);
  return offsets;
}

}  // namespace

struct ModelRuntime::Job {
  enum State : int { kQueued, kRunning, kExpired };
  InferRequest request;
  InferCallback done;
  SteadyTime enqueued;
  int64_t rows = 1;    // batching: the request's batch size (its inputs' first dimension)
  uint64_t group = 0;  // batching: requests of one group can be concatenated (BatchGroupOf)
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
  if (config.batching.enabled() && !request.inputs.empty()) {
    // Every input's shape starts with the batch dimension (the config says so).
    const Tensor& first = request.inputs[0];
    const int64_t rows = first.shape()[0];
    for (const Tensor& in : request.inputs) {
      if (in.shape()[0] != rows) {
        return absl::InvalidArgumentError(
            StrCat("input '", in.name(), "': batch size (first dimension) ", in.shape()[0],
                   " differs from input '", first.name(), "''s ", rows));
      }
    }
    if (rows < 1 || rows > config.batching.max_batch_size) {
      return absl::InvalidArgumentError(StrCat(
          "input '", first.name(), "': batch size (first dimension) ", rows, " is outside [1, ",
          config.batching.max_batch_size, "], model '", config.name, "''s max_batch_size"));
    }
  }
  return absl::OkStatus();
}

ModelRuntime::ModelRuntime(ModelConfig config, std::string version, Expirer* expirer)
    : config_(std::move(config)),
      version_(std::move(version)),
      expirer_(expirer),
      clock_(expirer->clock()),
      policy_(config_.batching.enabled() ? std::make_optional<BatchingPolicy>(config_.batching)
                                         : std::nullopt) {}

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
  const BackendContext ctx{rt->config_, std::move(version_path), &registry.environment()};
  for (int i = 0; i < rt->config_.instances; ++i) {
    absl::StatusOr<std::unique_ptr<Backend>> backend = (*factory)(ctx);
    if (!backend.ok()) return backend.status();
    rt->backends_.push_back(std::move(*backend));
  }
  for (auto& backend : rt->backends_) {
    rt->workers_.emplace_back([r = rt.get(), b = backend.get()] {
      if (r->policy_) {
        r->BatchWorkerLoop(b);
      } else {
        r->WorkerLoop(b);
      }
    });
  }
  return rt;
}

ModelRuntime::~ModelRuntime() {
  Drain();
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    work_cv_.SignalAll();
  }
  for (std::thread& t : workers_) t.join();
}

absl::Status ModelRuntime::Submit(InferRequest&& request, InferCallback done) {
  absl::Status valid = ValidateRequest(config_, request);
  if (!valid.ok()) return valid;
  const SteadyTime now = clock_.Now();
  if (request.deadline && *request.deadline <= now) {
    stats_.expired_in_queue.fetch_add(1, std::memory_order_relaxed);
    return absl::DeadlineExceededError("the request's deadline passed before it was queued");
  }
  auto job = std::make_shared<Job>();
  job->done = std::move(done);
  job->enqueued = now;
  if (policy_) {
    job->rows = request.inputs.empty() ? 1 : request.inputs[0].shape()[0];
    job->group = BatchGroupOf(config_, request);
  }
  {
    absl::MutexLock lock(&mu_);
    if (draining_) {
      return absl::UnavailableError(
          retired() ? StrCat("version ", version_, " of model '", config_.name, "' was unloaded")
                    : std::string("the node is shutting down"));
    }
    if (static_cast<int>(queue_.size()) >= config_.queue_limit) {
      stats_.rejected_queue_full.fetch_add(1, std::memory_order_relaxed);
      return absl::ResourceExhaustedError(StrCat("model '", config_.name,
                                                 "' is overloaded: its queue is full (",
                                                 config_.queue_limit, " requests waiting)"));
    }
    job->request = std::move(request);  // only once admitted: a refused request stays the caller's
    queue_.push_back(job);
    stats_.queue_depth.store(static_cast<int64_t>(queue_.size()), std::memory_order_relaxed);
    work_cv_.Signal();
  }
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
  {
    absl::MutexLock lock(&mu_);
    auto it = std::find(queue_.begin(), queue_.end(), job);
    if (it != queue_.end()) queue_.erase(it);
    stats_.queue_depth.store(static_cast<int64_t>(queue_.size()), std::memory_order_relaxed);
    ++running_;  // counted until answered, so Drain() waits for this answer
    stats_.in_flight.fetch_add(1, std::memory_order_relaxed);
  }
  AnswerExpired(*job);
  // Signal under the lock: once Drain() can see running_ == 0 this object may be destroyed.
  absl::MutexLock lock(&mu_);
  --running_;
  drained_cv_.SignalAll();
}

void ModelRuntime::AnswerExpired(Job& job) {
  stats_.expired_in_queue.fetch_add(1, std::memory_order_relaxed);
  stats_.fail.Add(NanosBetween(job.enqueued, clock_.Now()));
  Answer(job, absl::DeadlineExceededError(
                  StrCat("the request's deadline passed while it waited in model '", config_.name,
                         "''s queue; it was not computed")));
}

bool ModelRuntime::AnsweredCancelled(Job& job) {
  if (job.request.cancelled == nullptr || !job.request.cancelled->load(std::memory_order_relaxed)) {
    return false;
  }
  stats_.cancelled_in_queue.fetch_add(1, std::memory_order_relaxed);
  stats_.fail.Add(NanosBetween(job.enqueued, clock_.Now()));
  Answer(job, absl::CancelledError(StrCat("the request was cancelled by its sender while it "
                                          "waited in model '",
                                          config_.name, "''s queue; it was not computed")));
  return true;
}

void ModelRuntime::WorkerLoop(Backend* backend) {
  while (true) {
    std::shared_ptr<Job> job;
    {
      absl::MutexLock lock(&mu_);
      while (queue_.empty() && !stopping_) work_cv_.Wait(&mu_);
      if (queue_.empty()) return;  // stopping and nothing left
      job = std::move(queue_.front());
      queue_.pop_front();
      stats_.queue_depth.store(static_cast<int64_t>(queue_.size()), std::memory_order_relaxed);
      if (!job->Claim(Job::kRunning)) continue;  // expired while queued
      ++running_;
      stats_.in_flight.fetch_add(1, std::memory_order_relaxed);
    }
    if (!AnsweredCancelled(*job)) Run(backend, *job);
    job.reset();  // release the request's buffers before reporting idle
    {
      absl::MutexLock lock(&mu_);
      --running_;
      drained_cv_.SignalAll();
    }
  }
}

void ModelRuntime::Run(Backend* backend, Job& job) {
  const SteadyTime start = clock_.Now();
  stats_.queue.Add(NanosBetween(job.enqueued, start));
  std::vector<Tensor> produced;
  absl::Status status;
  try {
    status = backend->Execute(job.request.inputs, &produced);
  } catch (const std::exception& e) {
    status = absl::InternalError(StrCat("model '", config_.name, "' failed: ", e.what()));
  }
  const SteadyTime computed = clock_.Now();
  stats_.execution_count.fetch_add(1, std::memory_order_relaxed);
  stats_.batch_size.Add(1);  // one request per execution until dynamic batching
  const uint64_t service = NanosBetween(start, computed);
  stats_.compute_infer.Add(service);
  NoteServiceTime(service);
  Finish(job, std::move(status), std::move(produced), start, computed);
  stats_.batch_stats.Add(1, 0, service, NanosBetween(computed, clock_.Now()));
}

void ModelRuntime::NoteServiceTime(uint64_t service_ns) {
  const uint64_t prev = stats_.ewma_service_ns.load(std::memory_order_relaxed);
  stats_.ewma_service_ns.store(NextServiceEwma(prev, service_ns), std::memory_order_relaxed);
}

void ModelRuntime::Finish(Job& job, absl::Status status, std::vector<Tensor> produced,
                          SteadyTime start, SteadyTime computed) {
  if (!status.ok()) {
    stats_.fail.Add(NanosBetween(job.enqueued, computed));
    Answer(job, std::move(status));
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
  const SteadyTime end = clock_.Now();
  stats_.compute_output.Add(NanosBetween(computed, end));
  if (!status.ok()) {
    stats_.fail.Add(NanosBetween(job.enqueued, end));
    Answer(job, std::move(status));
    return;
  }
  stats_.success.Add(NanosBetween(job.enqueued, end));
  stats_.inference_count.fetch_add(1, std::memory_order_relaxed);
  stats_.last_inference_ms.store(WallMillis(), std::memory_order_relaxed);
  Answer(job, std::move(response));
}

void ModelRuntime::Answer(Job& job, absl::StatusOr<InferResponse> result) {
  // No longer in flight once answered: the answer may reach its client, and the client's next
  // request this node, before the worker is back for more.
  stats_.in_flight.fetch_sub(1, std::memory_order_relaxed);
  job.done(std::move(result));
}

bool ModelRuntime::TakeBatchLocked(std::vector<std::shared_ptr<Job>>* batch,
                                   std::vector<std::shared_ptr<Job>>* expired,
                                   std::optional<SteadyTime>* wake_at) {
  if (queue_.size() == 1 && config_.batching.max_queue_delay_us == 0) {
    // One request, and no waiting for company: the policy would run it now, alone (or answer it
    // as expired), so it is taken without building a decision. Concurrency 1 then costs what
    // it costs unbatched.
    std::shared_ptr<Job> job = std::move(queue_.front());
    queue_.pop_front();
    const bool late = job->request.deadline && *job->request.deadline <= clock_.Now();
    if (job->Claim(late ? Job::kExpired : Job::kRunning)) {
      (late ? expired : batch)->push_back(std::move(job));
    }
    stats_.queue_depth.store(0, std::memory_order_relaxed);
    running_ += static_cast<int>(batch->size() + expired->size());
    stats_.in_flight.fetch_add(static_cast<int64_t>(batch->size() + expired->size()),
                               std::memory_order_relaxed);
    return true;
  }
  std::vector<PendingRequest>& pending = pending_scratch_;  // reused: no allocation per batch
  pending.clear();
  for (const std::shared_ptr<Job>& j : queue_) {
    pending.push_back({j->enqueued, j->rows, j->request.deadline, j->group});
  }
  // A request with a deadline must start before it: one execution's time, plus slack for a
  // sleeping worker waking up late.
  const Nanos estimate =
      Nanos(static_cast<int64_t>(stats_.ewma_service_ns.load(std::memory_order_relaxed))) +
      kDeadlineSlack;
  BatchDecision d = policy_->Decide(pending, clock_.Now(), estimate);
  *wake_at = d.wake_at;
  if (d.run.empty() && d.expired.empty()) return false;
  for (size_t i : d.expired) {
    // The expirer may have claimed it already; then it answers the job itself.
    if (queue_[i]->Claim(Job::kExpired)) expired->push_back(queue_[i]);
    queue_[i].reset();  // taken
  }
  for (size_t i : d.run) {
    if (queue_[i]->Claim(Job::kRunning)) batch->push_back(queue_[i]);
    queue_[i].reset();
  }
  // Close the gaps in place, keeping arrival order.
  std::erase(queue_, nullptr);
  stats_.queue_depth.store(static_cast<int64_t>(queue_.size()), std::memory_order_relaxed);
  running_ += static_cast<int>(batch->size() + expired->size());
  stats_.in_flight.fetch_add(static_cast<int64_t>(batch->size() + expired->size()),
                             std::memory_order_relaxed);
  return true;
}

void ModelRuntime::BatchWorkerLoop(Backend* backend) {
  std::vector<std::shared_ptr<Job>> batch;  // reused from one execution to the next
  std::vector<std::shared_ptr<Job>> expired;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      while (true) {
        if (queue_.empty()) {
          if (stopping_) return;
          work_cv_.Wait(&mu_);
          continue;
        }
        std::optional<SteadyTime> wake_at;
        if (TakeBatchLocked(&batch, &expired, &wake_at)) break;
        if (wake_at) {
          clock_.WaitUntil(work_cv_, mu_, *wake_at);
        } else {
          work_cv_.Wait(&mu_);
        }
      }
      // Another idle worker may batch what is left (another group, or past a preferred size).
      if (!queue_.empty()) work_cv_.Signal();
    }
    for (std::shared_ptr<Job>& job : expired) AnswerExpired(*job);
    const int answered = static_cast<int>(batch.size() + expired.size());
    std::erase_if(batch,
                  [this](const std::shared_ptr<Job>& job) { return AnsweredCancelled(*job); });
    if (!batch.empty()) RunBatch(backend, batch);
    batch.clear();  // release the requests' buffers before reporting idle
    expired.clear();
    {
      absl::MutexLock lock(&mu_);
      running_ -= answered;
      drained_cv_.SignalAll();
    }
  }
}

void ModelRuntime::RunBatch(Backend* backend, std::vector<std::shared_ptr<Job>>& batch) {
  if (batch.size() == 1) {
    Run(backend, *batch[0]);  // nothing to concatenate: today's path, tensor bytes not copied
    return;
  }
  const SteadyTime start = clock_.Now();

  // Concatenate each input along the first dimension, in the batch's order.
  int64_t total_rows = 0;
  for (const std::shared_ptr<Job>& job : batch) total_rows += job->rows;
  std::vector<Tensor> inputs;
  bool compatible = true;
  for (const TensorConfig& decl : config_.inputs) {
    std::vector<const Tensor*> parts;
    for (const std::shared_ptr<Job>& job : batch) {
      const std::vector<Tensor>& in = job->request.inputs;
      auto it = std::find_if(in.begin(), in.end(),
                             [&](const Tensor& t) { return t.name() == decl.name; });
      parts.push_back(it == in.end() ? nullptr : &*it);
    }
    if (parts[0] == nullptr) {
      compatible = std::all_of(parts.begin(), parts.end(), [](const Tensor* t) { return !t; });
      if (!compatible) break;
      continue;  // an optional input no request gave
    }
    size_t bytes = 0;
    for (const Tensor* t : parts) {
      if (t == nullptr || !SameTail(t->shape(), parts[0]->shape())) compatible = false;
      if (t != nullptr) bytes += t->data().size();
    }
    if (!compatible) break;
    std::string data;
    data.reserve(bytes);
    for (const Tensor* t : parts) data.append(t->data());
    Shape shape = parts[0]->shape();
    shape[0] = total_rows;
    inputs.push_back(Tensor::Owned(decl.name, decl.type, std::move(shape), std::move(data)));
  }
  if (!compatible) {
    // Two groups collided in BatchGroupOf: run the requests one by one instead.
    for (const std::shared_ptr<Job>& job : batch) Run(backend, *job);
    return;
  }
  for (const std::shared_ptr<Job>& job : batch) {
    stats_.queue.Add(NanosBetween(job->enqueued, start));
  }
  const SteadyTime prepared = clock_.Now();

  std::vector<Tensor> produced;
  absl::Status status;
  try {
    status = backend->Execute(inputs, &produced);
  } catch (const std::exception& e) {
    status = absl::InternalError(StrCat("model '", config_.name, "' failed: ", e.what()));
  }
  inputs.clear();
  const SteadyTime computed = clock_.Now();
  stats_.execution_count.fetch_add(1, std::memory_order_relaxed);
  stats_.batch_size.Add(batch.size());
  const uint64_t service = NanosBetween(prepared, computed);
  NoteServiceTime(service);
  for (size_t i = 0; i < batch.size(); ++i) {
    // Per request, as Triton counts them: each request took the whole batch's time.
    stats_.compute_input.Add(NanosBetween(start, prepared));
    stats_.compute_infer.Add(service);
  }

  // Split each output back along the first dimension: views of the one output buffer.
  std::vector<std::vector<Tensor>> per_job(batch.size());
  for (const Tensor& out : produced) {
    if (!status.ok()) break;
    if (out.shape().empty() || out.shape()[0] != total_rows || !ValidateTensorData(out).ok()) {
      status =
          absl::InternalError(StrCat("model '", config_.name, "' returned output '", out.name(),
                                     "' with shape ", ShapeString(out.shape()), " for a batch of ",
                                     total_rows, " rows; it cannot be split per request"));
      break;
    }
    const std::vector<size_t> offsets = RowOffsets(out);
    int64_t row = 0;
    for (size_t j = 0; j < batch.size(); ++j) {
      const int64_t rows = batch[j]->rows;
      Shape shape = out.shape();
      shape[0] = rows;
      const size_t begin = offsets[static_cast<size_t>(row)];
      const size_t end = offsets[static_cast<size_t>(row + rows)];
      per_job[j].push_back(Tensor::View(out.name(), out.type(), std::move(shape), out.owner(),
                                        out.data().substr(begin, end - begin)));
      row += rows;
    }
  }
  produced.clear();
  for (size_t j = 0; j < batch.size(); ++j) {
    Finish(*batch[j], status, std::move(per_job[j]), start, computed);
  }
  stats_.batch_stats.Add(static_cast<uint64_t>(total_rows), NanosBetween(start, prepared), service,
                         NanosBetween(computed, clock_.Now()));
}

void ModelRuntime::Drain() {
  absl::MutexLock lock(&mu_);
  draining_ = true;
  while (!queue_.empty() || running_ != 0) drained_cv_.Wait(&mu_);
}

void ModelRuntime::Retire() {
  retired_.store(true, std::memory_order_release);
  Drain();
}

}  // namespace hivemesh
