// The demo's child processes (nodes, the MQTT broker, the subscribers): each in its own process
// group (a terminal's Ctrl-C reaches the demo, which stops them in order), dying with the demo
// if the demo dies (PR_SET_PDEATHSIG), its output appended to files.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace hivemesh::demo {

// Starts argv[0] (a path, or a name looked up in PATH) with `argv`; standard output goes to
// `out_path` and standard error to `err_path` (appended; the same file for both is fine).
absl::StatusOr<pid_t> Spawn(const std::vector<std::string>& argv, const std::string& out_path,
                            const std::string& err_path);

// Waits until `pid` exits, SIGKILLs it at `deadline`; reaps it. What happened, as Stop says it.
std::string Reap(pid_t pid, std::chrono::steady_clock::time_point deadline);
// SIGTERM, then SIGKILL after `grace`; reaps it. Returns "" if it exited with status 0, else
// what happened ("did not stop in time; killed", "exited with status 1", "exited with signal
// 9"). REQUIRES: `pid` is a child not yet reaped.
std::string Stop(pid_t pid, std::chrono::milliseconds grace);

// The path of `name` in PATH (or in /usr/sbin and /sbin, where Debian puts daemons), or "".
std::string FindProgram(const std::string& name);

}  // namespace hivemesh::demo
