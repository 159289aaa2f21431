// gossip_sim: SWIM + Lifeguard at scale, in virtual time. For N = 10, 100, 1000, 10000 nodes
// (up to --max-n) on the LAN profile it runs the real Swim state machine over SimCluster and
// measures, each scenario running --seconds virtual seconds:
//   rest   messages and bytes per node per second with nothing happening
//   join   time for a new node's join to reach 50%, 99% and 100% of the nodes
//   meta   time for a metadata change to reach 50/99/100%
//   crash  time from a crash until 50/99/100% of the live nodes mark it dead (kFailed)
// and, over all scenarios, false "dead" verdicts about live nodes. It prints a table, the wall
// time and memory of each N, then `RESULT key=value ...`.
//
// Every node keeps the whole member table, so memory grows with N^2 member entries (about 28 B
// each with Swim's compact slots: 2.8 GB at N = 10,000, measured on the LAN profile). Before each
// N the cost per entry measured at the previous N predicts the need; an N that would not fit in
// MemAvailable is skipped with the estimate (--force runs it anyway).
//
// Usage: gossip_sim [--max-n N] [--seconds S] [--seed X] [--loss P] [--force]
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "base/strings.h"
#include "membership/config.h"
#include "membership/sim_network.h"
#include "membership/swim.h"

namespace hivemesh::membership {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::seconds;

double Seconds(Nanos d) { return std::chrono::duration<double>(d).count(); }

double RssMb() {
  std::ifstream f("/proc/self/statm");
  long pages = 0, rss = 0;
  f >> pages >> rss;
  return static_cast<double>(rss) * 4096.0 / (1024.0 * 1024.0);
}

// MemAvailable from /proc/meminfo, in MB.
double AvailableMb() {
  std::ifstream f("/proc/meminfo");
  std::string key, unit;
  double kb = 0;
  while (f >> key >> kb >> unit) {
    if (key == "MemAvailable:") return kb / 1024.0;
  }
  return 0;
}

double PeakRssMb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;
}

// First time each observer reported `type` about `subject` after `start`.
struct Spread {
  int subject = -1;
  EventType type = EventType::kJoined;
  SteadyTime start;
  std::vector<bool> seen;
  std::vector<double> times;  // seconds after start, in arrival order

  void Reset(int subj, EventType t, SteadyTime now, int nodes) {
    subject = subj;
    type = t;
    start = now;
    seen.assign(nodes, false);
    times.clear();
  }
  void On(const SimEvent& e) {
    if (e.subject != subject || e.type != type || e.observer >= static_cast<int>(seen.size()) ||
        seen[e.observer]) {
      return;
    }
    seen[e.observer] = true;
    times.push_back(Seconds(e.at - start));
  }
  // Seconds until `fraction` of `population` observers had reported; -1 if never.
  double At(double fraction, int population) const {
    const size_t need = static_cast<size_t>(std::ceil(fraction * population - 1e-9));
    if (need == 0) return 0;
    return times.size() >= need ? times[need - 1] : -1;
  }
};

struct Row {
  int n = 0;
  double join[3] = {-1, -1, -1};
  double meta[3] = {-1, -1, -1};
  double crash[3] = {-1, -1, -1};
  uint64_t false_dead = 0;
  uint64_t false_suspect = 0;
  double msgs_per_node_s = 0;
  double bytes_per_node_s = 0;
  double warmup_s = 0;
  double bootstrap_wall_s = 0;
  double wall_s = 0;
  double rss_mb = 0;
  uint64_t events = 0;
};

constexpr double kFractions[3] = {0.5, 0.99, 1.0};

Row RunOne(int n, double secs, uint64_t seed, double loss) {
  Row row;
  row.n = n;
  const auto wall0 = Clock::now();
  SimOptions opt;
  opt.swim = SwimConfig::Lan();
  // The member table holds max_members (4096 by default, which bounds what forged joins can
  // cost a real node); a simulated mesh of N nodes needs room for all of them and the joiner.
  opt.swim.max_members = std::max(opt.swim.max_members, n + 16);
  opt.seed = seed;
  opt.loss = loss;
  opt.record_events = false;  // the listener below keeps only what is measured
  SimCluster c(opt);
  // Nodes start with empty metadata: Swim keeps non-empty metadata out of line, one string per
  // (node, member) entry, which at N = 10,000 would cost more than the member table itself.
  // Bootstrap starts the cluster converged and at rest (Swim::Bootstrap queues no broadcast).
  c.Bootstrap(n);
  row.bootstrap_wall_s = std::chrono::duration<double>(Clock::now() - wall0).count();

  Spread spread;
  c.set_event_listener([&](const SimEvent& e) {
    if (e.subject >= 0 && c.up(e.subject)) {
      if (e.type == EventType::kFailed) row.false_dead++;
      if (e.type == EventType::kSuspect) row.false_suspect++;
    }
    spread.On(e);
  });
  const Nanos run = std::chrono::duration_cast<Nanos>(std::chrono::duration<double>(secs));

  // Let whatever the bootstrap queued drain (at most 30 s), so "rest" is at rest.
  const SteadyTime w0 = c.now();
  c.RunUntilTrue(
      [&] {
        for (int i = 0; i < c.size(); ++i) {
          if (c.node(i).QueuedBroadcasts() > 0) return false;
        }
        return true;
      },
      seconds(30), seconds(1));
  row.warmup_s = Seconds(c.now() - w0);

  // rest
  c.ResetCounters();
  c.RunFor(run);
  const SimCounters t = c.TotalCounters();
  row.msgs_per_node_s = static_cast<double>(t.packets()) / n / secs;
  row.bytes_per_node_s = static_cast<double>(t.bytes()) / n / secs;

  // join: a new node joins through node 0; the existing n nodes report kJoined.
  const int joiner = c.AddNode();
  spread.Reset(joiner, EventType::kJoined, c.now(), c.size());
  c.Join(joiner, {0});
  c.RunFor(run);
  for (int k = 0; k < 3; ++k) row.join[k] = spread.At(kFractions[k], n);

  // meta: node 1 changes its metadata; the other n nodes report kUpdated.
  spread.Reset(1, EventType::kUpdated, c.now(), c.size());
  c.UpdateMeta(1, "meta-v2");
  c.RunFor(run);
  for (int k = 0; k < 3; ++k) row.meta[k] = spread.At(kFractions[k], n);

  // crash: node 2 stops; the other n live nodes (n - 1 + the joiner) report kFailed.
  spread.Reset(2, EventType::kFailed, c.now(), c.size());
  c.Crash(2);
  c.RunFor(run);
  for (int k = 0; k < 3; ++k) row.crash[k] = spread.At(kFractions[k], n);

  row.events = c.network_stats().events;
  row.rss_mb = RssMb();
  row.wall_s = std::chrono::duration<double>(Clock::now() - wall0).count();
  return row;
}

std::string Fmt(double v) {
  if (v < 0) return "  >run";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%6.2f", v);
  return buf;
}

}  // namespace
}  // namespace hivemesh::membership

int main(int argc, char** argv) {
  using namespace hivemesh::membership;
  int max_n = 10000;
  double secs = 60;
  uint64_t seed = 1;
  double loss = 0;
  bool force = false;
  for (int i = 1; i < argc; ++i) {
    const char* a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
    if (std::strcmp(a, "--max-n") == 0 && v) {
      max_n = std::atoi(v), ++i;
    } else if (std::strcmp(a, "--seconds") == 0 && v) {
      secs = std::atof(v), ++i;
    } else if (std::strcmp(a, "--seed") == 0 && v) {
      seed = std::strtoull(v, nullptr, 10), ++i;
    } else if (std::strcmp(a, "--loss") == 0 && v) {
      loss = std::atof(v), ++i;
    } else if (std::strcmp(a, "--force") == 0) {
      force = true;
    } else {
      std::fprintf(stderr, "usage: %s [--max-n N] [--seconds S] [--seed X] [--loss P] [--force]\n",
                   argv[0]);
      return 2;
    }
  }

  std::printf("gossip_sim: LAN profile, %.0f virtual s per scenario, seed %llu, UDP loss %.3f\n",
              secs, static_cast<unsigned long long>(seed), loss);
  std::printf(
      "times in virtual seconds to reach 50%% / 99%% / 100%% of nodes; '>run' = not "
      "reached within the scenario\n\n");
  std::printf("%6s | %-20s | %-20s | %-20s | %5s %6s | %7s %9s | %7s %7s %8s\n", "N",
              "join 50/99/100", "meta 50/99/100", "crash->dead 50/99/100", "fdead", "fsusp",
              "msg/n/s", "B/n/s", "boot s", "wall s", "RSS MB");
  std::vector<Row> rows;
  std::string skipped;
  for (int n : {10, 100, 1000, 10000}) {
    if (n > max_n) break;
    if (!rows.empty() && rows.back().n >= 100 && !force) {
      const Row& prev = rows.back();
      const double per_entry = prev.rss_mb * 1024 * 1024 / (double(prev.n) * prev.n);
      const double need_mb = per_entry * double(n) * n / (1024 * 1024);
      const double avail_mb = AvailableMb();
      if (need_mb > 0.9 * avail_mb) {
        std::printf(
            "%6d | skipped: needs ~%.0f GB (%.0f B per member entry at N=%d x %d^2 "
            "entries); %.0f GB available. --force to try.\n",
            n, need_mb / 1024, per_entry, prev.n, n, avail_mb / 1024);
        hivemesh::StrAppend(&skipped, " n", n, "_skipped=1 n", n,
                            "_est_mb=", static_cast<int64_t>(need_mb));
        break;
      }
    }
    Row r = RunOne(n, secs, seed, loss);
    std::printf(
        "%6d | %s %s %s | %s %s %s | %s %s %s | %5llu %6llu | %7.2f %9.1f | %7.1f %7.1f "
        "%8.0f\n",
        r.n, Fmt(r.join[0]).c_str(), Fmt(r.join[1]).c_str(), Fmt(r.join[2]).c_str(),
        Fmt(r.meta[0]).c_str(), Fmt(r.meta[1]).c_str(), Fmt(r.meta[2]).c_str(),
        Fmt(r.crash[0]).c_str(), Fmt(r.crash[1]).c_str(), Fmt(r.crash[2]).c_str(),
        static_cast<unsigned long long>(r.false_dead),
        static_cast<unsigned long long>(r.false_suspect), r.msgs_per_node_s, r.bytes_per_node_s,
        r.bootstrap_wall_s, r.wall_s, r.rss_mb);
    std::fflush(stdout);
    rows.push_back(r);
  }
  const double peak = PeakRssMb();
  std::printf("\npeak RSS %.0f MB; warm-up before 'rest' (bootstrap broadcasts draining):", peak);
  for (const Row& r : rows) std::printf(" N=%d %.0fs", r.n, r.warmup_s);
  std::printf("\n");

  std::string result = "RESULT";
  for (const Row& r : rows) {
    const std::string p = hivemesh::StrCat(" n", r.n, "_");
    const char* pct[3] = {"50", "99", "100"};
    for (int k = 0; k < 3; ++k) hivemesh::StrAppend(&result, p, "join", pct[k], "_s=", r.join[k]);
    for (int k = 0; k < 3; ++k) hivemesh::StrAppend(&result, p, "meta", pct[k], "_s=", r.meta[k]);
    for (int k = 0; k < 3; ++k) {
      hivemesh::StrAppend(&result, p, "crash_dead", pct[k], "_s=", r.crash[k]);
    }
    hivemesh::StrAppend(&result, p, "false_dead=", r.false_dead, p,
                        "false_suspect=", r.false_suspect, p, "msgs_per_node_s=", r.msgs_per_node_s,
                        p, "bytes_per_node_s=", r.bytes_per_node_s, p, "wall_s=", r.wall_s, p,
                        "rss_mb=", r.rss_mb);
  }
  hivemesh::StrAppend(&result, skipped, " peak_rss_mb=", peak);
  std::printf("%s\n", result.c_str());
  return 0;
}
