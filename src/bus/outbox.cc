#include "bus/outbox.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <chrono>
#include <utility>

#include "base/strings.h"

namespace hivemesh::bus {
namespace {

// A prepared statement, finalized at the end of its scope.
class Statement {
 public:
  Statement(sqlite3* db, const char* sql) {
    rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr);
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  bool ok() const { return rc_ == SQLITE_OK; }
  sqlite3_stmt* get() { return stmt_; }
  void Text(int i, std::string_view s) {
    sqlite3_bind_text(stmt_, i, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT);
  }
  void Blob(int i, std::string_view s) {
    sqlite3_bind_blob(stmt_, i, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT);
  }
  void Int(int i, int64_t v) { sqlite3_bind_int64(stmt_, i, v); }
  int Step() { return sqlite3_step(stmt_); }
  int64_t Column(int i) { return sqlite3_column_int64(stmt_, i); }
  std::string ColumnText(int i) {
    const void* p = sqlite3_column_blob(stmt_, i);
    const int n = sqlite3_column_bytes(stmt_, i);
    return p == nullptr ? std::string()
                        : std::string(static_cast<const char*>(p), static_cast<size_t>(n));
  }

 private:
  sqlite3_stmt* stmt_ = nullptr;
  int rc_ = SQLITE_ERROR;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Outbox>> Outbox::Open(const std::string& path, Options options) {
  // Made here first so that it is 0600 (SQLite gives its journal files the same mode).
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return absl::UnavailableError(
        StrCat("the insight outbox ", path, " cannot be opened: ", std::strerror(errno)));
  }
  ::close(fd);
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr) !=
      SQLITE_OK) {
    const std::string why = db != nullptr ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    return absl::UnavailableError(StrCat("the insight outbox ", path, " cannot be opened: ", why));
  }
  std::unique_ptr<Outbox> box(new Outbox(db, path, options));
  absl::MutexLock lock(&box->mu_);
  sqlite3_busy_timeout(db, 5000);
  {
    // SQLite answers the mode it is in: a file it cannot put in WAL mode stays in another.
    Statement wal(db, "PRAGMA journal_mode=WAL");
    if (!wal.ok() || wal.Step() != SQLITE_ROW) return box->Fail("setting WAL mode");
    if (wal.ColumnText(0) != "wal") {
      return absl::UnavailableError(StrCat("the insight outbox ", path,
                                           ": SQLite keeps it in journal mode '", wal.ColumnText(0),
                                           "', not WAL"));
    }
  }
  // A small WAL: the reserve covers a checkpoint of it (see the header).
  // Free pages can go back to the disk (a new file only: the mode is set before its table).
  for (const char* sql : {"PRAGMA auto_vacuum=INCREMENTAL", "PRAGMA synchronous=NORMAL",
                          "PRAGMA wal_autocheckpoint=256", "PRAGMA journal_size_limit=1048576",
                          "CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY "
                          "AUTOINCREMENT, topic TEXT NOT NULL, id TEXT NOT NULL, document BLOB "
                          "NOT NULL)"}) {
    if (absl::Status s = box->Exec(sql); !s.ok()) return s;
  }
  if (options.max_pages > 0) {
    const std::string limit = StrCat("PRAGMA max_page_count=", options.max_pages);
    if (absl::Status s = box->Exec(limit.c_str()); !s.ok()) return s;
  }
  Statement count(db, "SELECT COUNT(*), COALESCE(SUM(LENGTH(document)), 0) FROM outbox");
  if (!count.ok() || count.Step() != SQLITE_ROW) return box->Fail("reading it");
  box->rows_ = static_cast<uint64_t>(count.Column(0));
  box->bytes_ = static_cast<uint64_t>(count.Column(1));
  // Without it (a disk full already) the outbox drains what waits and takes nothing new.
  box->reserved_ = options.reserve_bytes == 0 || box->TakeReserve();
  return box;
}

bool Outbox::TakeReserve() const {
  const std::string reserve = path_ + "-reserve";
  const int fd = ::open(reserve.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  const bool held = ::posix_fallocate(fd, 0, static_cast<off_t>(options_.reserve_bytes)) == 0;
  ::close(fd);
  if (!held) ::unlink(reserve.c_str());
  return held;
}

void Outbox::ReleaseReserve() {
  ::unlink((path_ + "-reserve").c_str());
  reserved_ = false;
}

int Outbox::DeleteRow(uint64_t seq) {
  Statement remove(db_, "DELETE FROM outbox WHERE seq = ?");
  if (!remove.ok()) return sqlite3_errcode(db_);
  remove.Int(1, static_cast<int64_t>(seq));
  const int rc = remove.Step();
  return rc == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(db_);
}

Outbox::~Outbox() { sqlite3_close(db_); }

absl::Status Outbox::Fail(std::string_view what) const {
  const int code = sqlite3_errcode(db_);
  const std::string message =
      StrCat("the insight outbox ", path_, ": ", what, ": ", sqlite3_errmsg(db_));
  if (code == SQLITE_FULL) return absl::ResourceExhaustedError(message);
  return absl::UnavailableError(message);
}

absl::Status Outbox::Exec(const char* sql) {
  char* error = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &error) == SQLITE_OK) return absl::OkStatus();
  sqlite3_free(error);
  return Fail(sql);
}

absl::Status Outbox::MakeRoom(uint64_t needed) {
  while (bytes_ + needed > options_.max_bytes && rows_ > 0) {
    int64_t last = 0;
    uint64_t freed = 0, gone = 0;
    {
      Statement oldest(db_, "SELECT seq, LENGTH(document) FROM outbox ORDER BY seq LIMIT 256");
      if (!oldest.ok()) return Fail("finding the oldest rows");
      while (bytes_ - freed + needed > options_.max_bytes && oldest.Step() == SQLITE_ROW) {
        last = oldest.Column(0);
        freed += static_cast<uint64_t>(oldest.Column(1));
        ++gone;
      }
    }
    if (gone == 0) {
      return absl::InternalError(StrCat("the insight outbox ", path_,
                                        ": its counts did not match its rows; counted again"));
    }
    Statement drop(db_, "DELETE FROM outbox WHERE seq <= ?");
    drop.Int(1, last);
    if (!drop.ok() || drop.Step() != SQLITE_DONE) return Fail("dropping the oldest rows");
    bytes_ -= freed;
    rows_ -= gone;
    dropped_ += gone;
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> Outbox::Append(std::string_view topic, std::string_view id,
                                        std::string_view document) {
  absl::MutexLock lock(&mu_);
  if (!reserved_ && std::chrono::steady_clock::now() >= next_reserve_try_) {
    // Space for the reserve: the WAL emptied, the free pages of what drained given back.
    next_reserve_try_ = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    sqlite3_exec(db_, "PRAGMA wal_checkpoint(TRUNCATE)", nullptr, nullptr, nullptr);
    sqlite3_exec(db_, "PRAGMA incremental_vacuum", nullptr, nullptr, nullptr);
    sqlite3_exec(db_, "PRAGMA wal_checkpoint(TRUNCATE)", nullptr, nullptr, nullptr);
    reserved_ = TakeReserve();
  }
  if (!reserved_) {
    return absl::ResourceExhaustedError(StrCat(
        "the insight outbox ", path_,
        ": the disk is full; new insights are refused until what waits has drained or space is "
        "freed (the outbox keeps ",
        options_.reserve_bytes >> 20, " MiB free to drain)"));
  }
  if (document.size() > options_.max_bytes) {
    return absl::ResourceExhaustedError(StrCat("an insight of ", document.size(),
                                               " bytes does not fit the outbox's ",
                                               options_.max_bytes));
  }
  if (bytes_ + document.size() > options_.max_bytes && options_.when_full == WhenFull::kRefuseNew) {
    return absl::ResourceExhaustedError(
        StrCat("the insight outbox is full (", bytes_, " bytes waiting for the broker)"));
  }
  const uint64_t rows = rows_, bytes = bytes_, dropped = dropped_;
  if (absl::Status s = Exec("BEGIN IMMEDIATE"); !s.ok()) return s;
  absl::Status made = MakeRoom(document.size());
  int64_t seq = 0;
  if (made.ok()) {
    Statement insert(db_, "INSERT INTO outbox (topic, id, document) VALUES (?, ?, ?)");
    if (insert.ok()) {
      insert.Text(1, topic);
      insert.Text(2, id);
      insert.Blob(3, document);
    }
    if (!insert.ok() || insert.Step() != SQLITE_DONE) {
      made = Fail("appending");
    } else {
      seq = sqlite3_last_insert_rowid(db_);
    }
  }
  if (made.ok()) made = Exec("COMMIT");
  if (!made.ok()) {
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    // As before the append: counted again from the table (which also mends counts that had
    // drifted from it), or restored.
    Statement count(db_, "SELECT COUNT(*), COALESCE(SUM(LENGTH(document)), 0) FROM outbox");
    if (count.ok() && count.Step() == SQLITE_ROW) {
      rows_ = static_cast<uint64_t>(count.Column(0));
      bytes_ = static_cast<uint64_t>(count.Column(1));
    } else {
      rows_ = rows;
      bytes_ = bytes;
    }
    dropped_ = dropped;
    return made;
  }
  ++rows_;
  bytes_ += document.size();
  return static_cast<uint64_t>(seq);
}

absl::StatusOr<std::vector<Outbox::Row>> Outbox::After(uint64_t after, size_t n) const {
  absl::MutexLock lock(&mu_);
  Statement select(
      db_, "SELECT seq, topic, id, document FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?");
  if (!select.ok()) return Fail("reading");
  select.Int(1, static_cast<int64_t>(after));
  select.Int(2, static_cast<int64_t>(n));
  std::vector<Row> out;
  int rc = SQLITE_ROW;
  while ((rc = select.Step()) == SQLITE_ROW) {
    out.push_back(Row{static_cast<uint64_t>(select.Column(0)), select.ColumnText(1),
                      select.ColumnText(2), select.ColumnText(3)});
  }
  if (rc != SQLITE_DONE) return Fail("reading");
  return out;
}

absl::StatusOr<Outbox::Waiting> Outbox::Snapshot(size_t max_topics) const {
  absl::MutexLock lock(&mu_);  // one view: no append in between
  Waiting out;
  Statement last(db_, "SELECT COALESCE(MAX(seq), 0) FROM outbox");
  if (!last.ok() || last.Step() != SQLITE_ROW) return Fail("reading");
  out.last = static_cast<uint64_t>(last.Column(0));
  Statement topics(db_, "SELECT topic, MAX(seq) FROM outbox GROUP BY topic LIMIT ?");
  if (!topics.ok()) return Fail("reading");
  topics.Int(1, static_cast<int64_t>(max_topics) + 1);
  std::map<std::string, uint64_t> found;
  int rc = SQLITE_ROW;
  while ((rc = topics.Step()) == SQLITE_ROW) {
    found[topics.ColumnText(0)] = static_cast<uint64_t>(topics.Column(1));
  }
  if (rc != SQLITE_DONE) return Fail("reading");
  if (found.size() <= max_topics) out.topics = std::move(found);
  return out;
}

absl::Status Outbox::Remove(uint64_t seq) {
  absl::MutexLock lock(&mu_);
  uint64_t length = 0;
  {
    // Finalized before the delete: a statement still reading would keep a checkpoint from
    // resetting the WAL.
    Statement size(db_, "SELECT LENGTH(document) FROM outbox WHERE seq = ?");
    if (!size.ok()) return Fail("removing");
    size.Int(1, static_cast<int64_t>(seq));
    if (size.Step() != SQLITE_ROW) return absl::OkStatus();  // gone already
    length = static_cast<uint64_t>(size.Column(0));
  }
  int rc = DeleteRow(seq);
  if (rc == SQLITE_FULL) {
    // A delete writes to the WAL: the reserve's space lets it, once the WAL is checkpointed.
    if (reserved_) ReleaseReserve();
    sqlite3_exec(db_, "PRAGMA wal_checkpoint(TRUNCATE)", nullptr, nullptr, nullptr);
    rc = DeleteRow(seq);
  }
  if (rc != SQLITE_OK) return Fail("removing");
  --rows_;
  bytes_ -= length;
  return absl::OkStatus();
}

uint64_t Outbox::rows() const {
  absl::MutexLock lock(&mu_);
  return rows_;
}

uint64_t Outbox::bytes() const {
  absl::MutexLock lock(&mu_);
  return bytes_;
}

uint64_t Outbox::dropped() const {
  absl::MutexLock lock(&mu_);
  return dropped_;
}

}  // namespace hivemesh::bus
