#include "telemetry/process_metrics.h"

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace hivemesh::telemetry {
namespace {

// Fields of /proc/self/stat after the command name (which may hold spaces): field 3 is first.
std::vector<std::string> SelfStat() {
  std::ifstream in("/proc/self/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> fields;
  const size_t close = text.rfind(')');
  if (close == std::string::npos) return fields;
  std::istringstream rest(text.substr(close + 1));
  for (std::string f; rest >> f;) fields.push_back(std::move(f));
  return fields;
}

// Field `n` (1-based, as proc(5) numbers them) of /proc/self/stat, or 0.
double StatField(const std::vector<std::string>& fields, size_t n) {
  if (n < 3 || n - 3 >= fields.size()) return 0;
  return std::strtod(fields[n - 3].c_str(), nullptr);
}

// When the process started, from its start time in ticks since boot and the boot time; the
// registration time if /proc does not say.
double StartTimeSeconds() {
  const double ticks = StatField(SelfStat(), 22);
  std::ifstream in("/proc/stat");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("btime ", 0) == 0 && ticks > 0) {
      return std::strtod(line.c_str() + 6, nullptr) +
             ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
    }
  }
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

void RegisterProcessMetrics(Registry& registry) {
  registry
      .AddGauge("process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.")
      .Set(StartTimeSeconds());
  registry.AddCollector("process_cpu_seconds_total",
                        "Total user and system CPU time spent in seconds.", MetricType::kCounter,
                        {}, [](SampleSink& sink) {
                          const std::vector<std::string> f = SelfStat();
                          sink.Add({}, (StatField(f, 14) + StatField(f, 15)) /
                                           static_cast<double>(sysconf(_SC_CLK_TCK)));
                        });
  registry.AddCollector(
      "process_resident_memory_bytes", "Resident memory size in bytes.", MetricType::kGauge, {},
      [](SampleSink& sink) {
        sink.Add({}, StatField(SelfStat(), 24) * static_cast<double>(sysconf(_SC_PAGESIZE)));
      });
  registry.AddCollector("process_open_fds", "Number of open file descriptors.", MetricType::kGauge,
                        {}, [](SampleSink& sink) {
                          std::error_code ec;
                          double n = 0;
                          for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ec);
                               !ec && it != std::filesystem::directory_iterator();
                               it.increment(ec)) {
                            ++n;
                          }
                          sink.Add({}, n);
                        });
}

}  // namespace hivemesh::telemetry
