#include "services/kserve_watcher.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <memory>
#include <vector>

#include "absl/synchronization/notification.h"
#include "base/strings.h"
#include "services/kserve_backend.h"
#include "serving/model_repository.h"
#include "transport/peer_client.h"

namespace hivemesh::services {
namespace {

using std::chrono::seconds;

constexpr auto kUntilKnown = seconds(2);
constexpr auto kWhileKnown = seconds(10);
constexpr auto kNotKserve = seconds(30);
constexpr auto kCallTimeout = seconds(2);
constexpr int kFailuresToDetach = 3;

std::string Source(const std::string& workload) { return StrCat("workload ", workload); }

}  // namespace

KserveWatcher::KserveWatcher(PeerClient* client, ModelRepository* repository, Clock& clock)
    : client_(client), repository_(repository), clock_(clock), thread_([this] { Loop(); }) {}

KserveWatcher::~KserveWatcher() { Stop(); }

void KserveWatcher::SetWorkloads(std::map<std::string, KserveTarget> workloads) {
  absl::MutexLock lock(&mu_);
  if (workloads == wanted_) return;
  wanted_ = std::move(workloads);
  changed_ = true;
  cv_.Signal();
}

void KserveWatcher::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stop_ && !thread_.joinable()) return;
    stop_ = true;
    cv_.Signal();
  }
  if (thread_.joinable()) thread_.join();
}

void KserveWatcher::Loop() {
  for (;;) {
    std::map<std::string, KserveTarget> wanted;
    {
      absl::MutexLock lock(&mu_);
      SteadyTime wake = clock_.Now() + seconds(1);
      while (!stop_ && !changed_ && clock_.Now() < wake) clock_.WaitUntil(cv_, mu_, wake);
      if (stop_) break;
      changed_ = false;
      wanted = wanted_;
    }
    for (auto it = watched_.begin(); it != watched_.end();) {
      auto w = wanted.find(it->first);
      if (w != wanted.end() && w->second == it->second.target) {
        ++it;
        continue;
      }
      DetachAll(it->first, it->second, "it no longer runs here");
      it = watched_.erase(it);
    }
    for (auto& [name, target] : wanted) {
      Watched& w = watched_[name];
      w.target = target;
      if (clock_.Now() < w.next) continue;
      Check(name, w);
    }
  }
  for (auto& [name, w] : watched_) DetachAll(name, w, "the node stops");
  watched_.clear();
}

absl::StatusOr<PeerResponse> KserveWatcher::Call(uint16_t port, const std::string& method,
                                                 const std::string& target) {
  PeerRequest r;
  r.address = StrCat("127.0.0.1:", port);
  r.method = method;
  r.target = target;
  r.link = false;
  if (method == "POST") {
    r.headers.emplace_back("Content-Type", "application/json");
    r.body = "{}";
  }
  r.timeout = kCallTimeout;
  struct Wait {
    absl::Notification done;
    absl::StatusOr<PeerResponse> answer = absl::UnavailableError("no answer");
  };
  auto wait = std::make_shared<Wait>();
  client_->Send(std::move(r), [wait](absl::StatusOr<PeerResponse> answer) {
    wait->answer = std::move(answer);
    wait->done.Notify();
  });
  if (!wait->done.WaitForNotificationWithTimeout(absl::FromChrono(kCallTimeout) +
                                                 absl::Seconds(1))) {
    return absl::DeadlineExceededError("no answer");
  }
  if (!wait->answer.ok()) return wait->answer.status();
  if (wait->answer->status != 200) {
    // 404: nothing of the protocol there.
    return absl::Status(
        wait->answer->status == 404 ? absl::StatusCode::kNotFound : absl::StatusCode::kUnavailable,
        StrCat(method, " ", target, " answered ", wait->answer->status));
  }
  if (wait->answer->body == nullptr || wait->answer->body->size() > kMaxKserveAnswerBytes) {
    return absl::OutOfRangeError(
        StrCat(method, " ", target, ": no body, or over ", kMaxKserveAnswerBytes, " bytes"));
  }
  return std::move(wait->answer);
}

void KserveWatcher::Check(const std::string& name, Watched& w) {
  const uint16_t port = w.target.port;
  absl::StatusOr<PeerResponse> ready = Call(port, "GET", "/v2/health/ready");
  if (!ready.ok()) {
    const bool not_kserve = absl::IsNotFound(ready.status());
    if (not_kserve && w.target.annotated && !w.logged_not_kserve) {
      spdlog::error(
          "workload {} is annotated {} but does not answer the protocol at "
          "127.0.0.1:{}: {}",
          name, kKserveAnnotation, port, MessageOf(ready.status()));
      w.logged_not_kserve = true;
    }
    w.next = clock_.Now() +
             (not_kserve && !w.target.annotated && w.models.empty() ? kNotKserve : kUntilKnown);
    if (!w.models.empty() && ++w.failures >= kFailuresToDetach) {
      DetachAll(name, w, StrCat("its server is not ready: ", MessageOf(ready.status())));
    }
    return;
  }
  w.failures = 0;
  absl::StatusOr<PeerResponse> index = Call(port, "POST", "/v2/repository/index");
  absl::StatusOr<KserveIndex> models =
      index.ok() ? ParseKserveIndex(*index->body) : absl::StatusOr<KserveIndex>(index.status());
  if (!models.ok()) {
    // Not a KServe v2 server with the repository extension (or a broken one).
    if (!w.logged_not_kserve && w.target.annotated) {
      spdlog::error(
          "workload {} is annotated {} but its models cannot be listed at 127.0.0.1:{} "
          "(POST /v2/repository/index): {}",
          name, kKserveAnnotation, port, MessageOf(models.status()));
      w.logged_not_kserve = true;
    }
    w.next = clock_.Now() + (w.target.annotated ? kUntilKnown : kNotKserve);
    return;
  }
  for (const std::string& why : models->skipped) {
    spdlog::debug("workload {}: model {} is not served", name, why);
  }
  std::set<std::string> now;
  for (const std::string& model : models->ready) {
    absl::StatusOr<PeerResponse> meta = Call(port, "GET", StrCat("/v2/models/", model));
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
  w.next = clock_.Now() + (w.models.empty() ? kUntilKnown : kWhileKnown);
}

void KserveWatcher::DetachAll(const std::string& name, Watched& w, const std::string& why) {
  for (const std::string& model : w.models) {
    (void)repository_->DetachModel(model);
    spdlog::info("model {} of workload {} leaves the node: {}", model, name, why);
  }
  w.models.clear();
}

}  // namespace hivemesh::services
