// The supervisor (docs/services.md, "Workloads the node runs"): the programs of the workloads
// placed on this node, each a child process in a process group of its own.
//
// - Start: the program (`argv[0]` looked up in PATH) with the node's environment plus the
//   workload's `env`, stdin from /dev/null, stdout and stderr read line by line into the node's
//   log as "[<workload>] <line>" (lines cut at kMaxLogLine bytes). A program that cannot be
//   started (not found, not executable) is an error at once, and is tried again with backoff.
// - A process that exits (or is killed) is restarted after RestartBackoff's delay: 1 s, 2 s, 4 s
//   ... up to 60 s; a run of 60 s or more starts the count over. Its whole process group is
//   killed when it exits, so no grandchild outlives it.
// - Stop: SIGTERM to the group, SIGKILL after the grace period, and the process is reaped (no
//   zombie). The destructor stops every process.
//
// Thread safety: every method may be called from any thread; each process is watched by a thread
// of its own.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace hivemesh::services {

inline constexpr size_t kMaxLogLine = 4096;

// When to restart a process that exited: a pure kernel, the times passed in.
class RestartBackoff {
 public:
  using Duration = std::chrono::milliseconds;
  explicit RestartBackoff(Duration initial = Duration(1000), Duration max = Duration(60000),
                          Duration reset_after = Duration(60000))
      : initial_(initial), max_(max), reset_after_(reset_after) {}
  // The delay before the next start of a process that ran for `ran`.
  Duration After(Duration ran);

 private:
  Duration initial_, max_, reset_after_;
  Duration next_{0};
};

struct ProcessSpec {
  std::string workload;  // the name in the log
  std::vector<std::string> argv;
  std::vector<std::pair<std::string, std::string>> env;
};

struct ProcessStatus {
  std::string workload;
  pid_t pid = 0;  // 0: not running now
  int starts = 0;
  std::string last_exit;  // "exited 1", "killed by signal 9", "cannot start: ..."; empty at first
};

class Supervisor {
 public:
  explicit Supervisor(std::chrono::milliseconds grace = std::chrono::seconds(10),
                      RestartBackoff backoff = RestartBackoff());
  ~Supervisor();
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // Runs `spec` under `key` (replacing, after stopping it, what ran under that key).
  void Run(const std::string& key, ProcessSpec spec);
  // Stops what runs under `key` and waits until it is reaped. No-op for an unknown key.
  void Stop(const std::string& key);
  void StopAll();
  std::vector<std::string> Keys() const;
  std::vector<ProcessStatus> Status() const;

 private:
  struct Watched;
  void Watch(Watched* w);

  const std::chrono::milliseconds grace_;
  const RestartBackoff backoff_;
  mutable absl::Mutex mu_;
  std::map<std::string, std::unique_ptr<Watched>> watched_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hivemesh::services
