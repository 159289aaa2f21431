// Dynamic batching against unbatched serving, in process: closed-loop clients submit to a
// ModelRuntime directly (no HTTP, so what differs between rows is the runtime alone), for the
// vibration model and a larger generated MLP (tools/gen_mlp_model.py), at concurrency 1, 8, 32.
//
//   unbatched x1   max_batch_size 0, one instance
//   unbatched xN   max_batch_size 0, one instance per core
//   batched x1     max_batch_size 32, max_queue_delay_us 0 (batch what queued while busy)
//   batched x1 d   max_batch_size 32, max_queue_delay_us --delay-us (wait for company)
//   batched xN     max_batch_size 32, max_queue_delay_us 0, one instance per core
//
// Concurrency 1 is also measured in pairs: unbatched x1 and batched x1 run alternately, --pairs
// times, and the ratio reported is the median of the pairs' ratios, so that the machine's drift
// between two rows measured a minute apart does not decide "is batching slower at c=1".
//
// Prints a table, then `RESULT key=value ...`.
//
//   batching_bench --source <hivemesh source tree> --mlp <folder written by gen_mlp_model.py>
//                  [--seconds 1] [--repeat 3] [--pairs 9] [--delay-us 500] [--only vib_b1]
//                  [--paired-only 1]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "base/latency_histogram.h"
#include "serving/backend.h"
#include "serving/model_runtime.h"

namespace hivemesh {
namespace {

using Clock = std::chrono::steady_clock;

struct Variant {
  const char* name;
  const char* key;
  bool per_core;
  bool batched;
  bool delayed;
};

constexpr Variant kVariants[] = {
    {"unbatched x1", "u1", false, false, false}, {"unbatched xN", "un", true, false, false},
    {"batched x1", "b1", false, true, false},    {"batched x1 d", "b1d", false, true, true},
    {"batched xN", "bn", true, true, false},
};
constexpr int kConcurrency[] = {1, 8, 32};
constexpr int kMaxBatch = 32;

struct Row {
  double rps = 0;
  double p50_us = 0;
  double p99_us = 0;
  double mean_batch = 0;
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    std::fprintf(stderr, "cannot read %s\n", path.c_str());
    std::exit(2);
  }
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// One request's input: random values of the model's first input, batch size 1.
Tensor RandomInput(const ModelConfig& c) {
  const TensorConfig& in = c.inputs[0];
  Shape shape = in.dims;
  shape[0] = 1;
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  std::mt19937 rng(7);
  std::normal_distribution<float> dist;
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = dist(rng);
  return Tensor::Owned(in.name, DataType::kFp32, shape,
                       std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4));
}

// Closed loop: `clients` threads, each with one request outstanding, for `seconds` (after a
// warm-up of a quarter of that).
Row Measure(ModelRuntime& rt, const Tensor& input, int clients, double seconds) {
  LatencyHistogram latency;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> done{0};
  std::atomic<uint64_t> errors{0};
  const auto warm_end = Clock::now() + std::chrono::duration<double>(seconds / 4);
  std::atomic<uint64_t> exec_at_warm{0}, inf_at_warm{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < clients; ++t) {
    threads.emplace_back([&] {
      std::mutex mu;
      std::condition_variable cv;
      while (!stop.load(std::memory_order_relaxed)) {
        bool answered = false;
        bool ok = false;
        InferRequest req;
        req.inputs.push_back(input);
        const auto start = Clock::now();
        absl::Status s = rt.Submit(std::move(req), [&](absl::StatusOr<InferResponse> r) {
          std::lock_guard<std::mutex> lock(mu);
          ok = r.ok();
          answered = true;
          cv.notify_one();
        });
        if (!s.ok()) {
          errors++;
          continue;
        }
        std::unique_lock<std::mutex> lock(mu);
        cv.wait(lock, [&] { return answered; });
        if (!ok) errors++;
        if (start >= warm_end) {
          latency.Record(static_cast<uint64_t>((Clock::now() - start).count()));
          done++;
        }
      }
    });
  }
  std::this_thread::sleep_until(warm_end);
  exec_at_warm = rt.stats().execution_count.load();
  inf_at_warm = rt.stats().inference_count.load();
  const auto measure_start = Clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  const double window = std::chrono::duration<double>(Clock::now() - measure_start).count();
  const uint64_t completed = done.load();
  const uint64_t execs = rt.stats().execution_count.load() - exec_at_warm.load();
  const uint64_t infs = rt.stats().inference_count.load() - inf_at_warm.load();
  stop = true;
  for (std::thread& t : threads) t.join();
  if (errors.load() > 0) {
    std::fprintf(stderr, "%llu requests failed\n", static_cast<unsigned long long>(errors.load()));
    std::exit(1);
  }
  Row r;
  r.rps = static_cast<double>(completed) / window;
  r.p50_us = static_cast<double>(latency.Percentile(0.50)) / 1e3;
  r.p99_us = static_cast<double>(latency.Percentile(0.99)) / 1e3;
  r.mean_batch = execs == 0 ? 0 : static_cast<double>(infs) / static_cast<double>(execs);
  return r;
}

int Main(int argc, char** argv) {
  std::string source, mlp;
  std::string only;  // run only rows whose key (e.g. vib_b1) starts with this
  double seconds = 1;
  int repeat = 3;
  int pairs = 9;
  bool paired_only = false;  // only the concurrency-1 pairs
  int64_t delay_us = 500;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--source") {
      source = argv[i + 1];
    } else if (flag == "--mlp") {
      mlp = argv[i + 1];
    } else if (flag == "--seconds") {
      seconds = std::atof(argv[i + 1]);
    } else if (flag == "--repeat") {
      repeat = std::max(1, std::atoi(argv[i + 1]));
    } else if (flag == "--paired-only") {
      paired_only = std::atoi(argv[i + 1]) != 0;
    } else if (flag == "--pairs") {
      pairs = std::max(1, std::atoi(argv[i + 1]));
    } else if (flag == "--only") {
      only = argv[i + 1];
    } else if (flag == "--delay-us") {
      delay_us = std::atoll(argv[i + 1]);
    } else {
      std::fprintf(stderr, "unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  if (source.empty() || mlp.empty()) {
    std::fprintf(stderr,
                 "usage: batching_bench --source DIR --mlp DIR [--seconds S] [--delay-us N]\n");
    return 2;
  }
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  struct Model {
    const char* name;
    const char* key;
    std::string dir;
  };
  const Model models[] = {{"vibration-anomaly", "vib", source + "/models/vibration-anomaly"},
                          {"mlp-large", "mlp", mlp}};

  BackendRegistry registry;
  RegisterBuiltinBackends(registry);
  Expirer expirer;
  std::map<std::string, Row> rows;  // "<model>_<variant>_c<conns>"
  std::printf(
      "in-process closed loop, median of %d runs of %.1fs (after %.2fs warm-up) per row; %d "
      "cores; batched: max_batch_size %d, delay 0 or %lld us (d)\n",
      repeat, seconds, seconds / 4, cores, kMaxBatch, static_cast<long long>(delay_us));
  std::printf("%-18s%-14s%6s%11s%10s%10s%12s\n", "model", "variant", "conns", "req/s", "p50 us",
              "p99 us", "reqs/exec");
  for (const Model& m : models) {
    absl::StatusOr<ModelConfig> base =
        ParseModelConfig(ReadFile(m.dir + "/config.yaml"), m.name, m.dir + "/config.yaml");
    if (!base.ok()) {
      std::fprintf(stderr, "%s\n", std::string(base.status().message()).c_str());
      return 1;
    }
    const Tensor input = RandomInput(*base);
    for (const Variant& v : kVariants) {
      if (paired_only) break;
      if (std::string(m.key).append("_").append(v.key).rfind(only, 0) != 0) continue;
      ModelConfig c = *base;
      c.instances = v.per_core ? cores : 1;
      c.queue_limit = 256;
      if (v.batched) {
        c.batching.max_batch_size = kMaxBatch;
        c.batching.max_queue_delay_us = v.delayed ? delay_us : 0;
      }
      for (int conns : kConcurrency) {
        // A fresh runtime per run, so that statistics and warm state do not carry over. This
        // machine is noisy: the row is the run with the median throughput of `repeat`.
        std::vector<Row> runs;
        for (int rep = 0; rep < repeat; ++rep) {
          auto rt = ModelRuntime::Create(c, "1", m.dir + "/1", registry, &expirer);
          if (!rt.ok()) {
            std::fprintf(stderr, "%s: %s\n", m.name, std::string(rt.status().message()).c_str());
            return 1;
          }
          runs.push_back(Measure(**rt, input, conns, seconds));
        }
        std::sort(runs.begin(), runs.end(),
                  [](const Row& a, const Row& b) { return a.rps < b.rps; });
        const Row r = runs[runs.size() / 2];
        rows[std::string(m.key) + "_" + v.key + "_c" + std::to_string(conns)] = r;
        std::printf("%-18s%-14s%6d%11.0f%10.0f%10.0f%12.1f\n", m.name, v.name, conns, r.rps,
                    r.p50_us, r.p99_us, r.mean_batch);
        std::fflush(stdout);
      }
    }
  }

  // Concurrency 1, unbatched x1 against batched x1 (delay 0) in alternation.
  std::map<std::string, std::pair<double, double>> paired;  // model -> median rps, p50 ratios
  if (only.empty()) {
    std::printf("\nconcurrency 1 in pairs (unbatched x1, then batched x1), %d pairs of %.1fs:\n",
                pairs, seconds);
    std::printf("%-18s%14s%14s%14s%14s\n", "model", "rps ratio", "min", "max", "p50 ratio");
  }
  for (const Model& m : models) {
    if (!only.empty()) break;
    absl::StatusOr<ModelConfig> base =
        ParseModelConfig(ReadFile(m.dir + "/config.yaml"), m.name, m.dir + "/config.yaml");
    const Tensor input = RandomInput(*base);
    ModelConfig batched = *base;
    batched.batching.max_batch_size = kMaxBatch;
    std::vector<double> rps_ratio, p50_ratio;
    for (int i = 0; i < pairs; ++i) {
      Row r[2];
      for (int b = 0; b < 2; ++b) {
        auto rt = ModelRuntime::Create(b ? batched : *base, "1", m.dir + "/1", registry, &expirer);
        r[b] = Measure(**rt, input, 1, seconds);
      }
      rps_ratio.push_back(r[1].rps / r[0].rps);
      p50_ratio.push_back(r[0].p50_us / std::max(1e-9, r[1].p50_us));
    }
    std::sort(rps_ratio.begin(), rps_ratio.end());
    std::sort(p50_ratio.begin(), p50_ratio.end());
    paired[m.key] = {rps_ratio[rps_ratio.size() / 2], p50_ratio[p50_ratio.size() / 2]};
    std::printf("%-18s%14.3f%14.3f%14.3f%14.3f\n", m.name, paired[m.key].first, rps_ratio.front(),
                rps_ratio.back(), paired[m.key].second);
  }

  std::string result = "RESULT";
  char buf[128];
  for (const auto& [key, r] : rows) {
    std::snprintf(buf, sizeof buf, " %s_rps=%.0f %s_p50_us=%.0f %s_p99_us=%.0f", key.c_str(), r.rps,
                  key.c_str(), r.p50_us, key.c_str(), r.p99_us);
    result += buf;
  }
  for (const Model& m : models) {
    const std::string k = m.key;
    if (!only.empty()) break;  // the ratios need every row
    if (!paired_only) {
      const double best_unbatched = std::max(rows[k + "_u1_c32"].rps, rows[k + "_un_c32"].rps);
      const double best_batched = std::max(rows[k + "_b1_c32"].rps, rows[k + "_bn_c32"].rps);
      std::snprintf(buf, sizeof buf, " %s_c32_batched_vs_best_unbatched=%.2f %s_c1_b1_vs_u1=%.2f",
                    k.c_str(), best_batched / best_unbatched, k.c_str(),
                    rows[k + "_b1_c1"].rps / rows[k + "_u1_c1"].rps);
      result += buf;
    }
    // > 1: batched x1 faster (throughput; and p50 = unbatched p50 / batched p50).
    std::snprintf(buf, sizeof buf, " %s_c1_paired_b1_vs_u1=%.3f %s_c1_paired_p50_u1_vs_b1=%.3f",
                  k.c_str(), paired[k].first, k.c_str(), paired[k].second);
    result += buf;
  }
  std::printf("%s\n", result.c_str());
  return 0;
}

}  // namespace
}  // namespace hivemesh

int main(int argc, char** argv) { return hivemesh::Main(argc, argv); }
