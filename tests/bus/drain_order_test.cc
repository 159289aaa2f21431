#include "bus/drain_order.h"

#include <gtest/gtest.h>

#include <random>
#include <set>
#include <vector>

namespace hivemesh::bus {
namespace {

using Backlog = DrainOrder::Backlog;

TEST(DrainOrderTest, LiveRowsOfFreeTopicsGoAtOnceAndHeldOnesAfterTheirBacklog) {
  // The backlog: 1 a, 2 b, 3 a, 4 a, 5 b.
  DrainOrder d;
  d.Reset(5, std::map<std::string, uint64_t>{{"a", 4}, {"b", 5}});
  EXPECT_TRUE(d.Live(6, "c"));
  EXPECT_FALSE(d.Live(7, "a"));
  EXPECT_TRUE(d.Live(8, "c"));
  EXPECT_FALSE(d.Live(9, "b"));
  EXPECT_EQ(d.live_after(), 9u);
  EXPECT_EQ(d.held_topics(), 2u);
  EXPECT_EQ(d.Next(1, "a"), Backlog::kSend);
  EXPECT_EQ(d.Next(2, "b"), Backlog::kSend);
  EXPECT_EQ(d.Next(3, "a"), Backlog::kSend);
  EXPECT_EQ(d.Next(4, "a"), Backlog::kSend);  // a's backlog, but 7 is held behind it
  EXPECT_EQ(d.Next(5, "b"), Backlog::kSend);
  EXPECT_FALSE(d.backlog_done());
  EXPECT_EQ(d.Next(6, "c"), Backlog::kSkip);  // sent live
  EXPECT_EQ(d.Next(7, "a"), Backlog::kSend);  // a is free after it
  EXPECT_TRUE(d.Live(10, "a"));
  EXPECT_EQ(d.Next(8, "c"), Backlog::kSkip);
  EXPECT_EQ(d.Next(9, "b"), Backlog::kSend);
  EXPECT_EQ(d.Next(11, "b"), Backlog::kStop);  // not read by the live cursor yet
  EXPECT_EQ(d.backlog_after(), 9u);
  EXPECT_TRUE(d.backlog_done());
  EXPECT_TRUE(d.Live(11, "b"));
}

TEST(DrainOrderTest, TooManyTopicsDrainInPlainOrderThenGoLive) {
  DrainOrder d;
  d.Reset(3, std::nullopt);
  EXPECT_TRUE(d.all_held());
  EXPECT_EQ(d.Next(1, "x"), Backlog::kSend);
  EXPECT_EQ(d.Next(2, "y"), Backlog::kSend);
  EXPECT_FALSE(d.backlog_done());
  EXPECT_EQ(d.Next(3, "x"), Backlog::kSend);
  EXPECT_FALSE(d.all_held());
  EXPECT_TRUE(d.backlog_done());
  EXPECT_EQ(d.live_after(), 3u);
  EXPECT_TRUE(d.Live(4, "x"));

  std::map<std::string, uint64_t> many;
  for (size_t i = 0; i <= kMaxBacklogTopics; ++i) many["t" + std::to_string(i)] = i + 1;
  d.Reset(kMaxBacklogTopics + 1, many);
  EXPECT_TRUE(d.all_held());
}

TEST(DrainOrderTest, ATopicWhoseHeldRowWasDroppedIsFreedByTheCursorPassing) {
  // Backlog rows 1..5, a's last (5) dropped by the outbox's bound before it went.
  DrainOrder d;
  d.Reset(5, std::map<std::string, uint64_t>{{"a", 5}, {"b", 4}});
  for (uint64_t seq : {1, 2, 3}) EXPECT_EQ(d.Next(seq, "b"), Backlog::kSend);
  EXPECT_EQ(d.Next(4, "b"), Backlog::kSend);
  // The outbox has nothing after 4: the cursor caught up, and a is free.
  d.CaughtUp();
  EXPECT_TRUE(d.backlog_done());
  EXPECT_TRUE(d.Live(6, "a"));
  // Held, then its row dropped while the live cursor moved on: freed when it comes again.
  d.Reset(2, std::map<std::string, uint64_t>{{"a", 2}});
  EXPECT_EQ(d.Next(1, "a"), Backlog::kSend);
  EXPECT_EQ(d.Next(2, "a"), Backlog::kSend);
  EXPECT_TRUE(d.Live(3, "a"));
}

// Random outboxes, random interleavings of the two cursors and of new rows: every row goes
// exactly once, and each topic in order.
TEST(DrainOrderTest, EveryTopicStaysInOrderWhateverTheInterleaving) {
  std::mt19937_64 rng(7);
  for (int round = 0; round < 300; ++round) {
    const int topics = 1 + static_cast<int>(rng() % 5);
    std::vector<std::string> rows = {""};  // by seq, from 1
    auto append = [&] { rows.push_back("t" + std::to_string(rng() % topics)); };
    const size_t backlog = rng() % 30;
    for (size_t i = 0; i < backlog; ++i) append();
    std::map<std::string, uint64_t> last;
    for (uint64_t s = 1; s < rows.size(); ++s) last[rows[s]] = s;
    DrainOrder d;
    d.Reset(backlog, last);
    std::vector<uint64_t> sent;
    std::set<uint64_t> gone;  // sent (the outbox deletes them once acknowledged)
    auto send = [&](uint64_t seq) {
      EXPECT_TRUE(gone.insert(seq).second) << "row " << seq << " sent twice";
      sent.push_back(seq);
    };
    for (int step = 0; step < 200; ++step) {
      const int what = static_cast<int>(rng() % 3);
      if (what == 0 && rows.size() < 80) {
        append();
      } else if (what == 1 && d.live_after() + 1 < rows.size()) {
        const uint64_t seq = d.live_after() + 1;
        if (d.Live(seq, rows[seq])) send(seq);
      } else if (what == 2 && !d.backlog_done()) {
        // The backlog cursor reads the rows still in the outbox after it.
        uint64_t seq = d.backlog_after() + 1;
        while (seq < rows.size() && gone.contains(seq)) ++seq;
        if (seq >= rows.size()) {
          d.CaughtUp();
          continue;
        }
        const Backlog b = d.Next(seq, rows[seq]);
        if (b == Backlog::kSend) send(seq);
      }
    }
    // Drain everything.
    for (int guard = 0; guard < 10000 && gone.size() + 1 < rows.size(); ++guard) {
      if (d.live_after() + 1 < rows.size()) {
        const uint64_t seq = d.live_after() + 1;
        if (d.Live(seq, rows[seq])) send(seq);
        continue;
      }
      uint64_t seq = d.backlog_after() + 1;
      while (seq < rows.size() && gone.contains(seq)) ++seq;
      if (seq >= rows.size()) {
        d.CaughtUp();
        continue;
      }
      if (d.Next(seq, rows[seq]) == Backlog::kSend) send(seq);
    }
    ASSERT_EQ(sent.size() + 1, rows.size()) << "round " << round;
    std::map<std::string, uint64_t> previous;
    for (uint64_t seq : sent) {
      EXPECT_GT(seq, previous[rows[seq]])
          << "round " << round << ": topic " << rows[seq] << " out of order";
      previous[rows[seq]] = seq;
    }
  }
}

TEST(DrainOrderTest, ThePaceLetsABurstThenTheRate) {
  Pace pace(100);  // 100 rows/s: a burst of 10
  EXPECT_EQ(pace.Take(50, 0), 10u);
  EXPECT_EQ(pace.Take(50, 0), 0u);
  EXPECT_EQ(pace.Wait(0), 10'000'000);  // 10 ms for the next
  EXPECT_EQ(pace.Take(50, 50'000'000), 5u);
  EXPECT_EQ(pace.Take(50, 10'000'000'000), 10u);  // no more than the burst after a pause
  Pace unlimited(0);
  EXPECT_EQ(unlimited.Take(1000, 0), 1000u);
  EXPECT_EQ(unlimited.Wait(0), 0);
}

}  // namespace
}  // namespace hivemesh::bus
