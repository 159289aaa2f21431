#include "cli/demo/traffic.h"

#include <simdjson.h>

#include <algorithm>
#include <deque>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "absl/synchronization/mutex.h"
#include "base/clock.h"
#include "base/hex.h"
#include "base/strings.h"
#include "cli/demo/vibration_signal.h"
#include "cli/http_client.h"

namespace hivemesh::demo {
namespace {

using Clock = std::chrono::steady_clock;
using Headers = std::vector<std::pair<std::string, std::string>>;

constexpr int kRequestTimeoutMs = 15000;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// `bytes` random bytes as hex (a trace or span id), from a generator per thread.
std::string RandomHex(size_t bytes) {
  thread_local std::mt19937_64 rng(std::random_device{}());
  std::string raw(bytes, '\0');
  for (char& c : raw) c = static_cast<char>(rng() & 0xff);
  return HexEncode(raw);
}

// One keep-alive client per node, for one sender thread.
class Clients {
 public:
  explicit Clients(const std::map<std::string, std::string>& address) : address_(address) {}
  HttpClient& For(const std::string& node) {
    auto it = clients_.find(node);
    if (it == clients_.end()) {
      it = clients_.emplace(node, HttpClient(address_.at(node), kRequestTimeoutMs)).first;
    }
    return it->second;
  }

 private:
  const std::map<std::string, std::string>& address_;
  std::map<std::string, HttpClient> clients_;
};

}  // namespace

absl::StatusOr<std::vector<std::string>> LoadFrames(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  std::vector<fs::path> files;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.starts_with("frame-") && name.ends_with(".jpg")) files.push_back(e.path());
  }
  if (ec) return absl::NotFoundError(StrCat(dir, ": ", ec.message()));
  if (files.empty()) return absl::NotFoundError(StrCat(dir, ": no frame-*.jpg files"));
  std::sort(files.begin(), files.end());
  std::vector<std::string> frames;
  for (const fs::path& f : files) {
    std::ifstream in(f, std::ios::binary);
    std::ostringstream bytes;
    bytes << in.rdbuf();
    if (!in) return absl::InternalError(StrCat(f.string(), ": cannot read"));
    frames.push_back(std::move(bytes).str());
  }
  return frames;
}

absl::StatusOr<double> FirstOutputValue(std::string_view body, std::string_view name,
                                        size_t index) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  simdjson::dom::array outputs;
  if (parser.parse(body.data(), body.size()).get(doc) != simdjson::SUCCESS ||
      doc["outputs"].get(outputs) != simdjson::SUCCESS) {
    return absl::InvalidArgumentError("the response is not a KServe v2 JSON response");
  }
  for (simdjson::dom::element out : outputs) {
    std::string_view n;
    if (out["name"].get(n) != simdjson::SUCCESS || n != name) continue;
    simdjson::dom::array data;
    if (out["data"].get(data) != simdjson::SUCCESS || index >= data.size()) break;
    double v = 0;
    if (data.at(index).get(v) == simdjson::SUCCESS) return v;
    break;
  }
  return absl::InvalidArgumentError(
      StrCat("the response has no value ", index, " of output '", name, "'"));
}

// One client: a pacer issuing request numbers at the client's rate and senders doing them.
class Traffic::Source {
 public:
  using Work = std::function<void(Source& self, uint64_t seq, double t_s, Clients& clients)>;

  Source(std::string name, ClientKind kind, std::string node, std::vector<std::string> fallback,
         std::function<double(double)> rate, int senders, const Traffic& traffic,
         const std::map<std::string, std::string>& address, Recorder& recorder, Work work)
      : name_(std::move(name)),
        kind_(kind),
        node_(std::move(node)),
        fallback_(std::move(fallback)),
        rate_(std::move(rate)),
        senders_(senders),
        traffic_(traffic),
        address_(address),
        recorder_(recorder),
        work_(std::move(work)) {}

  void Start() {
    threads_.emplace_back([this] { Pace(); });
    for (int i = 0; i < senders_; ++i) threads_.emplace_back([this] { SendLoop(); });
  }
  void Stop() {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
    }
    cv_.SignalAll();
    for (std::thread& t : threads_) t.join();
    threads_.clear();
  }
  const std::string& name() const { return name_; }
  size_t skipped() const {
    absl::MutexLock lock(&mu_);
    return skipped_;
  }

  // Sends one inference to the client's node, or to its fallbacks in turn while nodes cannot
  // be reached, and returns what happened (not yet recorded) and the response body.
  Outcome Send(Clients& clients, double t_s, const std::string& model, std::string_view body,
               const Headers& headers, std::string* response) {
    Outcome o;
    o.t_s = t_s;
    o.kind = kind_;
    o.client = name_;
    o.node = node_;
    o.model = model;
    // A trace id of its own: the insights the request leads to carry it (matched in the report).
    o.trace = RandomHex(16);
    Headers traced = headers;
    traced.emplace_back("traceparent", StrCat("00-", o.trace, "-", RandomHex(8), "-01"));
    const Clock::time_point t0 = Clock::now();
    const std::string target = StrCat("/v2/models/", model, "/infer");
    std::vector<std::string> nodes = {node_};
    nodes.insert(nodes.end(), fallback_.begin(), fallback_.end());
    for (const std::string& node : nodes) {
      o.sent_to = node;
      absl::StatusOr<HttpResult> r = clients.For(node).Request("POST", target, body, traced);
      if (!r.ok()) {
        o.error = std::string(MessageOf(r.status()));
        if (r.status().code() == absl::StatusCode::kUnavailable) continue;  // try a fallback
        break;
      }
      o.status = r->status;
      o.served_by = r->header("hivemesh-served-by");
      if (o.status != 200) {
        o.error = StrCat("HTTP ", o.status, ": ", r->body.substr(0, 200));
      } else {
        o.error.clear();
      }
      *response = std::move(r->body);
      break;
    }
    o.latency_ms = Seconds(Clock::now() - t0) * 1e3;
    return o;
  }

  void Record(Outcome o) { recorder_.Add(std::move(o)); }

 private:
  void Pace() {
    Clock::time_point next = Clock::now();
    uint64_t seq = 0;
    absl::MutexLock lock(&mu_);
    while (!stop_) {
      // The demo's own pacing runs on the real clock (it drives real nodes).
      while (!stop_ && !SystemClock::Get().WaitUntil(cv_, mu_, next)) {
      }
      if (stop_) break;
      const double t = traffic_.ElapsedSeconds();
      if (backlog_.size() >= static_cast<size_t>(2 * senders_)) {
        ++skipped_;
      } else {
        backlog_.push_back({seq, t});
        cv_.Signal();
      }
      ++seq;
      next += std::chrono::duration_cast<Clock::duration>(
          std::chrono::duration<double>(1.0 / std::max(0.01, rate_(t))));
      // After a stall (the machine was busy), do not fire a burst to catch up.
      next = std::max(next, Clock::now() - std::chrono::milliseconds(100));
    }
  }

  void SendLoop() {
    Clients clients(address_);
    for (;;) {
      Ticket ticket;
      {
        absl::MutexLock lock(&mu_);
        while (!stop_ && backlog_.empty()) cv_.Wait(&mu_);
        if (backlog_.empty()) return;  // stopping: requests not yet sent are dropped unsent
        if (stop_) {
          backlog_.clear();
          return;
        }
        ticket = backlog_.front();
        backlog_.pop_front();
      }
      work_(*this, ticket.seq, ticket.t_s, clients);
    }
  }

  struct Ticket {
    uint64_t seq = 0;
    double t_s = 0;
  };

  const std::string name_;
  const ClientKind kind_;
  const std::string node_;
  const std::vector<std::string> fallback_;
  const std::function<double(double)> rate_;
  const int senders_;
  const Traffic& traffic_;
  const std::map<std::string, std::string>& address_;
  Recorder& recorder_;
  const Work work_;

  mutable absl::Mutex mu_;
  absl::CondVar cv_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<Ticket> backlog_ ABSL_GUARDED_BY(mu_);
  size_t skipped_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::thread> threads_;
};

Traffic::Traffic(const Scenario& scenario, std::map<std::string, std::string> address,
                 const std::vector<std::string>& frames, Recorder& recorder)
    : address_(std::move(address)) {
  const std::map<std::string, std::string>& addr = address_;
  const Headers raw = {{"Content-Type", "application/octet-stream"},
                       {"Inference-Header-Content-Length", "0"}};
  size_t index = 0;
  for (const CameraSpec& cam : scenario.cameras) {
    // Cameras start at different points of the video.
    const size_t offset = (index++ * 37) % std::max<size_t>(1, frames.size());
    Source::Work work = [&frames, raw, cam, offset](Source& self, uint64_t seq, double t_s,
                                                    Clients& clients) {
      const std::string& frame = frames[(offset + seq) % frames.size()];
      std::string body;
      Outcome o = self.Send(clients, t_s, "people-detector", frame, raw, &body);
      if (o.ok()) {
        absl::StatusOr<double> count = FirstOutputValue(body, "count");
        o.count = count.ok() ? static_cast<int>(*count) : -1;
      }
      self.Record(std::move(o));
      if (cam.face_every > 0 && seq % static_cast<uint64_t>(cam.face_every) == 0) {
        Outcome f = self.Send(clients, t_s, "face-detector", frame, raw, &body);
        if (f.ok()) {
          absl::StatusOr<double> count = FirstOutputValue(body, "count");
          f.count = count.ok() ? static_cast<int>(*count) : -1;
        }
        self.Record(std::move(f));
      }
    };
    sources_.push_back(std::make_unique<Source>(
        cam.name, ClientKind::kCamera, cam.node, cam.fallback,
        [cam](double t) { return cam.RateAt(t); }, 8, *this, addr, recorder, std::move(work)));
  }
  uint64_t seed = 20261126;
  for (const SensorSpec& sensor : scenario.sensors) {
    const uint64_t sensor_seed = seed++;
    Source::Work work = [sensor, sensor_seed](Source& self, uint64_t seq, double t_s,
                                              Clients& clients) {
      // Windows are a pure function of (sensor, seq): repeatable whichever thread sends them.
      std::mt19937_64 rng(sensor_seed * 1000003 + seq);
      const bool fault = std::uniform_real_distribution<>(0, 1)(rng) < sensor.fault_ratio;
      VibrationSignal signal(rng());
      const std::array<float, kVibrationWindow> w = signal.Window(fault);
      std::string body =
          R"({"inputs":[{"name":"window","datatype":"FP32","shape":[1,128],"data":[)";
      for (int i = 0; i < kVibrationWindow; ++i) StrAppend(&body, i ? "," : "", double{w[i]});
      body += "]}]}";
      std::string response;
      Outcome o = self.Send(clients, t_s, "vibration-anomaly", body,
                            {{"Content-Type", "application/json"}}, &response);
      o.injected = fault;
      if (o.ok()) {
        absl::StatusOr<double> p = FirstOutputValue(response, "scores", 1);
        o.p_fault = p.ok() ? *p : -1;
      }
      self.Record(std::move(o));
    };
    sources_.push_back(std::make_unique<Source>(
        sensor.name, ClientKind::kSensor, sensor.node, sensor.fallback,
        [rate = sensor.rate_hz](double) { return rate; }, 3, *this, addr, recorder,
        std::move(work)));
  }
}

Traffic::~Traffic() { Stop(); }

void Traffic::Start() {
  start_ = Clock::now();
  for (auto& s : sources_) s->Start();
}

void Traffic::Stop() {
  for (auto& s : sources_) s->Stop();
}

double Traffic::ElapsedSeconds() const { return Seconds(Clock::now() - start_); }

std::map<std::string, size_t> Traffic::Skipped() const {
  std::map<std::string, size_t> out;
  for (const auto& s : sources_) out[s->name()] = s->skipped();
  return out;
}

}  // namespace hivemesh::demo
