// DrainOrder: which outbox row goes to the MQTT broker next (docs/insights.md, "Live before
// backlog"): live insights first, the backlog behind them, and each topic in order.
//
// At a (re)connect every row waiting in the outbox is the backlog (seq <= backlog_end). From
// then on the bridge reads the outbox with two cursors:
//
// - the live cursor reads rows past backlog_end in order. A row whose topic has no row left in
//   the backlog goes at once; a row whose topic still has one is deferred: it goes with the
//   backlog, after the rows of its topic before it.
// - the backlog cursor reads rows in order from the oldest: backlog rows go (at the bridge's
//   backlog rate), deferred rows go in their turn, rows the live cursor sent are skipped, and it
//   stops at the live cursor (a row past it has not been seen yet). A topic whose last deferred
//   or backlog row has gone is free again: its next rows are live.
//
// So the broker gets every topic's rows in the order they were appended, and a topic that had
// nothing waiting is not held behind those that had. When the backlog holds more topics than
// kMaxBacklogTopics, every topic is held (the outbox drains in plain order), which bounds the
// memory this takes.
//
// Pure: rows' (seq, topic) in, decisions out. Thread safety: none (the bridge's lock).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace hivemesh::bus {

inline constexpr size_t kMaxBacklogTopics = 10000;

class DrainOrder {
 public:
  // At a (re)connect: rows up to `backlog_end` are the backlog; `last_in_backlog` is each of its
  // topics' last row (nullopt, or more than kMaxBacklogTopics: every topic is held).
  void Reset(uint64_t backlog_end, std::optional<std::map<std::string, uint64_t>> last_in_backlog);

  // The live cursor reached row `seq` of `topic` (> backlog_end, rows in order): true if it goes
  // now, false if it is deferred to the backlog cursor.
  bool Live(uint64_t seq, std::string_view topic);

  enum class Backlog { kSend, kSkip, kStop };
  // The backlog cursor reached row `seq` of `topic` (rows in order): send it, skip it (the live
  // cursor sent it), or stop (it is past the live cursor: not seen yet; it is not taken).
  Backlog Next(uint64_t seq, std::string_view topic);

  // Where the cursors are: the next rows to read are those after these.
  uint64_t live_after() const { return live_after_; }
  uint64_t backlog_after() const { return backlog_after_; }
  // Nothing is held any more: the backlog has gone and no topic waits.
  bool backlog_done() const {
    return backlog_after_ >= backlog_end_ && held_.empty() && !all_held_;
  }
  // True while every row goes through the backlog cursor (the live cursor is not read).
  bool all_held() const { return all_held_; }
  size_t held_topics() const { return held_.size(); }
  // The backlog cursor found no row after it: the outbox holds nothing up to the live cursor
  // (rows sent and acknowledged, or dropped by its bound). It moves there, and the topics held
  // (whose last rows went that way) are free.
  void CaughtUp();

 private:
  uint64_t backlog_end_ = 0;
  uint64_t live_after_ = 0;
  uint64_t backlog_after_ = 0;
  bool all_held_ = false;  // too many topics: every row goes through the backlog cursor
  // Held topics: the last row of each that goes through the backlog cursor.
  std::map<std::string, uint64_t, std::less<>> held_;
};

// The backlog's pace: a token bucket of `per_second` rows (0: no limit) holding at most a tenth
// of a second's worth (at least one). Times in nanoseconds of a steady clock.
class Pace {
 public:
  explicit Pace(double per_second) : rate_(per_second) {}
  // How many rows may go now (at most `want`), taken from the bucket.
  size_t Take(size_t want, int64_t now_ns);
  // Nanoseconds until one row may go (0: now).
  int64_t Wait(int64_t now_ns);

 private:
  void Refill(int64_t now_ns);
  const double rate_;
  double tokens_ = 0;
  int64_t refilled_ns_ = -1;
};

}  // namespace hivemesh::bus
