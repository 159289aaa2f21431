// Outbox: the insights a node has accepted for its MQTT broker and not yet seen acknowledged
// (docs/insights.md, "Store-and-forward to the cloud over MQTT"), in an SQLite database in WAL
// mode under the node's state directory.
//
// - Append commits a row before it returns: a node stopped or killed right after loses nothing
//   appended (WAL with synchronous=NORMAL: durable across a crash of the process; a power cut may
//   lose the last commits). Rows keep the order they were appended in (`seq`), so each topic's
//   insights leave in the order they were published.
// - A full disk: appends fail (RESOURCE_EXHAUSTED, naming the file), and what waits still
//   drains. The outbox holds a reserve file of disk space (Options::reserve_bytes); when a delete
//   finds the disk full it gives the reserve up and checkpoints the WAL, so the delete goes
//   through. Without its reserve the outbox refuses appends (their space is what lets it drain)
//   until it can take the reserve again (trying at most once a second, after emptying the WAL
//   and giving the free pages back: auto_vacuum=INCREMENTAL). The WAL is kept small
//   (checkpoints every 256 pages, truncated to 1 MiB) so that the reserve covers a checkpoint.
// - Bounded: the documents' bytes stay within max_bytes. When an append would go past it,
//   kDropOldest deletes the oldest rows first (counted in dropped()), kRefuseNew refuses the new
//   one (RESOURCE_EXHAUSTED). A document over max_bytes is refused either way.
// - Errors of the database (a full disk, a file that is not ours) are statuses naming the file;
//   a failed append leaves the outbox as it was.
//
// Thread safety: every member may be called from any thread (one connection, under a mutex).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

struct sqlite3;

namespace hivemesh::bus {

class Outbox {
 public:
  enum class WhenFull { kDropOldest, kRefuseNew };
  struct Options {
    uint64_t max_bytes = uint64_t{1} << 30;  // 1 GiB of documents
    WhenFull when_full = WhenFull::kDropOldest;
    // The database's size limit in pages (PRAGMA max_page_count); 0: none but the disk's. Past
    // it SQLite answers as on a full disk (tests use it to make one).
    uint64_t max_pages = 0;
    // Disk space held in a file beside the database (<path>-reserve), given up when the disk
    // is full so that acknowledged rows can still be deleted (a delete writes to the WAL); 0:
    // none.
    uint64_t reserve_bytes = uint64_t{2} << 20;
  };
  struct Row {
    uint64_t seq = 0;  // the append order, from 1, never reused
    std::string topic;
    std::string id;        // the insight's id
    std::string document;  // the insight's document (bus/insight.h)
  };

  // Opens (or creates, 0600) the database at `path`.
  static absl::StatusOr<std::unique_ptr<Outbox>> Open(const std::string& path, Options options);
  ~Outbox();
  Outbox(const Outbox&) = delete;
  Outbox& operator=(const Outbox&) = delete;

  // Appends a row, committed when this returns; its seq.
  absl::StatusOr<uint64_t> Append(std::string_view topic, std::string_view id,
                                  std::string_view document);
  // Up to `n` rows with seq > `after`, oldest first.
  absl::StatusOr<std::vector<Row>> After(uint64_t after, size_t n) const;
  // What waits now: the last row's seq (0: none) and each topic's last row, or nullopt for the
  // topics when there are more than `max_topics` of them (the bridge's DrainOrder).
  struct Waiting {
    uint64_t last = 0;
    std::optional<std::map<std::string, uint64_t>> topics;
  };
  absl::StatusOr<Waiting> Snapshot(size_t max_topics) const;
  // Deletes the row `seq` (its broker acknowledged it); a row already gone is no error.
  absl::Status Remove(uint64_t seq);

  uint64_t rows() const;
  uint64_t bytes() const;    // of the documents waiting
  uint64_t dropped() const;  // rows deleted to make room since this object was opened

 private:
  Outbox(sqlite3* db, std::string path, Options options)
      : db_(db), path_(std::move(path)), options_(options) {}
  absl::Status Fail(std::string_view what) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Exec(const char* sql) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Deletes the oldest rows until `needed` more bytes fit.
  absl::Status MakeRoom(uint64_t needed) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The reserve file: made (true if it holds reserve_bytes), or given up.
  bool TakeReserve() const;
  void ReleaseReserve() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // DELETE FROM outbox WHERE seq = `seq`: the sqlite result code.
  int DeleteRow(uint64_t seq) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  sqlite3* const db_;
  const std::string path_;
  const Options options_;
  uint64_t rows_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t dropped_ ABSL_GUARDED_BY(mu_) = 0;
  bool reserved_ ABSL_GUARDED_BY(mu_) = false;  // the reserve file holds its space
  // Without it, appends try to take it again at most once a second.
  std::chrono::steady_clock::time_point next_reserve_try_ ABSL_GUARDED_BY(mu_){};
};

}  // namespace hivemesh::bus
