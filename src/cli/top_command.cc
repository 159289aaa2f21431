#include "cli/top_command.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <map>
#include <memory>
#include <thread>

#include "base/strings.h"
#include "cli/cli_flags.h"
#include "cli/mesh_view.h"
#include "cli/top_view.h"

namespace hivemesh::cli {
namespace {

std::atomic<bool> g_interrupted{false};

void OnInterrupt(int) { g_interrupted.store(true); }

// Keep-alive clients to every node seen, by API address.
class Clients {
 public:
  explicit Clients(int timeout_ms) : timeout_ms_(timeout_ms) {}
  HttpClient& For(const std::string& address) {
    std::unique_ptr<HttpClient>& c = clients_[address];
    if (c == nullptr) c = std::make_unique<HttpClient>(address, timeout_ms_);
    return *c;
  }

 private:
  const int timeout_ms_;
  std::map<std::string, std::unique_ptr<HttpClient>> clients_;
};

// Reads one member's counters into `sample`.
void ReadNode(Clients& clients, NodeSample& sample) {
  const Member& m = sample.member;
  if (m.gone()) return;
  if (m.api_address.empty()) {
    sample.error = "no API address in its metadata";
    return;
  }
  HttpClient& client = clients.For(m.api_address);
  absl::StatusOr<HttpResult> stats = Call(client, "GET", "/v2/models/stats");
  sample.at = std::chrono::steady_clock::now();
  if (!stats.ok()) {
    sample.error = std::string(stats.status().message());
    return;
  }
  absl::StatusOr<NodeCounters> counters = ParseModelStats(stats->body);
  if (!counters.ok()) {
    sample.error = std::string(counters.status().message());
    return;
  }
  absl::StatusOr<HttpResult> routes = Call(client, "GET", "/v1/mesh/routes");
  if (routes.ok()) ParseRoutes(routes->body, *counters).IgnoreError();  // routes are optional
  sample.counters = *counters;
}

absl::StatusOr<std::vector<NodeSample>> Sample(HttpClient& seed, Clients& clients) {
  absl::StatusOr<HttpResult> reply = Call(seed, "GET", "/v1/mesh/members");
  if (!reply.ok()) return reply.status();
  absl::StatusOr<std::vector<Member>> members = ParseMembers(reply->body);
  if (!members.ok()) return members.status();
  std::vector<NodeSample> samples;
  for (Member& m : *members) {
    NodeSample s;
    s.member = std::move(m);
    s.at = std::chrono::steady_clock::now();
    ReadNode(clients, s);
    samples.push_back(std::move(s));
  }
  return samples;
}

// Waits until `until` or Ctrl-C; false on Ctrl-C.
bool WaitUntil(std::chrono::steady_clock::time_point until) {
  while (!g_interrupted.load()) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= until) return true;
    std::this_thread::sleep_for(
        std::min<std::chrono::steady_clock::duration>(until - now, std::chrono::milliseconds(50)));
  }
  return false;
}

std::string Clock() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[16];
  std::strftime(buf, sizeof buf, "%H:%M:%S", &tm);
  return buf;
}

}  // namespace

CLI::App* AddTopCommand(CLI::App& app, TopFlags& flags) {
  CLI::App* cmd = app.add_subcommand(
      "top", "live load of every node: queued, running, requests per second, local/forwarded");
  cmd->add_option("--interval-ms", flags.interval_ms, "time between refreshes [default: 1000]")
      ->check(CLI::Range(100, 3600 * 1000));
  cmd->add_option("--count", flags.count, "stop after this many refreshes [default: until Ctrl-C]")
      ->check(CLI::Range(0, 1 << 30));
  AddNodeFlags(cmd, flags.node,
               "  hivemesh top\n"
               "  hivemesh top --interval-ms 500\n"
               "  hivemesh top --count 10 -o json > load.jsonl\n"
               "Columns: QUEUED and RUNNING are live; REQ/S counts requests the node computed;\n"
               "LOCAL and FWD count requests that arrived at the node and were served there or\n"
               "forwarded to a peer, since it started. A node that cannot be read is listed\n"
               "with '!' and the reason.");
  return cmd;
}

int RunTop(const TopFlags& flags) {
  struct sigaction sa {};
  sa.sa_handler = OnInterrupt;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  const bool json = flags.node.output == "json";
  const bool terminal = !json && isatty(STDOUT_FILENO) == 1;
  HttpClient seed(flags.node.node, flags.node.timeout_ms);
  // A member's counters must not hold a refresh up for long.
  Clients clients(std::min(flags.node.timeout_ms, std::max(flags.interval_ms, 250)));
  const auto interval = std::chrono::milliseconds(flags.interval_ms);

  std::map<std::string, NodeSample> before;
  auto remember = [&before](const std::vector<NodeSample>& samples) {
    for (const NodeSample& s : samples) {
      if (s.counters) before[s.member.name] = s;
    }
  };
  absl::StatusOr<std::vector<NodeSample>> first = Sample(seed, clients);
  if (!first.ok()) return Fail("top", first.status());
  remember(*first);
  auto next = std::chrono::steady_clock::now() + interval;
  for (int refresh = 0; flags.count == 0 || refresh < flags.count; ++refresh) {
    if (!WaitUntil(next)) break;
    next += interval;
    absl::StatusOr<std::vector<NodeSample>> now = Sample(seed, clients);
    if (!now.ok()) return Fail("top", now.status());
    const std::vector<TopRow> rows = TopRows(*now, before);
    remember(*now);
    if (json) {
      const int64_t unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                  std::chrono::system_clock::now().time_since_epoch())
                                  .count();
      std::printf("%s\n", TopJson(rows, unix_ms).c_str());
    } else {
      const std::string title =
          StrCat("hivemesh top: ", rows.size(), " node", rows.size() == 1 ? "" : "s", " via ",
                 flags.node.node, " at ", Clock(), ", every ", flags.interval_ms, " ms",
                 terminal ? " (Ctrl-C to quit)" : "");
      // On a terminal: cursor home, clear the screen, redraw.
      std::printf("%s%s\n\n%s%s", terminal ? "\x1b[H\x1b[2J" : "", title.c_str(),
                  FormatTopTable(rows).c_str(), terminal ? "" : "\n");
    }
    std::fflush(stdout);
  }
  return kExitOk;
}

}  // namespace hivemesh::cli
