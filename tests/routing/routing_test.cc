// Routing kernels, with a manual clock and a seeded random source.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>

#include "routing/decision.h"
#include "routing/outlier.h"
#include "routing/path_estimate.h"
#include "routing/peak_ewma.h"
#include "routing/retry_budget.h"

namespace hivemesh::routing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

SteadyTime T(int64_t ms) { return SteadyTime(std::chrono::hours(1)) + milliseconds(ms); }
double Ms(double ns) { return ns / 1e6; }

TEST(PeakEwmaTest, PeaksAtOnceDecaysSlowly) {
  PeakEwma e(seconds(10), milliseconds(30), T(0));
  EXPECT_NEAR(Ms(e.Get(T(0))), 30, 1e-9);
  e.Observe(milliseconds(100), T(0));
  EXPECT_NEAR(Ms(e.Get(T(0))), 100, 1e-9) << "a slower observation counts at once";
  e.Observe(milliseconds(10), T(1000));
  // w = exp(-1/10): cost = 100 w + 10 (1 - w), then read at the same instant.
  const double w = std::exp(-0.1);
  EXPECT_NEAR(Ms(e.Get(T(1000))), 100 * w + 10 * (1 - w), 1e-6);
  // Unobserved, it decays toward zero (the endpoint will be tried again).
  EXPECT_LT(e.Get(T(60000)), e.Get(T(1000)) * 0.01);
  // The first observation replaces the initial guess, even a faster one: a new endpoint is
  // judged by what it did (before: 30 ms decaying toward 2 ms over tens of seconds).
  PeakEwma fresh(seconds(10), milliseconds(30), T(0));
  fresh.Observe(milliseconds(2), T(5));
  EXPECT_NEAR(Ms(fresh.Get(T(5))), 2, 1e-9);
}

TEST(RetryBudgetTest, TwentyPercentPlusAFloor) {
  RetryBudget b({0.2, 1.0, milliseconds(10000)});
  // No traffic: the floor alone (1/s over a 10 s window) allows 10 retries.
  int allowed = 0;
  for (int i = 0; i < 50; ++i) allowed += b.TryWithdraw(T(0)) ? 1 : 0;
  EXPECT_EQ(allowed, 10);
  // 100 requests add 20 more.
  for (int i = 0; i < 100; ++i) b.Deposit(T(1));
  allowed = 0;
  for (int i = 0; i < 50; ++i) allowed += b.TryWithdraw(T(2)) ? 1 : 0;
  EXPECT_EQ(allowed, 20);
  // After the window everything expires.
  EXPECT_TRUE(b.TryWithdraw(T(20000)));
}

TEST(RetryBudgetTest, FullJitterBackoffStaysUnderTheExponentialCeiling) {
  EXPECT_EQ(FullJitterBackoff(0, milliseconds(25), seconds(1), 0.0), Nanos(0));
  EXPECT_EQ(FullJitterBackoff(0, milliseconds(25), seconds(1), 0.5), Nanos(12500000));
  EXPECT_EQ(FullJitterBackoff(3, milliseconds(25), seconds(1), 0.5), milliseconds(100));
  EXPECT_EQ(FullJitterBackoff(10, milliseconds(25), seconds(1), 0.5), milliseconds(500));
}

TEST(OutlierTest, ConsecutiveFailuresEjectForGrowingTimes) {
  OutlierState o;
  for (int i = 0; i < 4; ++i) EXPECT_FALSE(o.OnFailure(T(i), FailureKind::kSoft, true));
  EXPECT_TRUE(o.OnFailure(T(4), FailureKind::kSoft, true)) << "the fifth in a row ejects";
  EXPECT_TRUE(o.Ejected(T(29000)));
  EXPECT_FALSE(o.Ejected(T(30004)));
  EXPECT_TRUE(o.Probing(T(30004))) << "after the ejection, one request probes it";
  EXPECT_TRUE(o.OnFailure(T(30005), FailureKind::kSoft, true)) << "a failed probe ejects again";
  EXPECT_TRUE(o.Ejected(T(30005 + 59000)));
  EXPECT_FALSE(o.Ejected(T(30005 + 60001))) << "second ejection: 2 x 30 s";
  o.OnSuccess(T(100000));
  EXPECT_FALSE(o.Probing(T(100000)));
  // A success resets the run of failures.
  for (int i = 0; i < 4; ++i) o.OnFailure(T(100001 + i), FailureKind::kSoft, true);
  o.OnSuccess(T(100010));
  EXPECT_FALSE(o.OnFailure(T(100011), FailureKind::kSoft, true));
}

TEST(OutlierTest, RefusedConnectionEjectsAtOnceAndTheCapHolds) {
  OutlierState o;
  EXPECT_TRUE(o.OnFailure(T(0), FailureKind::kReset, true));
  OutlierState capped;
  EXPECT_FALSE(capped.OnFailure(T(0), FailureKind::kReset, /*may_eject=*/false));
  EXPECT_FALSE(capped.Ejected(T(0)));
  OutlierConfig c;
  EXPECT_TRUE(MayEject(0, 3, c)) << "at least one may always be ejected";
  EXPECT_FALSE(MayEject(1, 3, c));
  EXPECT_TRUE(MayEject(1, 20, c));
  EXPECT_FALSE(MayEject(2, 20, c));
  // The ejection time is capped at 300 s.
  OutlierState many;
  SteadyTime t = T(0);
  for (int i = 0; i < 20; ++i) {
    many.OnFailure(t, FailureKind::kReset, true);
    t += milliseconds(400000);
  }
  EXPECT_FALSE(many.Ejected(t - milliseconds(400000) + milliseconds(300001)));
}

// Nothing listens at a refused address: the peer is gone or restarting. It is ejected at once,
// but only for a second each time, however often it is refused, so that a restarted peer is
// probed and back in use within a second of listening again.
TEST(OutlierTest, RefusedConnectionEjectsForASecondEachTime) {
  OutlierState o;
  SteadyTime t = T(0);
  for (int i = 0; i < 10; ++i) {
    EXPECT_TRUE(o.OnFailure(t, FailureKind::kRefused, true));
    EXPECT_TRUE(o.Ejected(t + milliseconds(999)));
    EXPECT_FALSE(o.Ejected(t + milliseconds(1000))) << "refusal " << i;
    EXPECT_TRUE(o.Probing(t + milliseconds(1000)));
    t += milliseconds(1000);
  }
  o.OnSuccess(t);
  EXPECT_FALSE(o.Probing(t));
  EXPECT_EQ(o.times_ejected(), 10);
  // Refusals do not lengthen a later ejection for other failures.
  EXPECT_TRUE(o.OnFailure(t, FailureKind::kReset, true));
  EXPECT_TRUE(o.Ejected(t + milliseconds(29999)));
  EXPECT_FALSE(o.Ejected(t + milliseconds(30000)));
}

Candidate Local(double queue, double service_ms) {
  Candidate c;
  c.node = "self";
  c.local = true;
  c.zone = "a";
  c.queue_depth = queue;
  c.service_ns = service_ms * 1e6;
  return c;
}

Candidate Peer(const std::string& name, const std::string& zone, double queue, double service_ms,
               double rtt_ms = 0.5) {
  Candidate c;
  c.node = name;
  c.zone = zone;
  c.queue_depth = queue;
  c.service_ns = service_ms * 1e6;
  c.rtt_ns = rtt_ms * 1e6;
  return c;
}

TEST(DecisionTest, PredictionAddsQueueServiceRttAndTransfer) {
  Candidate p = Peer("b", "a", 2, 10, 1);
  p.bandwidth_bytes_per_s = 1e6;
  // 2 x 10 ms queue + 10 ms service + 1 ms rtt + 100 kB / 1 MB/s = 131 ms.
  EXPECT_NEAR(Ms(PredictedNanos(p, 100000)), 131, 1e-6);
  EXPECT_NEAR(Ms(PredictedNanos(Local(1, 10), 100000)), 20, 1e-6) << "local: no network terms";
}

TEST(DecisionTest, LocalFirstWithinTheMargin) {
  std::mt19937_64 rng(1);
  RouteRequest req;
  // Local 20 ms vs an idle peer at 10.5 ms: 20 <= 10.5 x 1.25 + 2? No: offload.
  std::vector<Candidate> c = {Local(1, 10), Peer("b", "a", 0, 10)};
  EXPECT_EQ(Decide(c, req, RoutingPolicy{}, rng).kind, Decision::kForward);
  // Local 10 ms vs peer 10.5 ms: local.
  c[0] = Local(0, 10);
  Decision d = Decide(c, req, RoutingPolicy{}, rng);
  EXPECT_EQ(d.kind, Decision::kLocal);
  EXPECT_EQ(d.index, 0);
  // Margin: local 12 ms vs peer 10.5 ms is still local (within 25% + 2 ms).
  c[0] = Local(0.2, 10);
  EXPECT_EQ(Decide(c, req, RoutingPolicy{}, rng).kind, Decision::kLocal);
}

TEST(DecisionTest, ModelOnlyOnPeersIsForwarded) {
  std::mt19937_64 rng(1);
  std::vector<Candidate> c = {Peer("b", "z", 0, 5)};
  Decision d = Decide(c, RouteRequest{}, RoutingPolicy{}, rng);
  EXPECT_EQ(d.kind, Decision::kForward);
  EXPECT_EQ(d.index, 0);
  EXPECT_EQ(Decide({}, RouteRequest{}, RoutingPolicy{}, rng).reason.code(),
            absl::StatusCode::kNotFound);
}

TEST(DecisionTest, PowerOfTwoChoicesPrefersTheLessLoaded) {
  std::mt19937_64 rng(7);
  std::vector<Candidate> c = {Local(50, 10)};
  for (int i = 0; i < 4; ++i) c.push_back(Peer("p" + std::to_string(i), "a", 0, 10));
  c[1].peak_ewma_ns = 10e6;
  c[2].peak_ewma_ns = 10e6;
  c[3].peak_ewma_ns = 10e6;
  c[4].peak_ewma_ns = 10e6;
  c[4].pending = 20;  // heavily loaded by us
  std::map<int, int> picks;
  for (int i = 0; i < 4000; ++i) ++picks[Decide(c, RouteRequest{}, RoutingPolicy{}, rng).index];
  EXPECT_EQ(picks.count(0), 0u) << "the overloaded local node is not chosen";
  // P2C: the worst endpoint is chosen only when paired with itself, which it never is.
  EXPECT_EQ(picks[4], 0);
  EXPECT_NEAR(picks[1], 4000 / 3, 200);
}

TEST(DecisionTest, DeadlinesRemoveCandidatesAndNoneLeftIs504) {
  std::mt19937_64 rng(1);
  std::vector<Candidate> c = {Local(5, 10), Peer("b", "a", 0, 10), Peer("c", "a", 9, 10)};
  RouteRequest req;
  req.remaining = milliseconds(15);
  Decision d = Decide(c, req, RoutingPolicy{}, rng);
  EXPECT_EQ(d.kind, Decision::kForward);
  EXPECT_EQ(d.index, 1) << "only b can finish in 15 ms";
  req.remaining = milliseconds(5);
  d = Decide(c, req, RoutingPolicy{}, rng);
  EXPECT_EQ(d.kind, Decision::kReject);
  EXPECT_EQ(d.reason.code(), absl::StatusCode::kDeadlineExceeded);
}

TEST(DecisionTest, DataPolicyKeepsDataLocalOrInZone) {
  std::mt19937_64 rng(1);
  std::vector<Candidate> c = {Local(100, 10), Peer("same-zone", "a", 0, 10),
                              Peer("other-zone", "b", 0, 1)};
  RouteRequest req;
  req.local_zone = "a";
  req.policy = DataPolicy::kLocalOnly;
  EXPECT_EQ(Decide(c, req, RoutingPolicy{}, rng).kind, Decision::kLocal)
      << "local-only: served locally however loaded";
  std::vector<Candidate> no_local = {Peer("same-zone", "a", 0, 10)};
  Decision d = Decide(no_local, req, RoutingPolicy{}, rng);
  EXPECT_EQ(d.kind, Decision::kReject);
  EXPECT_EQ(d.reason.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(d.reason.message()), ::testing::HasSubstr("forbids offload"));
  req.policy = DataPolicy::kZone;
  for (int i = 0; i < 100; ++i) {
    d = Decide(c, req, RoutingPolicy{}, rng);
    ASSERT_EQ(d.kind, Decision::kForward);
    EXPECT_EQ(c[static_cast<size_t>(d.index)].node, "same-zone");
  }
  req.policy = DataPolicy::kMesh;
  EXPECT_EQ(c[static_cast<size_t>(Decide(c, req, RoutingPolicy{}, rng).index)].zone.size(), 1u);
}

TEST(DecisionTest, EjectedPeersAndTheHopLimit) {
  std::mt19937_64 rng(1);
  std::vector<Candidate> c = {Peer("b", "a", 0, 10), Peer("c", "a", 0, 10)};
  c[0].ejected = true;
  for (int i = 0; i < 50; ++i) EXPECT_EQ(Decide(c, RouteRequest{}, RoutingPolicy{}, rng).index, 1);
  RouteRequest forwarded;
  forwarded.may_forward = false;
  Decision d = Decide(c, forwarded, RoutingPolicy{}, rng);
  EXPECT_EQ(d.kind, Decision::kReject) << "a request at its hop limit is not forwarded again";
  EXPECT_THAT(std::string(d.reason.message()), ::testing::HasSubstr("hop limit"));
}

TEST(PathEstimateTest, RoundTripFromSmallExchangesBandwidthFromLargeOnes) {
  PathEstimate p;
  EXPECT_FALSE(p.rtt_known());
  EXPECT_EQ(p.rtt_ns(), PathEstimate::kDefaultRttNs);
  EXPECT_EQ(p.bandwidth_bytes_per_s(), PathEstimate::kDefaultBandwidth);
  // A large exchange before any round trip is known says nothing.
  p.Observe(milliseconds(20), 1 << 20);
  EXPECT_FALSE(p.bandwidth_known());
  p.Observe(std::chrono::microseconds(300), 2000);
  EXPECT_NEAR(p.rtt_ns(), 300e3, 1);
  // 1 MB in 300 us + 10 ms: 1e8 bytes/s.
  p.Observe(std::chrono::microseconds(10300), 1000000);
  EXPECT_NEAR(p.bandwidth_bytes_per_s(), 1e8, 1e3);
  // Weighted: one slower sample moves the estimate a fifth of the way.
  p.Observe(std::chrono::microseconds(800), 100);
  EXPECT_NEAR(p.rtt_ns(), 400e3, 1);
  // A large exchange faster than a round trip carries no information.
  p.Observe(std::chrono::microseconds(100), 1000000);
  EXPECT_NEAR(p.bandwidth_bytes_per_s(), 1e8, 1e3);
  // The decision sees it: 1 MB to this peer costs 10 ms more than to an idle local node.
  Candidate c = Peer("b", "a", 0, 1, p.rtt_ns() / 1e6);
  c.bandwidth_bytes_per_s = p.bandwidth_bytes_per_s();
  EXPECT_NEAR(Ms(PredictedNanos(c, 1000000)), 1 + 0.4 + 10, 1e-3);
}

TEST(DecisionTest, LocalModeNeverOffloadsAHostedModel) {
  std::mt19937_64 rng(1);
  RoutingPolicy local_mode;
  local_mode.mode = RoutingMode::kLocal;
  std::vector<Candidate> c = {Local(100, 10), Peer("b", "a", 0, 10)};
  EXPECT_EQ(Decide(c, RouteRequest{}, RoutingPolicy{}, rng).kind, Decision::kForward);
  for (int i = 0; i < 50; ++i)
    EXPECT_EQ(Decide(c, RouteRequest{}, local_mode, rng).kind, Decision::kLocal);
  // A model this node does not host still goes to a peer.
  std::vector<Candidate> peers_only = {Peer("b", "a", 0, 10)};
  EXPECT_EQ(Decide(peers_only, RouteRequest{}, local_mode, rng).kind, Decision::kForward);
  // Hosted here but unable to take it now (its queue is full): still not offloaded.
  c[0].ready = false;
  Decision d = Decide(c, RouteRequest{}, local_mode, rng);
  EXPECT_EQ(d.kind, Decision::kReject);
  EXPECT_THAT(std::string(d.reason.message()), ::testing::HasSubstr("routing mode local"));
  EXPECT_EQ(Decide(c, RouteRequest{}, RoutingPolicy{}, rng).kind, Decision::kForward)
      << "the load-aware mode offloads it";
}

TEST(DecisionTest, RandomModeSpreadsOverEveryEligibleNode) {
  std::mt19937_64 rng(3);
  RoutingPolicy random_mode;
  random_mode.mode = RoutingMode::kRandom;
  std::vector<Candidate> c = {Local(0, 10), Peer("b", "a", 50, 10), Peer("c", "a", 0, 10),
                              Peer("d", "b", 0, 10)};
  RouteRequest req;
  req.policy = DataPolicy::kZone;
  req.local_zone = "a";
  std::map<int, int> picks;
  for (int i = 0; i < 3000; ++i) ++picks[Decide(c, req, random_mode, rng).index];
  EXPECT_NEAR(picks[0], 1000, 120);
  EXPECT_NEAR(picks[1], 1000, 120) << "load does not matter to a random choice";
  EXPECT_NEAR(picks[2], 1000, 120);
  EXPECT_EQ(picks.count(3), 0u) << "the data policy still holds";
}

}  // namespace
}  // namespace hivemesh::routing
