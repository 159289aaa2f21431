#include "serving/batching_policy.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace hivemesh {
namespace {

using std::chrono::microseconds;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

const SteadyTime kT0 = SteadyTime{} + std::chrono::seconds(100);

BatchingConfig Config(int max, std::vector<int> preferred, int64_t delay_us) {
  BatchingConfig c;
  c.max_batch_size = max;
  c.preferred_batch_sizes = std::move(preferred);
  c.max_queue_delay_us = delay_us;
  return c;
}

PendingRequest At(int64_t us, int64_t rows = 1) {
  return PendingRequest{kT0 + microseconds(us), rows, std::nullopt, 0};
}

PendingRequest WithDeadline(PendingRequest r, int64_t deadline_us) {
  r.deadline = kT0 + microseconds(deadline_us);
  return r;
}

PendingRequest InGroup(PendingRequest r, uint64_t group) {
  r.group = group;
  return r;
}

SteadyTime T(int64_t us) { return kT0 + microseconds(us); }

TEST(BatchingPolicyTest, EmptyQueueWaitsForArrivals) {
  BatchingPolicy p(Config(4, {}, 100));
  BatchDecision d = p.Decide({}, T(0));
  EXPECT_THAT(d.run, IsEmpty());
  EXPECT_THAT(d.expired, IsEmpty());
  EXPECT_FALSE(d.wake_at.has_value());
}

TEST(BatchingPolicyTest, RunsAtOnceWhenMaxBatchSizeIsReached) {
  BatchingPolicy p(Config(4, {}, 1000));
  std::vector<PendingRequest> q = {At(0), At(1), At(2)};
  BatchDecision d = p.Decide(q, T(3));
  EXPECT_THAT(d.run, IsEmpty()) << "3 of 4 rows: wait for more";
  EXPECT_EQ(d.wake_at, T(1000)) << "until the oldest has waited max_queue_delay";
  q.push_back(At(3));
  q.push_back(At(4));
  d = p.Decide(q, T(4));
  EXPECT_THAT(d.run, ElementsAre(0, 1, 2, 3)) << "full: run now, never more than max rows";
}

TEST(BatchingPolicyTest, CountsRowsNotRequests) {
  BatchingPolicy p(Config(8, {}, 1000));
  std::vector<PendingRequest> q = {At(0, 3), At(1, 4), At(2, 2)};
  BatchDecision d = p.Decide(q, T(2));
  EXPECT_THAT(d.run, ElementsAre(0, 1)) << "7 rows, and the next (2 rows) would make 9 > 8";
  q = {At(0, 3), At(1, 5)};
  EXPECT_THAT(p.Decide(q, T(2)).run, ElementsAre(0, 1)) << "exactly 8 rows";
}

TEST(BatchingPolicyTest, KeepsArrivalOrderAndDoesNotSkipAhead) {
  BatchingPolicy p(Config(4, {}, 1000));
  // The second request does not fit; the third would, but must not overtake it.
  std::vector<PendingRequest> q = {At(0, 2), At(1, 3), At(2, 1)};
  EXPECT_THAT(p.Decide(q, T(2)).run, ElementsAre(0));
}

TEST(BatchingPolicyTest, ARequestLargerThanMaxRunsAlone) {
  BatchingPolicy p(Config(4, {}, 1000));
  std::vector<PendingRequest> q = {At(0, 6), At(1, 1)};
  EXPECT_THAT(p.Decide(q, T(1)).run, ElementsAre(0));
}

TEST(BatchingPolicyTest, RunsAtOnceAtAPreferredSizeChoosingTheLargest) {
  BatchingPolicy p(Config(8, {2, 4}, 1000));
  std::vector<PendingRequest> q = {At(0)};
  EXPECT_THAT(p.Decide(q, T(0)).run, IsEmpty());
  q.push_back(At(1));
  EXPECT_THAT(p.Decide(q, T(1)).run, ElementsAre(0, 1)) << "2 is preferred";
  q = {At(0), At(1), At(2), At(3), At(4)};
  EXPECT_THAT(p.Decide(q, T(4)).run, ElementsAre(0, 1, 2, 3))
      << "5 queued: the largest preferred prefix (4) runs, the fifth waits";
  q = {At(0, 3), At(1, 2)};
  EXPECT_THAT(p.Decide(q, T(1)).run, IsEmpty()) << "prefixes of 3 and 5 rows: none preferred";
}

TEST(BatchingPolicyTest, RunsWhatIsThereAfterMaxQueueDelay) {
  BatchingPolicy p(Config(8, {4}, 500));
  std::vector<PendingRequest> q = {At(0), At(200), At(300)};
  BatchDecision d = p.Decide(q, T(499));
  EXPECT_THAT(d.run, IsEmpty());
  EXPECT_EQ(d.wake_at, T(500)) << "measured from the oldest request";
  EXPECT_THAT(p.Decide(q, T(500)).run, ElementsAre(0, 1, 2));
  // A lone request runs alone once its delay is over.
  std::vector<PendingRequest> lone = {At(0)};
  EXPECT_EQ(p.Decide(lone, T(100)).wake_at, T(500));
  EXPECT_THAT(p.Decide(lone, T(500)).run, ElementsAre(0));
}

TEST(BatchingPolicyTest, ZeroDelayRunsWhatIsQueuedAtOnce) {
  BatchingPolicy p(Config(8, {}, 0));
  std::vector<PendingRequest> q = {At(0), At(1)};
  EXPECT_THAT(p.Decide(q, T(1)).run, ElementsAre(0, 1));
}

TEST(BatchingPolicyTest, ADeadlineClosesTheBatchEarly) {
  BatchingPolicy p(Config(8, {}, 1000));
  std::vector<PendingRequest> q = {At(0), WithDeadline(At(10), 300), At(20)};
  // The batch starts one compute estimate before the deadline, not at max_queue_delay (1000).
  BatchDecision d = p.Decide(q, T(20), microseconds(100));
  EXPECT_THAT(d.run, IsEmpty());
  EXPECT_EQ(d.wake_at, T(200));
  EXPECT_THAT(p.Decide(q, T(199), microseconds(100)).run, IsEmpty());
  EXPECT_THAT(p.Decide(q, T(200), microseconds(100)).run, ElementsAre(0, 1, 2));
  // Without an estimate it would wake at the deadline itself, when the request is expired: the
  // runtime always passes some slack.
  EXPECT_EQ(p.Decide(q, T(20)).wake_at, T(300));
  d = p.Decide(q, T(300));
  EXPECT_THAT(d.expired, ElementsAre(1));
  EXPECT_THAT(d.run, IsEmpty()) << "the others wait on for max_queue_delay";
  EXPECT_EQ(d.wake_at, T(1000));
  // A deadline already within one estimate of `now` at arrival runs at once.
  std::vector<PendingRequest> tight = {WithDeadline(At(0), 50)};
  EXPECT_THAT(p.Decide(tight, T(0), microseconds(100)).run, ElementsAre(0));
}

TEST(BatchingPolicyTest, ExpiredRequestsAreNotIncluded) {
  BatchingPolicy p(Config(2, {}, 1000));
  std::vector<PendingRequest> q = {WithDeadline(At(0), 50), At(10), WithDeadline(At(20), 60),
                                   At(30), WithDeadline(At(40), 70)};
  BatchDecision d = p.Decide(q, T(100));
  EXPECT_THAT(d.expired, ElementsAre(0, 2, 4)) << "every expired request, even past the batch";
  EXPECT_THAT(d.run, ElementsAre(1, 3));
  // Only expired requests: nothing to run, nothing to wait for.
  std::vector<PendingRequest> dead = {WithDeadline(At(0), 50)};
  d = p.Decide(dead, T(100));
  EXPECT_THAT(d.expired, ElementsAre(0));
  EXPECT_THAT(d.run, IsEmpty());
  EXPECT_FALSE(d.wake_at.has_value());
}

TEST(BatchingPolicyTest, OnlyRequestsOfOneGroupBatchTogether) {
  BatchingPolicy p(Config(4, {}, 100));
  std::vector<PendingRequest> q = {InGroup(At(0), 7), InGroup(At(1), 9), InGroup(At(2), 7),
                                   InGroup(At(3), 9)};
  EXPECT_THAT(p.Decide(q, T(100)).run, ElementsAre(0, 2)) << "the oldest request's group";
  q.erase(q.begin());
  q.erase(q.begin() + 1);
  EXPECT_THAT(p.Decide(q, T(101)).run, ElementsAre(0, 1));
  // A full batch of one group does not wait for the other group.
  std::vector<PendingRequest> r = {InGroup(At(0, 2), 1), InGroup(At(1, 3), 2),
                                   InGroup(At(2, 2), 1)};
  EXPECT_THAT(p.Decide(r, T(2)).run, ElementsAre(0, 2));
}

}  // namespace
}  // namespace hivemesh
