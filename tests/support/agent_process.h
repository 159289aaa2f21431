// AgentProcess: runs the real `hivemesh agent` binary as a child process for integration tests,
// on a free loopback port, and stops it (SIGKILL if it does not exit) when destroyed.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

namespace hivemesh::test {

// The folder a test may write into, removed when destroyed.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  // Writes `content` to path()/relative, creating folders.
  void Write(const std::string& relative, const std::string& content) const;

 private:
  std::string path_;
};

// The identity model's config.yaml (INPUT0 -> OUTPUT0, FP32 of any length), followed by `extra`
// (more keys, each line ending in a newline).
std::string IdentityModelConfig(const std::string& extra = "");

// Path of the source tree and of the built `hivemesh` binary.
std::string SourceDir();
std::string HivemeshBinary();

// A loopback TCP port nothing listens on: bound, then closed.
int UnusedPort();
// A loopback port free for both TCP and UDP and outside the kernel's ephemeral range, for a
// node that is killed and restarted on the same address: while it is down, no other process's
// outgoing connection or port-0 bind can take the port.
int RestartablePort();

class AgentProcess {
 public:
  // Starts `hivemesh agent --http-address 127.0.0.1:0 --gossip-address 127.0.0.1:0 <args>` (later
  // flags win) and waits until it logs that it is ready (or exits, or 20 s pass). Check ok().
  explicit AgentProcess(std::vector<std::string> args);
  ~AgentProcess();

  bool ok() const { return port_ > 0; }
  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  std::string log() const;  // everything the agent printed so far

  // Sends SIGTERM and waits for exit; returns the exit code (-1 on timeout, then SIGKILL).
  int Terminate(std::chrono::milliseconds timeout = std::chrono::seconds(30));
  void Kill();  // SIGKILL, then reap

 private:
  pid_t pid_ = -1;
  int port_ = 0;
  std::string log_path_;
  TempDir dir_;
};

}  // namespace hivemesh::test
