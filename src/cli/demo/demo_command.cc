#include "cli/demo/demo_command.h"

#include <signal.h>
#include <simdjson.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <set>
#include <thread>

#include "base/strings.h"
#include "cli/cli_common.h"
#include "cli/demo/demo_report.h"
#include "cli/demo/insight_sinks.h"
#include "cli/demo/node_fleet.h"
#include "cli/demo/scenario.h"
#include "cli/demo/traffic.h"
#include "cli/http_client.h"
#include "cli/table.h"

namespace hivemesh::demo {
namespace {

using cli::FormatTable;
using Clock = std::chrono::steady_clock;

std::atomic<bool> g_interrupted{false};

void OnSignal(int) { g_interrupted = true; }

std::string Fixed(double v, int digits) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

std::string Percent(size_t part, size_t whole) {
  return StrCat(Fixed(100.0 * static_cast<double>(part) / static_cast<double>(whole), 0), "%");
}

std::string Join(const std::vector<std::string>& v, std::string_view sep) {
  std::string out;
  for (const std::string& s : v) StrAppend(&out, out.empty() ? "" : sep, s);
  return out;
}

int Usage(const std::string& message) {
  std::fprintf(stderr, "hivemesh demo: %s\n", message.c_str());
  return cli::kExitUsage;
}

// Inferences of `models` a node has served, from its statistics (0 when unreachable).
uint64_t ServedCount(const std::string& address, const std::set<std::string>& models) {
  HttpClient client(address, 2000);
  absl::StatusOr<HttpResult> r = client.Request("GET", "/v2/models/stats");
  if (!r.ok() || r->status != 200) return 0;
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  simdjson::dom::array stats;
  if (parser.parse(r->body).get(doc) != simdjson::SUCCESS ||
      doc["model_stats"].get(stats) != simdjson::SUCCESS) {
    return 0;
  }
  uint64_t n = 0;
  for (simdjson::dom::element m : stats) {
    std::string_view name;
    uint64_t count = 0;
    if (m["name"].get(name) == simdjson::SUCCESS && models.contains(std::string(name)) &&
        m["inference_count"].get(count) == simdjson::SUCCESS) {
      n += count;
    }
  }
  return n;
}

// Live status: rewritten in place on a terminal, a line every 10 s otherwise.
class StatusLine {
 public:
  StatusLine() : tty_(isatty(STDOUT_FILENO) != 0) {}
  void Update(const std::string& line, bool force = false) {
    if (tty_) {
      std::printf("\r%s\033[K", line.c_str());
      std::fflush(stdout);
      dirty_ = true;
    } else if (force || Clock::now() - last_ >= std::chrono::seconds(10)) {
      std::printf("%s\n", line.c_str());
      std::fflush(stdout);
      last_ = Clock::now();
    }
  }
  // Prints an event on its own line, above the status line.
  void Event(const std::string& text) {
    if (tty_ && dirty_) std::printf("\r\033[K");
    std::printf("%s\n", text.c_str());
    std::fflush(stdout);
    dirty_ = false;
  }
  void Finish() {
    if (tty_ && dirty_) std::printf("\n");
    dirty_ = false;
  }

 private:
  const bool tty_;
  bool dirty_ = false;
  Clock::time_point last_ = Clock::now();
};

struct Chaos {
  std::string node;
  double kill_s = -1, restart_s = -1, back_s = -1;  // -1: did not happen
};

void PrintPlan(const Scenario& s, NodeFleet& fleet, double duration) {
  std::printf("hivemesh demo: %zu nodes, %zu cameras, %zu vibration sensors, %.0f s\n\n",
              s.nodes.size(), s.cameras.size(), s.sensors.size(), duration);
  std::vector<std::vector<std::string>> rows = {{"NODE", "ZONE", "MODELS", "API"}};
  for (const NodeSpec& n : s.nodes) {
    rows.push_back({n.name, n.zone().empty() ? "-" : n.zone(),
                    n.models.empty() ? "(all)" : Join(n.models, ","), fleet.ApiAddress(n.name)});
  }
  std::printf("%s\n", FormatTable(rows).c_str());
  rows = {{"CLIENT", "KIND", "NODE", "RATE", "FALLBACK"}};
  for (const CameraSpec& c : s.cameras) {
    std::string rate = StrCat(Fixed(c.fps, 0), " fps");
    if (c.burst_fps > 0) {
      StrAppend(&rate, ", ", Fixed(c.burst_fps, 0), " fps for ", Fixed(c.burst_for_s, 0),
                " s every ", Fixed(c.burst_every_s, 0), " s");
    }
    if (c.face_every > 0) StrAppend(&rate, "; faces every ", c.face_every, " frames");
    rows.push_back(
        {c.name, "camera", c.node, rate, c.fallback.empty() ? "-" : Join(c.fallback, ",")});
  }
  for (const SensorSpec& x : s.sensors) {
    rows.push_back(
        {x.name, "vibration", x.node,
         StrCat(Fixed(x.rate_hz, 0), " windows/s, ", Fixed(x.fault_ratio * 100, 0), "% faulty"),
         x.fallback.empty() ? "-" : Join(x.fallback, ",")});
  }
  std::printf("%s\n", FormatTable(rows).c_str());
}

void PrintNodeTable(const std::vector<Outcome>& outcomes) {
  std::printf("\nRequests by node and model (end to end, as the clients saw them)\n");
  std::vector<std::vector<std::string>> rows = {{"NODE", "MODEL", "REQUESTS", "LOCAL",
                                                 "OFFLOADED OUT", "OFFLOADED IN", "ERRORS",
                                                 "P50 MS", "P99 MS"}};
  for (const NodeModelRow& r : NodeModelTable(outcomes)) {
    rows.push_back({r.node, r.model, Thousands(r.requests), Thousands(r.local),
                    Thousands(r.offloaded_out), Thousands(r.offloaded_in), Thousands(r.errors),
                    r.requests ? Fixed(r.p50_ms, 1) : "-", r.requests ? Fixed(r.p99_ms, 1) : "-"});
  }
  std::printf("%s", FormatTable(rows, {2, 3, 4, 5, 6, 7, 8}).c_str());
}

void PrintChaos(const Chaos& chaos, const std::vector<Outcome>& outcomes) {
  if (chaos.kill_s < 0) return;
  std::printf("\nFailover\n");
  const double end_down = chaos.back_s >= 0 ? chaos.back_s : 1e18;
  size_t during = 0, failed_during = 0, failover = 0, after = 0, after_in = 0;
  for (const Outcome& o : outcomes) {
    if (o.t_s >= chaos.kill_s && o.t_s < end_down) {
      ++during;
      failed_during += !o.ok();
      failover += o.sent_to != o.node;
    }
    if (chaos.back_s >= 0 && o.t_s >= chaos.back_s && o.ok() && o.served_by == chaos.node) {
      ++after;
      after_in += o.sent_to != chaos.node;
    }
  }
  std::printf("  %s was killed (SIGKILL) at %.1f s", chaos.node.c_str(), chaos.kill_s);
  if (chaos.restart_s >= 0) std::printf(", started again at %.1f s", chaos.restart_s);
  if (chaos.back_s >= 0) std::printf(", serving again at %.1f s", chaos.back_s);
  std::printf(
      ".\n  While it was down: %s requests, %s failed; %s sent by its clients to a "
      "fallback node.\n",
      Thousands(during).c_str(), Thousands(failed_during).c_str(), Thousands(failover).c_str());
  if (chaos.back_s >= 0) {
    std::printf(
        "  After it came back it served %s requests (%s of them offloaded to it by "
        "other nodes).\n",
        Thousands(after).c_str(), Thousands(after_in).c_str());
  }
}

// The node whose subscriber follows the bus: the last node that is not killed midway.
std::string SubscriberNode(const Scenario& s) {
  for (auto it = s.nodes.rbegin(); it != s.nodes.rend(); ++it) {
    if (it->name != s.kill) return it->name;
  }
  return s.nodes.front().name;
}

// A sample of `name` without labels in Prometheus text, or -1.
double MetricValue(std::string_view text, std::string_view name) {
  for (size_t at = text.find(name); at != std::string_view::npos; at = text.find(name, at + 1)) {
    if ((at == 0 || text[at - 1] == '\n') && at + name.size() < text.size() &&
        text[at + name.size()] == ' ') {
      return std::atof(std::string(text.substr(at + name.size() + 1, 32)).c_str());
    }
  }
  return -1;
}

// Waits until no running node holds an insight for another node or for the broker (at most
// `timeout`): what was published reaches the sinks before they stop. False on timeout.
bool WaitForInsights(NodeFleet& fleet, const std::map<std::string, std::string>& address,
                     std::chrono::seconds timeout) {
  const Clock::time_point deadline = Clock::now() + timeout;
  for (;;) {
    double held = 0;
    for (const auto& [name, addr] : address) {
      if (!fleet.Running(name)) continue;
      HttpClient client(addr, 2000);
      absl::StatusOr<HttpResult> r = client.Request("GET", "/metrics");
      if (!r.ok() || r->status != 200) continue;
      held += std::max(0.0, MetricValue(r->body, "hivemesh_insights_queued"));
      held += std::max(0.0, MetricValue(r->body, "hivemesh_insights_mqtt_waiting"));
    }
    if (held == 0) return true;
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

void PrintSinks(const std::vector<std::pair<std::string, SinkSummary>>& sinks) {
  std::printf(
      "\nInsights received (the models' insight rules published them; the tables below are "
      "built from what arrived)\n");
  std::vector<std::vector<std::string>> rows = {{"  RECEIVED BY", "INSIGHTS", "DUPLICATES",
                                                 "PEOPLE", "FACES", "ALERTS", "WINDOWS", "HEDGED",
                                                 "FROM NODES", "MISSING"}};
  for (const auto& [who, s] : sinks) {
    std::string missing = Thousands(s.missing_total());
    if (s.missing_total() > 0) {
      std::vector<std::string> by;
      for (const auto& [node, n] : s.missing)
        by.push_back(StrCat(node.empty() ? "?" : node, " ", n));
      StrAppend(&missing, " (served by ", Join(by, ", "), ")");
    }
    rows.push_back({"  " + who, Thousands(s.documents), Thousands(s.duplicates),
                    Thousands(s.people), Thousands(s.faces), Thousands(s.alerts),
                    Thousands(s.windows), Thousands(s.twice),
                    Join(std::vector<std::string>(s.from.begin(), s.from.end()), ","), missing});
  }
  std::printf("%s", FormatTable(rows, {1, 2, 3, 4, 5, 6, 7}).c_str());
  std::printf(
      "  DUPLICATES: the same insight again (MQTT QoS 1 allows it; drop by id). HEDGED: a second "
      "insight of one request\n  (a hedged request computed by two nodes publishes from both; "
      "count by trace id). MISSING: answered requests\n  whose insight did not arrive (a "
      "frame's count, or the alert of a window the model flagged).\n");
}

void PrintInsights(const std::vector<Outcome>& outcomes, double duration,
                   const std::string& source) {
  std::printf("\nInsights from %s (only these numbers need to leave a site)\n", source.c_str());
  const double bucket = duration > 60 ? 10 : 5;
  auto people = PeopleOverTime(outcomes, "people-detector", bucket, duration);
  if (!people.empty()) {
    std::printf("  People per frame, mean (max) every %.0f s:\n", bucket);
    std::vector<std::vector<std::string>> rows;
    std::vector<std::string> head = {"  CAMERA"};
    for (const PeopleBucket& b : people.begin()->second) {
      head.push_back(StrCat(Fixed(b.start_s, 0), "s"));
    }
    rows.push_back(head);
    for (const auto& [camera, buckets] : people) {
      std::vector<std::string> row = {"  " + camera};
      for (const PeopleBucket& b : buckets) {
        row.push_back(b.frames ? StrCat(Fixed(b.mean, 1), " (", b.max, ")") : "-");
      }
      rows.push_back(row);
    }
    std::printf("%s", FormatTable(rows).c_str());
  }
  std::map<std::string, std::pair<size_t, size_t>> faces;  // camera -> frames, faces
  for (const Outcome& o : outcomes) {
    if (o.model != "face-detector" || !o.ok() || o.count < 0) continue;
    ++faces[o.client].first;
    faces[o.client].second += static_cast<size_t>(o.count);
  }
  for (const auto& [camera, f] : faces) {
    std::printf("  Faces: %s found %s in %s frames checked.\n", camera.c_str(),
                Thousands(f.second).c_str(), Thousands(f.first).c_str());
  }
  const auto anomalies = Anomalies(outcomes);
  if (!anomalies.empty()) {
    std::printf("  Vibration anomalies (fault probability > 0.5), against the injected faults:\n");
    std::vector<std::vector<std::string>> rows = {
        {"  SENSOR", "WINDOWS", "INJECTED", "FLAGGED", "CAUGHT", "FALSE ALARMS"}};
    for (const auto& [sensor, a] : anomalies) {
      rows.push_back({"  " + sensor, Thousands(a.windows), Thousands(a.injected),
                      Thousands(a.flagged),
                      StrCat(Thousands(a.caught),
                             a.injected ? StrCat(" (", Percent(a.caught, a.injected), ")") : ""),
                      Thousands(a.false_alarms)});
    }
    std::printf("%s", FormatTable(rows, {1, 2, 3, 4, 5}).c_str());
  }
}

}  // namespace

CLI::App* AddDemoCommand(CLI::App& app, DemoFlags& flags) {
  CLI::App* cmd = app.add_subcommand(
      "demo",
      "run a real edge site on this machine: nodes as separate processes, cameras and vibration "
      "sensors driving traffic, one node killed and restarted midway, then a report");
  cmd->add_option("--scenario", flags.scenario,
                  "the scenario file [default: examples/edge-site/scenario.yaml]");
  cmd->add_option("--duration", flags.duration_s,
                  "seconds of traffic [default: the scenario's, 90]")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--nodes", flags.nodes,
                  "number of nodes: fewer keeps the scenario's first ones, more adds copies of "
                  "its nodes in turn (with their cameras and sensors) [default: the scenario's]")
      ->check(CLI::Range(1, 32));
  cmd->add_flag("--keep-running", flags.keep_running,
                "after the report, keep the nodes running until Ctrl-C (try `hivemesh top`)");
  cmd->add_option("--frames", flags.frames,
                  "folder of JPEG frames (frame-*.jpg) for the cameras; scripts/fetch-frames.sh "
                  "makes them from the sample video [default: .cache/samples/vtest-frames]");
  cmd->add_option("--work-dir", flags.work_dir,
                  "folder for the nodes' logs [default: a new folder under /tmp]");
  cmd->footer(
      "Exit codes:\n"
      "  0  a clean run: nothing failed, no frame left its zone, every node stopped cleanly\n"
      "  1  the run finished, but one of those did not hold (the report says which)\n"
      "  2  usage error: bad flag, missing scenario or frames\n"
      "  3  the nodes could not be started\n"
      "  130  interrupted (Ctrl-C): the report covers the run so far; every node is stopped");
  return cmd;
}

int RunDemo(const DemoFlags& flags) {
  absl::StatusOr<Scenario> loaded = LoadScenario(flags.scenario);
  if (!loaded.ok()) {
    return Usage(StrCat(MessageOf(loaded.status()),
                        loaded.status().code() == absl::StatusCode::kNotFound
                            ? " (run from the source tree, or pass --scenario FILE)"
                            : ""));
  }
  if (flags.nodes > 0) {
    loaded = ScaleScenario(*loaded, flags.nodes);
    if (!loaded.ok()) return Usage(std::string(MessageOf(loaded.status())));
  }
  const Scenario scenario = *std::move(loaded);
  const double duration = flags.duration_s > 0 ? flags.duration_s : scenario.duration_s;

  std::vector<std::string> frames;
  if (!scenario.cameras.empty()) {
    absl::StatusOr<std::vector<std::string>> f = LoadFrames(flags.frames);
    if (!f.ok()) {
      return Usage(StrCat("camera frames: ", MessageOf(f.status()),
                          " (make them with: scripts/fetch-frames.sh build/release; make demo "
                          "does)"));
    }
    frames = *std::move(f);
  }

  std::error_code ec;
  std::string work = flags.work_dir;
  if (work.empty()) {
    char tmpl[] = "/tmp/hivemesh-demo-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) return Usage("cannot create a folder under /tmp");
    work = tmpl;
  } else {
    std::filesystem::create_directories(work, ec);
    if (ec) return Usage(StrCat("--work-dir ", work, ": ", ec.message()));
  }
  const std::string binary = std::filesystem::read_symlink("/proc/self/exe", ec).string();
  if (ec) return Usage(StrCat("cannot find the hivemesh binary: ", ec.message()));

  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  NodeFleet fleet(binary, work, scenario);
  // Insights leave the site through a broker the demo runs, and a node of the site follows them
  // on the bus.
  InsightSinks sinks(binary, work);
  absl::StatusOr<std::string> broker = sinks.StartBroker("site/#");
  if (broker.ok()) fleet.AddArgs({"--mqtt-url", *broker});
  const Clock::time_point t0 = Clock::now();
  absl::Status started = fleet.StartAll(std::chrono::seconds(60));
  std::map<std::string, std::string> address, zones;
  for (const NodeSpec& n : scenario.nodes) {
    address[n.name] = fleet.ApiAddress(n.name);
    zones[n.name] = n.zone();
  }
  const std::string follower = SubscriberNode(scenario);
  if (started.ok()) {
    started = sinks.StartSubscriber(address[follower], "site/#", address, std::chrono::seconds(30));
  }
  if (!started.ok()) {
    std::fprintf(stderr, "hivemesh demo: %s\n", std::string(MessageOf(started)).c_str());
    fleet.StopAll(std::chrono::seconds(10));
    return cli::kExitUnreachable;
  }
  PrintPlan(scenario, fleet, duration);
  std::printf("Nodes started and joined in %.1f s; their logs are in %s\n",
              std::chrono::duration<double>(Clock::now() - t0).count(), fleet.log_dir().c_str());
  std::printf("Security: %s\n", fleet.SecuritySummary().c_str());
  std::printf("Insights: `hivemesh sub 'site/#'` on %s follows the bus; %s\n\n", follower.c_str(),
              broker.ok() ? StrCat("every node forwards them to the MQTT broker ", *broker,
                                   " (mosquitto), read by mosquitto_sub")
                                .c_str()
                          : StrCat("no MQTT broker: ", MessageOf(broker.status())).c_str());
  Recorder recorder;
  Traffic traffic(scenario, address, frames, recorder);
  StatusLine status;
  Chaos chaos;
  chaos.node = scenario.kill;
  traffic.Start();
  Clock::time_point next_status = Clock::now();
  while (!g_interrupted) {
    const double t = traffic.ElapsedSeconds();
    if (t >= duration) break;
    if (!chaos.node.empty()) {
      if (chaos.kill_s < 0 && t >= scenario.kill_at * duration) {
        fleet.Kill(chaos.node);
        chaos.kill_s = t;
        status.Event(StrCat("!! ", Fixed(t, 1), " s: killed ", chaos.node,
                            " with SIGKILL (its clients fall back; the mesh routes around it)"));
      } else if (chaos.kill_s >= 0 && chaos.restart_s < 0 && t >= scenario.restart_at * duration) {
        absl::Status s = fleet.Start(chaos.node);
        chaos.restart_s = t;
        status.Event(s.ok() ? StrCat("!! ", Fixed(t, 1), " s: started ", chaos.node, " again")
                            : StrCat("!! could not restart ", chaos.node, ": ", MessageOf(s)));
      } else if (chaos.restart_s >= 0 && chaos.back_s < 0 && fleet.Ready(chaos.node)) {
        chaos.back_s = traffic.ElapsedSeconds();
        status.Event(StrCat("!! ", Fixed(chaos.back_s, 1), " s: ", chaos.node,
                            " is back: ready, and every node sees it alive"));
      }
    }
    if (Clock::now() >= next_status) {
      std::string note;
      if (chaos.kill_s >= 0 && chaos.back_s < 0) note = StrCat("(", chaos.node, " down)");
      status.Update(LiveLine(recorder.Snapshot(), t, duration, note));
      next_status += std::chrono::milliseconds(500);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  const bool interrupted = g_interrupted;
  traffic.Stop();
  const std::vector<Outcome> outcomes = recorder.Snapshot();
  const double ran = std::min(duration, traffic.ElapsedSeconds());
  status.Update(LiveLine(outcomes, ran, duration, interrupted ? "(interrupted)" : ""), true);
  status.Finish();
  // What was published reaches the subscriber and the broker, then they stop (an interrupted
  // run waits a little only).
  const bool insights_out =
      WaitForInsights(fleet, address, std::chrono::seconds(interrupted ? 3 : 30));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  sinks.StopAll();
  const std::vector<ReceivedInsight> followed = ReadInsights(sinks.subscriber_file());
  std::vector<std::pair<std::string, SinkSummary>> received = {
      {StrCat("hivemesh sub on ", follower, " (bus)"), Summarize(outcomes, followed)}};
  if (broker.ok()) {
    received.emplace_back("mosquitto_sub (MQTT broker)",
                          Summarize(outcomes, ReadInsights(sinks.broker_file())));
  }

  PrintNodeTable(outcomes);
  PrintChaos(chaos, outcomes);
  PrintSinks(received);
  PrintInsights(ResultsFromInsights(outcomes, followed), ran,
                StrCat("the subscriber on ", follower));

  // Data policy, seen from both sides: which node answered each frame, and how many frames the
  // nodes outside every camera's zone computed.
  std::set<std::string> camera_zones;
  for (const CameraSpec& c : scenario.cameras) camera_zones.insert(zones[c.node]);
  const size_t leaked = FramesOutsideZone(outcomes, zones);
  uint64_t computed_outside = 0;
  std::vector<std::string> outside;
  for (const NodeSpec& n : scenario.nodes) {
    if (camera_zones.contains(n.zone())) continue;
    outside.push_back(n.name);
    computed_outside += ServedCount(address[n.name], {"people-detector", "face-detector"});
  }
  std::printf("\nData policy (people-detector and face-detector: dataPolicy zone)\n");
  std::printf("  Frames answered by a node outside their camera's zone: %s\n",
              Thousands(leaked).c_str());
  if (!outside.empty()) {
    std::printf(
        "  Frames computed by the nodes outside the cameras' zones (%s), from their own "
        "statistics: %s\n",
        Join(outside, ", ").c_str(), Thousands(computed_outside).c_str());
  }
  size_t skipped = 0;
  for (const auto& [_, n] : traffic.Skipped()) skipped += n;
  if (skipped > 0) {
    std::printf("\n%s frames or windows were not sent: their client had every sender busy.\n",
                Thousands(skipped).c_str());
  }

  if (flags.keep_running && !interrupted) {
    std::printf(
        "\nThe nodes keep running; press Ctrl-C to stop them. Try:\n"
        "  build/release/hivemesh top --node %s\n  build/release/hivemesh models --node "
        "%s\n",
        address.begin()->second.c_str(), address.begin()->second.c_str());
    std::fflush(stdout);
    while (!g_interrupted) std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  const std::vector<std::string> stop_problems = fleet.StopAll(std::chrono::seconds(20));
  const Totals totals = Summarize(outcomes);
  std::vector<std::string> problems;
  if (totals.failed > 0) problems.push_back(StrCat(Thousands(totals.failed), " requests failed"));
  if (leaked + computed_outside > 0) problems.push_back("frames left their zone");
  for (const std::string& p : stop_problems) problems.push_back(p);
  if (totals.requests == 0) problems.push_back("no request was answered");
  if (!insights_out) problems.push_back("nodes still held insights 30 s after the traffic");
  if (broker.ok() && received.back().second.missing_total() > 0) {
    // The outbox keeps every insight of an answered request until the broker has it, across a
    // SIGKILL: none may be missing.
    problems.push_back(StrCat(Thousands(received.back().second.missing_total()),
                              " insights of answered requests never reached the MQTT broker"));
  }
  if (interrupted) {
    std::printf(
        "\nResult: interrupted at %.0f s; every node stopped%s.\n", ran,
        stop_problems.empty() ? " cleanly" : StrCat(" (", Join(stop_problems, "; "), ")").c_str());
    return 130;
  }
  if (problems.empty()) {
    std::printf(
        "\nResult: clean run. %s requests, none failed, no frame left its zone, every "
        "node stopped cleanly.\n",
        Thousands(totals.requests).c_str());
    return cli::kExitOk;
  }
  std::printf("\nResult: %s.\n", Join(problems, "; ").c_str());
  if (totals.failed > 0) {
    std::map<std::string, size_t> reasons;
    for (const Outcome& o : outcomes) {
      if (!o.ok()) ++reasons[StrCat(o.model, " via ", o.sent_to, ": ", o.error.substr(0, 160))];
    }
    std::printf("Failures by reason:\n");
    for (const auto& [reason, n] : reasons) std::printf("  %6zu  %s\n", n, reason.c_str());
  }
  return cli::kExitNodeError;
}

}  // namespace hivemesh::demo
