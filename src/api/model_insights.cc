#include "api/model_insights.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <set>

#include "absl/strings/str_join.h"

#include "api/member_check.h"  // UnixMillisNow
#include "base/strings.h"
#include "bus/local_bus.h"
#include "serving/model_repository.h"
#include "serving/model_runtime.h"
#include "tensor/inference.h"

namespace hivemesh {
namespace {

std::string KeyOf(std::string_view model, std::string_view version) {
  return StrCat(model, "/", version);
}

// Windows close within this of their end; new model versions get their windows within it too.
constexpr std::chrono::milliseconds kLongestWait{1000};

}  // namespace

ModelInsights::ModelInsights(std::shared_ptr<bus::LocalBus> bus, std::string node, std::string zone,
                             const ModelRepository* repository)
    : bus_(std::move(bus)),
      node_(std::move(node)),
      zone_(std::move(zone)),
      repository_(repository),
      thread_([this] { WindowLoop(); }) {}

ModelInsights::~ModelInsights() { Stop(); }

void ModelInsights::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
    cv_.Signal();
  }
  if (thread_.joinable()) thread_.join();
}

ModelInsights::Version& ModelInsights::StateOf(const ModelRuntime& rt) {
  const ModelConfig& config = rt.config();
  const std::string key = KeyOf(config.name, rt.version());
  auto it = versions_.find(key);
  if (it != versions_.end()) return it->second;
  Version v{config.name, rt.version(), {}, InsightRuleSet(config.insight_rules)};
  std::vector<std::string> problems;
  for (size_t i = 0; i < config.insight_rules.size(); ++i) {
    absl::StatusOr<std::string> topic =
        ResolveInsightTopic(config.insight_rules[i].topic, node_, zone_, config.name);
    if (!topic.ok()) problems.push_back(StrCat("rule ", i, ": ", MessageOf(topic.status())));
    v.topics.push_back(topic.ok() ? *std::move(topic) : std::string());
  }
  if (!problems.empty()) {
    spdlog::warn("model {} version {}: insight rules that cannot publish on this node: {}",
                 config.name, rt.version(), absl::StrJoin(problems, "; "));
  }
  return versions_.emplace(key, std::move(v)).first->second;
}

void ModelInsights::Collect(Version& v, std::vector<InsightFiring> fired,
                            std::vector<Pending>* out) {
  for (InsightFiring& f : fired) {
    const std::string& topic = v.topics[f.rule];
    if (topic.empty()) {
      ++errors_[v.model].count;  // told once, when the rules were read
      continue;
    }
    out->push_back({topic, std::move(f.values), v.model, v.version, f.time_ms});
  }
}

void ModelInsights::Served(const ModelRuntime& served, std::string_view trace,
                           const InferResponse& response) {
  if (served.config().insight_rules.empty()) return;
  std::vector<Pending> pending;
  std::vector<std::string> errors;
  {
    absl::MutexLock lock(&mu_);
    Version& v = StateOf(served);
    Collect(v, v.rules.Observe(response.outputs, UnixMillisNow(), &errors), &pending);
  }
  if (!errors.empty()) NoteErrors(served.config().name, errors);
  Publish(std::move(pending), trace);
}

void ModelInsights::Publish(std::vector<Pending> pending, std::string_view trace) {
  for (Pending& p : pending) {
    absl::StatusOr<bus::Insight> published = bus_->Publish(
        std::move(p.topic), std::move(p.values), p.time_ms, p.model, p.version, std::string(trace));
    if (!published.ok()) {
      NoteErrors(p.model, {StrCat("publishing: ", MessageOf(published.status()))});
    }
  }
}

void ModelInsights::NoteErrors(const std::string& model, const std::vector<std::string>& errors) {
  absl::MutexLock lock(&mu_);
  Errors& e = errors_[model];
  e.count += errors.size();
  const SteadyTime now = SystemClock::Get().Now();
  if (e.ever_logged && now - e.logged < std::chrono::minutes(1)) return;
  e.ever_logged = true;
  e.logged = now;
  spdlog::warn("model {}: insight rules failed ({} so far; told once a minute): {}", model, e.count,
               absl::StrJoin(errors, "; "));
}

std::map<std::string, uint64_t> ModelInsights::errors() const {
  absl::MutexLock lock(&mu_);
  std::map<std::string, uint64_t> out;
  for (const auto& [model, e] : errors_) out[model] = e.count;
  return out;
}

void ModelInsights::WindowLoop() {
  absl::MutexLock lock(&mu_);
  while (!stop_) {
    // The versions served now: their windows start, those of versions gone are forgotten.
    mu_.Unlock();
    std::vector<RuntimePtr> runtimes = repository_->Runtimes();
    mu_.Lock();
    if (stop_) break;
    std::set<std::string> live;
    for (const RuntimePtr& rt : runtimes) {
      if (rt->config().insight_rules.empty()) continue;
      live.insert(KeyOf(rt->config().name, rt->version()));
      StateOf(*rt);
    }
    std::erase_if(versions_, [&](const auto& kv) { return !live.contains(kv.first); });
    const int64_t now = UnixMillisNow();
    std::vector<Pending> pending;
    std::optional<int64_t> due;
    for (auto& [key, v] : versions_) {
      Collect(v, v.rules.Tick(now), &pending);
      const std::optional<int64_t> next = v.rules.NextDue();
      if (next && (!due || *next < *due)) due = next;
    }
    if (!pending.empty()) {
      mu_.Unlock();
      Publish(std::move(pending), "");
      mu_.Lock();
      continue;  // the time moved while publishing
    }
    std::chrono::milliseconds wait = kLongestWait;
    if (due)
      wait = std::clamp(std::chrono::milliseconds(*due - now), std::chrono::milliseconds(1),
                        kLongestWait);
    SystemClock::Get().WaitUntil(cv_, mu_, SystemClock::Get().Now() + wait);
  }
}

}  // namespace hivemesh
