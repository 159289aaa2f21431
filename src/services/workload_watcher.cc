#include "services/workload_watcher.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <vector>

#include "base/strings.h"
#include "services/kserve_backend.h"
#include "serving/model_repository.h"
#include "transport/peer_client.h"

namespace hivemesh::services {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr auto kTick = milliseconds(250);
constexpr auto kUntilKnown = seconds(2);
constexpr auto kWhileKnown = seconds(10);
constexpr auto kNotKserve = seconds(30);
constexpr auto kCallTimeout = milliseconds(2000);
constexpr int kFailuresToDetach = 3;

std::string Source(const std::string& workload) { return StrCat("workload ", workload); }

}  // namespace

WorkloadWatcher::WorkloadWatcher(PeerClient* client, ModelRepository* repository, Running running,
                                 std::function<void()> on_change, Clock& clock)
    : client_(client),
      repository_(repository),
      running_(std::move(running)),
      on_change_(std::move(on_change)),
      clock_(clock),
      thread_([this] { Loop(); }) {}

WorkloadWatcher::~WorkloadWatcher() { Stop(); }

void WorkloadWatcher::SetWorkloads(std::map<std::string, WatchedWorkload> workloads) {
  absl::MutexLock lock(&mu_);
  if (workloads == wanted_) return;
  wanted_ = std::move(workloads);
  changed_ = true;
  cv_.Signal();
}

std::set<std::string> WorkloadWatcher::Ready() const {
  absl::MutexLock lock(&mu_);
  return ready_;
}

void WorkloadWatcher::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
    cv_.Signal();
  }
  if (thread_.joinable()) thread_.join();
}

void WorkloadWatcher::Loop() {
  for (;;) {
    std::map<std::string, WatchedWorkload> wanted;
    {
      absl::MutexLock lock(&mu_);
      const SteadyTime wake = clock_.Now() + kTick;
      while (!stop_ && !changed_ && clock_.Now() < wake) clock_.WaitUntil(cv_, mu_, wake);
      if (stop_) break;
      changed_ = false;
      wanted = wanted_;
    }
    bool changed = false;
    for (auto it = watched_.begin(); it != watched_.end();) {
      auto w = wanted.find(it->first);
      if (w != wanted.end() && w->second == it->second.target) {
        ++it;
        continue;
      }
      DetachAll(it->first, it->second, "it no longer runs here, or changed");
      changed = changed || it->second.readiness.ready();
      it = watched_.erase(it);
    }
    for (auto& [name, target] : wanted) {
      Watched& w = watched_.try_emplace(name, target).first->second;
      if (clock_.Now() >= w.next_check) changed = CheckReady(name, w) || changed;
      if (!w.readiness.ready()) {
        DetachAll(name, w, "it is not ready");
      } else if (w.target.port != 0 && clock_.Now() >= w.next_kserve) {
        CheckKserve(name, w);
      }
    }
    if (changed) {
      std::set<std::string> ready;
      for (const auto& [name, w] : watched_) {
        if (w.readiness.ready()) ready.insert(name);
      }
      {
        absl::MutexLock lock(&mu_);
        ready_ = std::move(ready);
      }
      if (on_change_) on_change_();
    }
  }
  for (auto& [name, w] : watched_) DetachAll(name, w, "the node stops");
  watched_.clear();
}

bool WorkloadWatcher::CheckReady(const std::string& name, Watched& w) {
  const bool was = w.readiness.ready();
  const SteadyTime now = clock_.Now();
  std::string why;
  if (!running_(name)) {
    w.readiness.Down(now);
    why = "its process is not running";
  } else if (!w.target.probe) {
    w.readiness.Observe(true, now);
  } else {
    const ReadinessCheck& probe = *w.target.probe;
    absl::StatusOr<PeerResponse> answer =
        Call(probe.port, "GET", probe.path, std::min(probe.period, kCallTimeout));
    const bool ok = answer.ok() && answer->status >= 200 && answer->status < 400;
    if (!ok) {
      why = answer.ok() ? StrCat("GET ", probe.path, " answered ", answer->status)
                        : StrCat("GET ", probe.path, ": ", MessageOf(answer.status()));
    }
    w.readiness.Observe(ok, now);
  }
  w.next_check = now + (w.target.probe ? w.target.probe->period : milliseconds(1000));
  if (w.readiness.ready() == was) return false;
  if (w.readiness.ready()) {
    spdlog::info("workload {} is ready: an endpoint of the mesh", name);
  } else {
    spdlog::warn("workload {} is not ready: {}{}", name, why,
                 w.readiness.hold() > milliseconds(0)
                     ? StrCat(" (it flaps: it enters again after ", w.readiness.hold().count(),
                              " ms of passing checks)")
                     : "");
  }
  return true;
}

absl::StatusOr<PeerResponse> WorkloadWatcher::Call(uint16_t port, const std::string& method,
                                                   const std::string& target,
                                                   milliseconds timeout) {
  PeerRequest r;
  r.address = StrCat("127.0.0.1:", port);
  r.method = method;
  r.target = target;
  r.link = false;
  if (method == "POST") {
    r.headers.emplace_back("Content-Type", "application/json");
    r.body = "{}";
  }
  r.timeout = timeout;
  return SendAndWait(*client_, std::move(r));
}

absl::StatusOr<PeerResponse> WorkloadWatcher::Get200(uint16_t port, const std::string& method,
                                                     const std::string& target) {
  absl::StatusOr<PeerResponse> answer = Call(port, method, target, kCallTimeout);
  if (!answer.ok()) return answer.status();
  if (answer->status != 200) {
    // 404: nothing of the protocol there.
    return absl::Status(
        answer->status == 404 ? absl::StatusCode::kNotFound : absl::StatusCode::kUnavailable,
        StrCat(method, " ", target, " answered ", answer->status));
  }
  if (answer->body == nullptr || answer->body->size() > kMaxKserveAnswerBytes) {
    return absl::OutOfRangeError(
        StrCat(method, " ", target, ": no body, or over ", kMaxKserveAnswerBytes, " bytes"));
  }
  return answer;
}

void WorkloadWatcher::CheckKserve(const std::string& name, Watched& w) {
  const uint16_t port = w.target.port;
  absl::StatusOr<PeerResponse> ready = Get200(port, "GET", "/v2/health/ready");
  if (!ready.ok()) {
    const bool not_kserve = absl::IsNotFound(ready.status());
    if (not_kserve && w.target.kserve_annotated && !w.logged_not_kserve) {
      spdlog::error(
          "workload {} is annotated {} but does not answer the protocol at 127.0.0.1:{}: {}", name,
          kKserveAnnotation, port, MessageOf(ready.status()));
      w.logged_not_kserve = true;
    }
    w.next_kserve =
        clock_.Now() +
        (not_kserve && !w.target.kserve_annotated && w.models.empty() ? kNotKserve : kUntilKnown);
    if (!w.models.empty() && ++w.failures >= kFailuresToDetach) {
      DetachAll(name, w, StrCat("its server is not ready: ", MessageOf(ready.status())));
    }
    return;
  }
  w.failures = 0;
  absl::StatusOr<PeerResponse> index = Get200(port, "POST", "/v2/repository/index");
  absl::StatusOr<KserveIndex> models =
      index.ok() ? ParseKserveIndex(*index->body) : absl::StatusOr<KserveIndex>(index.status());
  if (!models.ok()) {
    // Not a KServe v2 server with the repository extension (or a broken one).
    if (!w.logged_not_kserve && w.target.kserve_annotated) {
      spdlog::error(
          "workload {} is annotated {} but its models cannot be listed at 127.0.0.1:{} "
          "(POST /v2/repository/index): {}",
          name, kKserveAnnotation, port, MessageOf(models.status()));
      w.logged_not_kserve = true;
    }
    w.next_kserve = clock_.Now() + (w.target.kserve_annotated ? kUntilKnown : kNotKserve);
    return;
  }
  for (const std::string& why : models->skipped) {
    spdlog::debug("workload {}: model {} is not served", name, why);
  }
  std::set<std::string> now;
  for (const std::string& model : models->ready) {
    absl::StatusOr<PeerResponse> meta = Get200(port, "GET", StrCat("/v2/models/", model));
    absl::StatusOr<std::string> config =
        meta.ok() ? KserveModelConfig(*meta->body, model, port, w.target.instances)
                  : absl::StatusOr<std::string>(meta.status());
    absl::Status attached =
        config.ok() ? repository_->AttachModel(model, *config, Source(name)) : config.status();
    if (!attached.ok()) {
      if (w.models.contains(model)) {
        now.insert(model);  // what it served stays (AttachModel keeps it on a failed reload)
      } else {
        spdlog::warn("workload {}: model {} is not served: {}", name, model, MessageOf(attached));
      }
      continue;
    }
    if (!w.models.contains(model)) {
      spdlog::info("workload {} serves model {} (KServe v2 at 127.0.0.1:{})", name, model, port);
    }
    now.insert(model);
  }
  for (const std::string& model : w.models) {
    if (now.contains(model)) continue;
    (void)repository_->DetachModel(model);
    spdlog::info("workload {} no longer serves model {}", name, model);
  }
  w.models = std::move(now);
  w.next_kserve = clock_.Now() + (w.models.empty() ? kUntilKnown : kWhileKnown);
}

void WorkloadWatcher::DetachAll(const std::string& name, Watched& w, const std::string& why) {
  for (const std::string& model : w.models) {
    (void)repository_->DetachModel(model);
    spdlog::info("model {} of workload {} leaves the node: {}", model, name, why);
  }
  w.models.clear();
  w.next_kserve = SteadyTime{};  // look again as soon as it is ready
}

}  // namespace hivemesh::services
