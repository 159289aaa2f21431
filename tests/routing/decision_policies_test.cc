// The policies routing/decision.h composes Decide from: power of two choices (property tests over
// many random inputs), eligibility, the local preference and the reject reason.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <random>
#include <set>
#include <vector>

#include "routing/decision.h"

namespace hivemesh::routing {
namespace {

using ::testing::HasSubstr;

// Random costs for `n` peers, with ties now and then (costs from a small set).
std::vector<double> RandomCosts(size_t n, std::mt19937_64& gen) {
  std::uniform_int_distribution<int> level(1, 6);
  std::vector<double> costs(n);
  for (double& c : costs) c = level(gen) * 1e6;
  return costs;
}

TEST(PowerOfTwoChoicesTest, TheSampledPairIsDistinctAndInRange) {
  std::mt19937_64 gen(11);
  for (int round = 0; round < 5000; ++round) {
    const size_t n = 2 + gen() % 30;
    std::mt19937_64 rng(gen());
    const auto [a, b] = P2CSample(n, rng);
    ASSERT_LT(a, n);
    ASSERT_LT(b, n);
    ASSERT_NE(a, b) << "n " << n;
  }
}

TEST(PowerOfTwoChoicesTest, NeverPicksTheWorseOfTheTwoSampled) {
  std::mt19937_64 gen(12);
  for (int round = 0; round < 5000; ++round) {
    const size_t n = 2 + gen() % 30;
    const std::vector<double> costs = RandomCosts(n, gen);
    const uint64_t seed = gen();
    // The pair PowerOfTwoChoices samples is the one P2CSample draws from the same state.
    std::mt19937_64 replay(seed);
    const auto [a, b] = P2CSample(n, replay);
    std::mt19937_64 rng(seed);
    const size_t picked = PowerOfTwoChoices(costs, rng);
    ASSERT_TRUE(picked == a || picked == b) << "it picks one of the two sampled";
    ASSERT_LE(costs[picked], costs[picked == a ? b : a]) << "never the worse of the two";
    ASSERT_EQ(rng(), replay()) << "it draws exactly the pair from the random source";
  }
}

TEST(PowerOfTwoChoicesTest, PickTakesTheCheaperAndTheFirstOnATie) {
  const std::vector<double> costs = {3, 1, 3};
  EXPECT_EQ(P2CPick(costs, 0, 1), 1u);
  EXPECT_EQ(P2CPick(costs, 1, 0), 1u);
  EXPECT_EQ(P2CPick(costs, 0, 2), 0u);
  EXPECT_EQ(P2CPick(costs, 2, 0), 2u);
}

TEST(PowerOfTwoChoicesTest, WithOneCandidatePicksItWithoutDrawing) {
  std::mt19937_64 gen(13);
  for (int round = 0; round < 100; ++round) {
    const std::vector<double> costs = {static_cast<double>(gen() % 1000)};
    std::mt19937_64 rng(round), untouched(round);
    EXPECT_EQ(PowerOfTwoChoices(costs, rng), 0u);
    EXPECT_EQ(rng(), untouched());
  }
}

TEST(PowerOfTwoChoicesTest, EveryCandidateButTheSingleWorstCanBePicked) {
  for (size_t n : {2, 3, 5, 16}) {
    // Equal costs: every candidate is picked now and then.
    const std::vector<double> equal(n, 5.0);
    std::mt19937_64 rng(n);
    std::set<size_t> seen;
    for (int i = 0; i < 2000; ++i) seen.insert(PowerOfTwoChoices(equal, rng));
    EXPECT_EQ(seen.size(), n) << "n " << n;
    // Distinct costs: everyone but the most expensive (it always loses its pair).
    std::vector<double> distinct(n);
    for (size_t i = 0; i < n; ++i) distinct[i] = static_cast<double>((i * 7) % n);  // a permutation
    const size_t worst =
        static_cast<size_t>(std::max_element(distinct.begin(), distinct.end()) - distinct.begin());
    seen.clear();
    for (int i = 0; i < 2000; ++i) seen.insert(PowerOfTwoChoices(distinct, rng));
    EXPECT_EQ(seen.size(), n - 1) << "n " << n;
    EXPECT_FALSE(seen.contains(worst)) << "n " << n;
  }
}

TEST(PowerOfTwoChoicesTest, DeterministicForASeed) {
  std::mt19937_64 gen(14);
  const std::vector<double> costs = RandomCosts(20, gen);
  std::mt19937_64 a(99), b(99);
  for (int i = 0; i < 1000; ++i)
    ASSERT_EQ(PowerOfTwoChoices(costs, a), PowerOfTwoChoices(costs, b));
}

TEST(DecisionPoliciesTest, P2CCostIsLatencyTimesPendingPlusOne) {
  Candidate c;
  c.service_ns = 4e6;
  c.rtt_ns = 1e6;
  c.pending = 2;
  EXPECT_DOUBLE_EQ(P2CCost(c, 0), 5e6 * 3) << "the prediction until a latency is observed";
  c.peak_ewma_ns = 8e6;
  EXPECT_DOUBLE_EQ(P2CCost(c, 0), 8e6 * 3);
}

TEST(DecisionPoliciesTest, PreferLocalWithinRelativeAndAbsoluteMargins) {
  RoutingPolicy p;  // 25% + 2 ms
  EXPECT_TRUE(PreferLocal(10e6, 10e6, p));
  EXPECT_TRUE(PreferLocal(14.5e6, 10e6, p)) << "10 x 1.25 + 2 = 14.5 ms";
  EXPECT_FALSE(PreferLocal(14.6e6, 10e6, p));
  EXPECT_TRUE(PreferLocal(2e6, 0, p)) << "the absolute margin alone";
}

TEST(DecisionPoliciesTest, PolicyAllowsByDataPolicyAndZone) {
  Candidate same, other, none;
  same.zone = "z1";
  other.zone = "z2";
  EXPECT_TRUE(PolicyAllows(DataPolicy::kMesh, "", other));
  EXPECT_FALSE(PolicyAllows(DataPolicy::kLocalOnly, "z1", same));
  EXPECT_TRUE(PolicyAllows(DataPolicy::kZone, "z1", same));
  EXPECT_FALSE(PolicyAllows(DataPolicy::kZone, "z1", other));
  EXPECT_FALSE(PolicyAllows(DataPolicy::kZone, "", none)) << "no zone of its own: no zone peer";
}

TEST(DecisionPoliciesTest, EligibilitySaysWhatBlockedEachCandidate) {
  Candidate local;
  local.local = true;
  local.service_ns = 50e6;
  Candidate ejected, far, slow, ok;
  ejected.ejected = true;
  far.zone = "z2";
  slow.service_ns = 500e6;
  ok.zone = "z1";
  std::vector<Candidate> c = {local, ejected, far, slow, ok};
  RouteRequest req;
  req.remaining = std::chrono::milliseconds(100);
  Eligibility e = FindEligible(c, req, RoutingMode::kHivemesh);
  EXPECT_EQ(e.local, 0);
  EXPECT_EQ(e.peers, (std::vector<int>{2, 4}));
  EXPECT_EQ(e.ejected_peers, (std::vector<int>{1})) << "kept apart, for panic";
  EXPECT_TRUE(e.deadline_blocked) << "the slow peer";
  req.policy = DataPolicy::kZone;
  req.local_zone = "z1";
  e = FindEligible(c, req, RoutingMode::kHivemesh);
  EXPECT_EQ(e.peers, (std::vector<int>{4}));
  EXPECT_TRUE(e.policy_blocked);
  e = FindEligible(c, req, RoutingMode::kLocal);
  EXPECT_TRUE(e.peers.empty()) << "a hosted model is not offloaded in local mode";
  EXPECT_TRUE(e.mode_blocked);
  req.may_forward = false;
  e = FindEligible(c, req, RoutingMode::kHivemesh);
  EXPECT_TRUE(e.peers.empty());
  EXPECT_TRUE(e.hop_blocked);
}

TEST(DecisionPoliciesTest, PanicTriesEjectedPeersOnlyWhenNothingElseCan) {
  std::mt19937_64 rng(3);
  Candidate b, c, local;
  b.node = "b";
  c.node = "c";
  b.ejected = c.ejected = true;
  local.local = true;
  // Every peer ejected and no local candidate: one of the ejected is tried, not a 503.
  std::vector<Candidate> all_ejected = {b, c};
  for (int i = 0; i < 20; ++i) {
    const Decision d = Decide(all_ejected, RouteRequest{}, RoutingPolicy{}, rng);
    EXPECT_EQ(d.kind, Decision::kForward);
  }
  // A local candidate that can serve: no panic.
  std::vector<Candidate> with_local = {local, b, c};
  EXPECT_EQ(Decide(with_local, RouteRequest{}, RoutingPolicy{}, rng).kind, Decision::kLocal);
  // One healthy peer: only it.
  Candidate d;
  d.node = "d";
  std::vector<Candidate> one_healthy = {b, c, d};
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(Decide(one_healthy, RouteRequest{}, RoutingPolicy{}, rng).index, 2);
  }
  // What blocks a peer for other reasons (data policy, hop limit) blocks it in panic too.
  RouteRequest at_limit;
  at_limit.may_forward = false;
  EXPECT_EQ(Decide(all_ejected, at_limit, RoutingPolicy{}, rng).kind, Decision::kReject);
  RouteRequest local_only;
  local_only.policy = DataPolicy::kLocalOnly;
  EXPECT_EQ(Decide(all_ejected, local_only, RoutingPolicy{}, rng).kind, Decision::kReject);
}

// A peer whose ejection just ended, or that just restarted, gets the next request that goes to a
// peer, whatever its (stale or guessed) estimates: that request finds out how it is.
TEST(DecisionPoliciesTest, AProbingPeerGetsTheNextForwardedRequest) {
  std::mt19937_64 rng(4);
  Candidate b, c;
  b.node = "b";
  c.node = "c";
  b.peak_ewma_ns = 30e6;  // a guess, or what it did before it went away
  c.peak_ewma_ns = 1e6;
  std::vector<Candidate> peers = {b, c};
  int to_b = 0;
  for (int i = 0; i < 50; ++i)
    to_b += Decide(peers, RouteRequest{}, RoutingPolicy{}, rng).index == 0;
  EXPECT_EQ(to_b, 0) << "without a probe, the slower-looking peer loses every time";
  peers[0].probe = true;
  for (int i = 0; i < 5; ++i) {
    const Decision d = Decide(peers, RouteRequest{}, RoutingPolicy{}, rng);
    EXPECT_EQ(d.kind, Decision::kForward);
    EXPECT_EQ(d.index, 0);
  }
  // A probe is still a peer: what blocks peers (the data policy) blocks it.
  RouteRequest local_only;
  local_only.policy = DataPolicy::kLocalOnly;
  EXPECT_EQ(Decide(peers, local_only, RoutingPolicy{}, rng).kind, Decision::kReject);
}

TEST(DecisionPoliciesTest, RejectReasonNamesTheMostTellingBlock) {
  Eligibility none;
  EXPECT_THAT(std::string(RejectReason(none, DataPolicy::kMesh).message()), HasSubstr("is ready"));
  Eligibility e;
  e.any_ready = true;
  e.policy_blocked = true;
  e.deadline_blocked = true;
  EXPECT_EQ(RejectReason(e, DataPolicy::kMesh).code(), absl::StatusCode::kDeadlineExceeded);
  e.deadline_blocked = false;
  EXPECT_THAT(std::string(RejectReason(e, DataPolicy::kLocalOnly).message()),
              HasSubstr("data policy (local-only) forbids offload"));
  EXPECT_THAT(std::string(RejectReason(e, DataPolicy::kZone).message()),
              HasSubstr("data policy (zone)"));
  e.hop_blocked = true;
  EXPECT_THAT(std::string(RejectReason(e, DataPolicy::kZone).message()), HasSubstr("hop limit"));
  e.mode_blocked = true;
  EXPECT_THAT(std::string(RejectReason(e, DataPolicy::kZone).message()),
              HasSubstr("routing mode local"));
  e.local = 0;  // the local node could serve: neither block is the reason
  e.policy_blocked = false;
  EXPECT_THAT(std::string(RejectReason(e, DataPolicy::kZone).message()),
              HasSubstr("every node hosting this model is unavailable"));
}

}  // namespace
}  // namespace hivemesh::routing
