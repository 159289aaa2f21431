#include "support/agent_process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "base/stable_port.h"

namespace hivemesh::test {
namespace fs = std::filesystem;

// Both paths are compiled in by tests/CMakeLists.txt.
std::string SourceDir() { return HIVEMESH_SOURCE_DIR; }
std::string HivemeshBinary() { return HIVEMESH_BINARY; }

TempDir::TempDir() {
  std::string tmpl = (fs::temp_directory_path() / "hivemesh-test-XXXXXX").string();
  path_ = ::mkdtemp(tmpl.data());
}

std::string IdentityModelConfig(const std::string& extra) {
  return "backend: identity\ninputs: [{name: INPUT0, datatype: FP32, shape: [-1]}]\n"
         "outputs: [{name: OUTPUT0, datatype: FP32, shape: [-1]}]\n" +
         extra;
}

int UnusedPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

int RestartablePort() {
  absl::StatusOr<int> port = StablePort();
  if (!port.ok()) {
    std::fprintf(stderr, "%s\n", std::string(port.status().message()).c_str());
    std::abort();
  }
  return *port;
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

void TempDir::Write(const std::string& relative, const std::string& content) const {
  const fs::path p = fs::path(path_) / relative;
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << content;
}

// The state folder of the node called `name` in this test process: a node restarted under the
// same name finds its key again, as on a device (the mesh binds a name to its key). Removed when
// the test process exits.
std::string StateDirFor(const std::string& name) {
  static TempDir* root = new TempDir();  // lives until exit; tests run one process each
  static const int cleanup = std::atexit([] { delete root; });
  (void)cleanup;
  return root->path() + "/" + name;
}

AgentProcess::AgentProcess(std::vector<std::string> args) {
  log_path_ = dir_.path() + "/agent.log";
  std::string name = "node";
  for (size_t i = 0; i + 1 < args.size(); ++i) {
    if (args[i] == "--node-name") name = args[i + 1];
  }
  // No gRPC unless a test asks (a later flag wins): tests run side by side on one host.
  std::vector<std::string> argv = {
      HivemeshBinary(), "agent", "--http-address", "127.0.0.1:0", "--gossip-address", "127.0.0.1:0",
      "--grpc-address", "off", "--state-dir", StateDirFor(name),
      // A mesh without certificates: these tests are about serving, routing and membership.
      "--insecure"};
  argv.insert(argv.end(), args.begin(), args.end());
  pid_ = ::fork();
  if (pid_ == 0) {
    const int fd = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    std::vector<char*> cargv;
    for (std::string& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    ::execv(cargv[0], cargv.data());
    std::_Exit(127);
  }
  static constexpr std::string_view kReady = "ready: KServe v2 REST on http://";
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    const std::string text = log();
    const size_t at = text.find(kReady);
    const size_t colon = at == std::string::npos ? at : text.find(':', at + kReady.size());
    // Wait for the whole line, so the port is complete.
    if (colon != std::string::npos && text.find(" serving models", colon) != std::string::npos) {
      port_ = std::atoi(text.c_str() + colon + 1);
      return;
    }
    int status;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

AgentProcess::~AgentProcess() { Kill(); }

std::string AgentProcess::log() const {
  std::ifstream in(log_path_);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

int AgentProcess::Terminate(std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return -1;
  ::kill(pid_, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    int status;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  Kill();
  return -1;
}

void AgentProcess::Kill() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int status;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
}

}  // namespace hivemesh::test
