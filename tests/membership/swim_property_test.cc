// Property tests of the SWIM + Lifeguard state machine: real Swim nodes over SimCluster's
// simulated network, in virtual time. Each test states a property a memberlist user relies on
// (no false deaths under loss, partitions heal, crashes are detected within the Lifeguard bound,
// leaves are not failures, metadata spreads, runs are reproducible).
#include <algorithm>
#include <chrono>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "membership/config.h"
#include "membership/sim_network.h"
#include "membership/swim.h"

namespace hivemesh::membership {
namespace {

using std::chrono::seconds;

SimOptions Options(uint64_t seed, double loss = 0.0) {
  SimOptions o;
  o.swim = SwimConfig::Lan();
  o.seed = seed;
  o.loss = loss;
  return o;
}

std::vector<int> Range(int from, int to) {
  std::vector<int> v(to - from);
  std::iota(v.begin(), v.end(), from);
  return v;
}

// kFailed verdicts about `subject` (any subject if -1), from any observer.
int CountEvents(const SimCluster& c, EventType type, int subject = -1) {
  return static_cast<int>(std::count_if(
      c.events().begin(), c.events().end(),
      [&](const SimEvent& e) { return e.type == type && (subject < 0 || e.subject == subject); }));
}

// Observers that emitted `type` about `subject`, each counted once.
int DistinctObservers(const SimCluster& c, EventType type, int subject) {
  std::vector<bool> seen(c.size());
  int k = 0;
  for (const SimEvent& e : c.events()) {
    if (e.type == type && e.subject == subject && !seen[e.observer]) {
      seen[e.observer] = true;
      ++k;
    }
  }
  return k;
}

// Every up node other than `subject` holds `subject` in `state`.
bool AllSee(const SimCluster& c, int subject, MemberState state) {
  return c.CountSeeing(subject, state) == c.NumUp() - (c.up(subject) ? 1 : 0);
}

std::string Describe(const SimCluster& c) {
  std::string s;
  int off = 0;
  for (int i = 0; i < c.size(); ++i) {
    if (!c.up(i) || c.node(i).NumAlive() == c.NumUp()) continue;
    if (++off <= 5) {
      s += SimCluster::NameOf(i) + " sees " + std::to_string(c.node(i).NumAlive()) + " alive; ";
    }
  }
  if (off == 0) return "converged";
  return s + std::to_string(off) + " of " + std::to_string(c.NumUp()) + " up nodes disagree";
}

// The simulator itself: bootstrap gives a converged cluster and the network counts traffic.
TEST(SimClusterTest, BootstrapConvergesAndCountsTraffic) {
  SimCluster c(Options(1));
  c.Bootstrap(20);
  EXPECT_TRUE(c.Converged()) << Describe(c);
  EXPECT_EQ(c.TotalCounters().packets(), 0u);
  c.RunFor(seconds(10));
  EXPECT_TRUE(c.Converged()) << Describe(c);
  EXPECT_GT(c.TotalCounters().udp_packets, 20u * 10u);  // at least one probe per node per second
  EXPECT_EQ(c.network_stats().timer_stalls, 0u);
  EXPECT_EQ(c.network_stats().unknown_address, 0u);
}

// Joining through seeds, in waves, without the bootstrap shortcut.
TEST(SimClusterTest, JoinThroughSeedsConverges) {
  SimCluster c(Options(2));
  for (int i = 0; i < 30; ++i) c.AddNode();
  c.Join(0, {});
  c.Join(1, {0});
  c.RunFor(seconds(1));
  for (int i = 2; i < 30; ++i) c.Join(i, {0, 1});
  EXPECT_TRUE(c.RunUntilTrue([&] { return c.Converged(); }, seconds(30), seconds(1)))
      << Describe(c);
  for (int i = 1; i < 30; ++i) EXPECT_TRUE(c.node(i).joined()) << i;
}

// (a) 100 nodes, 10% UDP loss, 10 virtual minutes: suspicion may come and go, but no live node
// is ever declared dead, and all end with 100 alive.
TEST(SwimPropertyTest, NoFalseDeathsAtTenPercentLoss) {
  SimCluster c(Options(11, /*loss=*/0.10));
  c.Bootstrap(100);
  c.RunFor(std::chrono::minutes(10));
  EXPECT_EQ(CountEvents(c, EventType::kFailed), 0) << "false dead verdicts about live nodes";
  EXPECT_GT(c.network_stats().udp_lost, 0u);
  EXPECT_TRUE(c.RunUntilTrue([&] { return c.Converged(); }, seconds(30), seconds(1)))
      << Describe(c);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(c.node(i).NumAlive(), 100) << i;
}

// (b) Two halves partitioned until each declares the other dead, then healed: within two
// push-pull intervals (180 s at n = 100) everyone sees all 100 alive again (refutation and
// rejoin through gossip to the dead and push-pull). Several seeds: whether and when the halves
// find each other again depends on timing, and one lucky seed proves little.
class PartitionHealTest : public ::testing::TestWithParam<uint64_t> {};

TEST_P(PartitionHealTest, HealsAfterBothSidesDeclareDeath) {
  const SwimConfig cfg = SwimConfig::Lan();
  SimCluster c(Options(GetParam()));
  c.Bootstrap(100);
  c.RunFor(seconds(5));
  const std::vector<int> a = Range(0, 50), b = Range(50, 100);
  c.Partition({a, b});
  auto other_side_dead = [&] {
    for (int i = 0; i < 100; ++i) {
      for (int j : (i < 50 ? b : a)) {
        std::optional<MemberState> s = c.StateAt(i, j);
        if (s == MemberState::kAlive || s == MemberState::kSuspect) return false;
      }
    }
    return true;
  };
  // Lifeguard bound at n = 100: 48 s at most, plus detection.
  ASSERT_TRUE(c.RunUntilTrue(other_side_dead, seconds(70), seconds(1)));
  for (int i = 0; i < 100; ++i) EXPECT_EQ(c.node(i).NumAlive(), 50) << i;
  const SteadyTime healed = c.now();
  c.Heal();
  const Nanos bound = 2 * PushPullInterval(cfg, 100);
  EXPECT_TRUE(c.RunUntilTrue([&] { return c.Converged(); }, bound, seconds(1)))
      << "seed " << GetParam() << ", not healed " << std::chrono::duration<double>(bound).count()
      << " s after the partition ended: " << Describe(c);
  RecordProperty("heal_seconds",
                 std::to_string(std::chrono::duration<double>(c.now() - healed).count()));
}

INSTANTIATE_TEST_SUITE_P(Seeds, PartitionHealTest, ::testing::Values(1, 2, 3, 4, 5));

// (c) A crash is detected by every other node within the Lifeguard maximum suspicion timeout
// plus a probe margin; after a restart the node is alive everywhere again.
TEST(SwimPropertyTest, CrashDetectedWithinBoundThenRestartRejoins) {
  const SwimConfig cfg = SwimConfig::Lan();
  SimCluster c(Options(13));
  c.Bootstrap(100);
  c.RunFor(seconds(5));
  const int victim = 42;
  c.Crash(victim);
  const SteadyTime crashed = c.now();
  const Millis max_timeout =
      SuspicionMinTimeout(cfg, 100) * cfg.suspicion_max_timeout_mult;  // 48 s at n = 100
  // The first probe of the victim fails within a few probe intervals (99 probers); gossip of
  // the verdict takes a second or two more.
  const Nanos bound = max_timeout + 5 * cfg.probe_interval;
  ASSERT_TRUE(
      c.RunUntilTrue([&] { return AllSee(c, victim, MemberState::kDead); }, bound, Millis(100)))
      << c.CountSeeing(victim, MemberState::kDead) << " of 99 see it dead after "
      << std::chrono::duration<double>(bound).count() << " s";
  RecordProperty("detect_seconds",
                 std::to_string(std::chrono::duration<double>(c.now() - crashed).count()));
  EXPECT_EQ(DistinctObservers(c, EventType::kFailed, victim), 99);
  for (int i = 0; i < 100; ++i) {
    if (i != victim) {
      EXPECT_EQ(DistinctObservers(c, EventType::kFailed, i), 0) << i;
    }
  }

  c.Restart(victim, {0, 1});
  EXPECT_TRUE(c.RunUntilTrue([&] { return c.Converged(); }, seconds(30), Millis(500)))
      << Describe(c);
  EXPECT_GT(c.node(victim).incarnation(), 0u) << "it must have refuted its death";
}

// (d) A graceful leave is seen as left, not failed, by every node.
TEST(SwimPropertyTest, GracefulLeaveIsLeftNotFailed) {
  SimCluster c(Options(14));
  c.Bootstrap(100);
  c.RunFor(seconds(5));
  const int leaver = 17;
  c.Leave(leaver);
  EXPECT_TRUE(c.RunUntilTrue([&] { return AllSee(c, leaver, MemberState::kLeft); }, seconds(10),
                             Millis(100)))
      << c.CountSeeing(leaver, MemberState::kLeft) << " of 99 see it left";
  c.RunFor(seconds(30));  // long enough for any probe of it to have failed
  EXPECT_FALSE(c.up(leaver)) << "LeaveDone() never became true";
  EXPECT_EQ(CountEvents(c, EventType::kFailed), 0);
  EXPECT_EQ(DistinctObservers(c, EventType::kLeft, leaver), 99);
  for (int i = 0; i < 100; ++i) {
    if (i != leaver) {
      EXPECT_EQ(c.node(i).NumAlive(), 99) << i;
    }
  }
}

// (e) A metadata change reaches every node within a few seconds (gossip, not push-pull).
TEST(SwimPropertyTest, MetadataChangeReachesEveryNodeQuickly) {
  SimCluster c(Options(15));
  c.Bootstrap(100, "v1");
  c.RunFor(seconds(5));
  const int changer = 7;
  c.UpdateMeta(changer, "v2");
  auto everyone_has_v2 = [&] {
    for (int i = 0; i < 100; ++i) {
      if (i == changer) continue;
      const std::optional<MemberInfo> m = c.node(i).Find(SimCluster::NameOf(changer));
      if (!m.has_value() || m->meta != "v2") return false;
    }
    return true;
  };
  EXPECT_TRUE(c.RunUntilTrue(everyone_has_v2, seconds(5), Millis(50)));
  EXPECT_EQ(DistinctObservers(c, EventType::kUpdated, changer), 99);
}

// (f) The same seed gives the same event trace and the same traffic; another seed differs.
std::vector<SimEvent> Scenario(uint64_t seed, SimCounters* totals) {
  SimCluster c(Options(seed, 0.05));
  for (int i = 0; i < 20; ++i) c.AddNode();
  c.Join(0, {});
  for (int i = 1; i < 20; ++i) c.Join(i, {0});
  c.RunFor(seconds(10));
  c.Crash(3);
  c.UpdateMeta(5, "x");
  c.RunFor(seconds(20));
  c.Leave(6);
  c.Restart(3, {0});
  c.RunFor(seconds(20));
  *totals = c.TotalCounters();
  return c.events();
}

TEST(SwimPropertyTest, SameSeedSameTrace) {
  SimCounters t1, t2, t3;
  const std::vector<SimEvent> a = Scenario(99, &t1);
  const std::vector<SimEvent> b = Scenario(99, &t2);
  const std::vector<SimEvent> d = Scenario(100, &t3);
  ASSERT_FALSE(a.empty());
  EXPECT_TRUE(a == b) << a.size() << " vs " << b.size() << " events";
  EXPECT_EQ(t1.bytes(), t2.bytes());
  EXPECT_EQ(t1.packets(), t2.packets());
  EXPECT_FALSE(a == d && t1.bytes() == t3.bytes()) << "the seed changes nothing";
}

}  // namespace
}  // namespace hivemesh::membership
