#include "cli/demo/node_fleet.h"

#include <fcntl.h>
#include <signal.h>
#include <simdjson.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <thread>

#include "base/stable_port.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "cli/demo/child_process.h"
#include "cli/http_client.h"

namespace hivemesh::demo {
namespace {

size_t AliveMembers(const std::string& body) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  simdjson::dom::array members;
  if (parser.parse(body).get(doc) != simdjson::SUCCESS ||
      doc["members"].get(members) != simdjson::SUCCESS) {
    return 0;
  }
  size_t alive = 0;
  for (simdjson::dom::element m : members) {
    std::string_view state;
    if (m["state"].get(state) == simdjson::SUCCESS && state == "alive") ++alive;
  }
  return alive;
}

}  // namespace

NodeFleet::NodeFleet(std::string binary, std::string work_dir, const Scenario& scenario)
    : binary_(std::move(binary)),
      log_dir_((std::filesystem::path(work_dir) / "logs").string()),
      state_dir_((std::filesystem::path(work_dir) / "state").string()),
      repository_(scenario.repository) {
  for (const NodeSpec& n : scenario.nodes) {
    procs_[n.name].spec = &n;
    order_.push_back(n.name);
  }
}

NodeFleet::~NodeFleet() { StopAll(std::chrono::seconds(10)); }

absl::Status NodeFleet::StartAll(std::chrono::seconds timeout) {
  std::error_code ec;
  std::filesystem::create_directories(log_dir_, ec);
  if (ec) return absl::InternalError(StrCat("cannot create ", log_dir_, ": ", ec.message()));
  for (const std::string& name : order_) {
    Proc& p = procs_[name];
    absl::StatusOr<int> http = StablePort();
    if (!http.ok()) return http.status();
    absl::StatusOr<int> gossip = StablePort();
    if (!gossip.ok()) return gossip.status();
    p.http_port = *http;
    p.gossip_port = *gossip;
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  // The first node creates the mesh; the others join it with a token it makes.
  const std::string& first = order_.front();
  HM_RETURN_IF_ERROR(Start(first));
  while (token_.empty()) {
    if (!Running(first)) {
      return absl::InternalError(
          StrCat("node ", first, " exited during start-up; see ", log_dir_, "/", first, ".log"));
    }
    HttpClient client(ApiAddress(first), 1000);
    absl::StatusOr<HttpResult> made =
        client.Request("POST", "/v1/mesh/tokens", R"({"role":"node","ttl":"24h","uses":0})");
    simdjson::dom::parser parser;
    std::string_view token;
    if (made.ok() && made->status / 100 == 2 &&
        parser.parse(made->body)["token"].get(token) == simdjson::SUCCESS) {
      token_ = std::string(token);
      break;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      return absl::DeadlineExceededError(
          StrCat("node ", first, " made no join token within ", timeout.count(), " s",
                 made.ok() ? StrCat(" (it answered ", made->status, ": ", made->body, ")") : "",
                 "; see ", log_dir_, "/", first, ".log"));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  for (const std::string& name : order_) {
    if (name == first) continue;
    absl::Status s = Start(name);
    if (!s.ok()) return s;
  }
  for (const std::string& name : order_) {
    while (!Ready(name)) {
      if (!Running(name)) {
        return absl::InternalError(
            StrCat("node ", name, " exited during start-up; see ", log_dir_, "/", name, ".log"));
      }
      if (std::chrono::steady_clock::now() > deadline) {
        return absl::DeadlineExceededError(StrCat(
            "node ", name, " was not ready with all ", order_.size(), " members alive within ",
            timeout.count(), " s; see ", log_dir_, "/", name, ".log"));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  return absl::OkStatus();
}

absl::Status NodeFleet::Start(const std::string& name) {
  Proc& p = procs_.at(name);
  if (p.pid > 0) return absl::FailedPreconditionError(StrCat("node ", name, " is running"));
  std::string join;
  for (const std::string& other : order_) {
    if (other == name || procs_[other].pid <= 0) continue;
    StrAppend(&join, join.empty() ? "" : ",", "127.0.0.1:", procs_[other].gossip_port);
  }
  std::vector<std::string> args = {binary_, "agent", "--config", p.spec->config_path, "--node-name",
                                   name, "--model-repository", repository_, "--http-address",
                                   StrCat("127.0.0.1:", p.http_port), "--gossip-address",
                                   StrCat("127.0.0.1:", p.gossip_port),
                                   // The site's clients speak REST; several nodes share a host.
                                   "--grpc-address", "off",
                                   // Each node keeps its key (and so its name) across restarts.
                                   "--state-dir", StrCat(state_dir_, "/", name)};
  args.insert(args.end(), extra_args_.begin(), extra_args_.end());
  if (!join.empty()) {
    args.push_back("--join");
    args.push_back(join);
    // A first start joins with the token; a restart has its certificate and needs none.
    args.push_back("--token");
    args.push_back(token_);
  }
  const std::string log = StrCat(log_dir_, "/", name, ".log");
  absl::StatusOr<pid_t> pid = Spawn(args, log, log);
  if (!pid.ok()) return pid.status();
  p.pid = *pid;
  return absl::OkStatus();
}

bool NodeFleet::Running(const std::string& name) {
  Proc& p = procs_.at(name);
  if (p.pid <= 0) return false;
  int status = 0;
  const pid_t r = waitpid(p.pid, &status, WNOHANG);
  if (r == p.pid) {
    p.pid = -1;  // reaped: it exited on its own
    return false;
  }
  return true;
}

bool NodeFleet::Ready(const std::string& name) {
  if (!Running(name)) return false;
  HttpClient client(ApiAddress(name), 1000);
  absl::StatusOr<HttpResult> ready = client.Request("GET", "/v2/health/ready");
  if (!ready.ok() || ready->status != 200) return false;
  absl::StatusOr<HttpResult> members = client.Request("GET", "/v1/mesh/members");
  if (!members.ok() || members->status != 200) return false;
  size_t running = 0;
  for (const auto& [_, p] : procs_) running += p.pid > 0;
  return AliveMembers(members->body) >= running;
}

void NodeFleet::Kill(const std::string& name) {
  Proc& p = procs_.at(name);
  if (p.pid <= 0) return;
  kill(p.pid, SIGKILL);
  waitpid(p.pid, nullptr, 0);
  p.pid = -1;
}

std::vector<std::string> NodeFleet::StopAll(std::chrono::seconds grace) {
  std::vector<std::string> problems;
  for (auto& [name, p] : procs_) {
    if (p.pid > 0) kill(p.pid, SIGTERM);
  }
  const auto deadline = std::chrono::steady_clock::now() + grace;
  for (auto& [name, p] : procs_) {
    if (p.pid <= 0) continue;
    const std::string what = Reap(p.pid, deadline);
    if (!what.empty()) problems.push_back(StrCat(name, ": ", what));
    p.pid = -1;
  }
  return problems;
}

std::string NodeFleet::SecuritySummary() {
  std::map<std::string, int> meshes;  // mesh id -> nodes holding one of its certificates
  std::vector<std::string> without;
  for (const std::string& name : order_) {
    HttpClient client(ApiAddress(name), 2000);
    absl::StatusOr<HttpResult> v2 = client.Request("GET", "/v2");
    simdjson::dom::parser parser;
    std::string_view id;
    bool insecure = true;
    simdjson::dom::element doc;
    if (v2.ok() && v2->status == 200 && parser.parse(v2->body).get(doc) == simdjson::SUCCESS &&
        doc["insecure"].get(insecure) == simdjson::SUCCESS && !insecure &&
        doc["mesh"]["id"].get(id) == simdjson::SUCCESS) {
      ++meshes[std::string(id)];
    } else {
      without.push_back(name);
    }
  }
  if (meshes.size() == 1 && without.empty()) {
    return StrCat(order_.size(), " of ", order_.size(), " nodes hold a certificate of mesh ",
                  meshes.begin()->first,
                  " (joined with a token); links and forwarded requests between them are "
                  "mutual TLS, gossip is sealed with the mesh's key");
  }
  std::string out = StrCat("not one secure mesh: ", meshes.size(), " mesh(es)");
  if (!without.empty()) {
    StrAppend(&out, "; without a certificate (or not answering): ");
    for (const std::string& n : without) StrAppend(&out, n, " ");
  }
  return out;
}

std::string NodeFleet::ApiAddress(const std::string& name) const {
  return StrCat("127.0.0.1:", procs_.at(name).http_port);
}

}  // namespace hivemesh::demo
