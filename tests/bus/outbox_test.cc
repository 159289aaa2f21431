// Outbox (bus/outbox.h) on real SQLite files: order and acknowledgements, rows that survive a
// reopen and a process that dies without closing, the size bound with either policy, a full
// disk, and a file that is not an outbox.
#include "bus/outbox.h"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace hivemesh::bus {
namespace {

class OutboxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/outbox_test.XXXXXX";
    dir_ = mkdtemp(tmpl);
    path_ = dir_ + "/outbox.db";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::unique_ptr<Outbox> Open(Outbox::Options o = {}) {
    absl::StatusOr<std::unique_ptr<Outbox>> box = Outbox::Open(path_, o);
    EXPECT_TRUE(box.ok()) << box.status();
    return box.ok() ? *std::move(box) : nullptr;
  }
  std::string dir_, path_;
};

std::vector<uint64_t> Seqs(const std::vector<Outbox::Row>& rows) {
  std::vector<uint64_t> out;
  for (const Outbox::Row& r : rows) out.push_back(r.seq);
  return out;
}

TEST_F(OutboxTest, RowsKeepTheirOrderUntilAcknowledgedAndSurviveAReopen) {
  {
    std::unique_ptr<Outbox> box = Open();
    for (int i = 1; i <= 5; ++i) {
      absl::StatusOr<uint64_t> seq = box->Append(i % 2 ? "a" : "b", "id" + std::to_string(i),
                                                 "{\"n\":" + std::to_string(i) + "}");
      ASSERT_TRUE(seq.ok()) << seq.status();
      EXPECT_EQ(*seq, static_cast<uint64_t>(i));
    }
    absl::StatusOr<std::vector<Outbox::Row>> rows = box->After(0, 3);
    ASSERT_TRUE(rows.ok());
    EXPECT_EQ(Seqs(*rows), (std::vector<uint64_t>{1, 2, 3}));
    EXPECT_EQ((*rows)[1].topic, "b");
    EXPECT_EQ((*rows)[1].id, "id2");
    EXPECT_EQ((*rows)[1].document, "{\"n\":2}");
    EXPECT_EQ(Seqs(*box->After(3, 10)), (std::vector<uint64_t>{4, 5}));
    ASSERT_TRUE(box->Remove(1).ok());
    ASSERT_TRUE(box->Remove(5).ok());
    EXPECT_TRUE(box->Remove(5).ok()) << "a row already gone";
    EXPECT_EQ(box->rows(), 3u);
  }
  struct stat st {};
  ASSERT_EQ(::stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  std::unique_ptr<Outbox> box = Open();
  EXPECT_EQ(box->rows(), 3u);
  EXPECT_EQ(box->bytes(), 21u);
  EXPECT_EQ(Seqs(*box->After(0, 10)), (std::vector<uint64_t>{2, 3, 4}));
  EXPECT_EQ(*box->Append("a", "id6", "{}"), 6u) << "a seq is never used twice";
}

TEST_F(OutboxTest, WhatWasAppendedSurvivesAProcessThatDiesWithoutClosing) {
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    absl::StatusOr<std::unique_ptr<Outbox>> box = Outbox::Open(path_, {});
    for (int i = 0; i < 100 && box.ok(); ++i) {
      if (!(*box)->Append("t", std::to_string(i), "{}").ok()) _exit(2);
    }
    _exit(box.ok() ? 0 : 1);  // no destructor, no close: as if killed
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  std::unique_ptr<Outbox> box = Open();
  EXPECT_EQ(box->rows(), 100u);
  absl::StatusOr<std::vector<Outbox::Row>> rows = box->After(0, 1000);
  ASSERT_EQ(rows->size(), 100u);
  EXPECT_EQ(rows->back().id, "99");
}

TEST_F(OutboxTest, AFullOutboxDropsTheOldestOrRefusesTheNewByItsPolicy) {
  const std::string doc(100, 'x');
  {
    std::unique_ptr<Outbox> box = Open({.max_bytes = 1000});
    for (int i = 1; i <= 15; ++i) ASSERT_TRUE(box->Append("t", std::to_string(i), doc).ok());
    EXPECT_EQ(box->rows(), 10u);
    EXPECT_EQ(box->bytes(), 1000u);
    EXPECT_EQ(box->dropped(), 5u);
    EXPECT_EQ(box->After(0, 1)->front().seq, 6u);
    EXPECT_EQ(box->Append("t", "big", std::string(1001, 'x')).status().code(),
              absl::StatusCode::kResourceExhausted);
    EXPECT_EQ(box->rows(), 10u);
  }
  std::unique_ptr<Outbox> box =
      Open({.max_bytes = 1000, .when_full = Outbox::WhenFull::kRefuseNew});
  absl::StatusOr<uint64_t> refused = box->Append("t", "16", doc);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(refused.status().message().find("full"), std::string_view::npos);
  EXPECT_EQ(box->rows(), 10u);
  EXPECT_EQ(box->After(0, 1)->front().seq, 6u) << "nothing was dropped";
}

TEST_F(OutboxTest, AFullDiskIsAClearErrorAndLosesNothingAccepted) {
  // A database limited to a few pages stands for a disk with no room left.
  std::unique_ptr<Outbox> box = Open({.max_pages = 8});
  const std::string doc(1000, 'x');
  int accepted = 0;
  absl::Status last;
  for (int i = 0; i < 100 && last.ok(); ++i) {
    absl::StatusOr<uint64_t> seq = box->Append("t", std::to_string(i), doc);
    last = seq.status();
    if (seq.ok()) ++accepted;
  }
  ASSERT_FALSE(last.ok()) << "8 pages cannot hold 100 KB";
  EXPECT_EQ(last.code(), absl::StatusCode::kResourceExhausted) << last;
  EXPECT_NE(last.message().find(path_), std::string_view::npos) << last;
  EXPECT_GT(accepted, 0);
  EXPECT_EQ(box->rows(), static_cast<uint64_t>(accepted));
  box.reset();
  box = Open();
  EXPECT_EQ(box->rows(), static_cast<uint64_t>(accepted));
  EXPECT_EQ(box->After(0, 1000)->size(), static_cast<size_t>(accepted));
}

TEST_F(OutboxTest, AFileThatIsNotAnOutboxIsRefusedByName) {
  std::ofstream(path_) << std::string(4096, 'z');
  absl::StatusOr<std::unique_ptr<Outbox>> box = Outbox::Open(path_, {});
  ASSERT_FALSE(box.ok());
  EXPECT_NE(box.status().message().find(path_), std::string_view::npos) << box.status();
  EXPECT_FALSE(Outbox::Open(dir_ + "/no/such/folder/outbox.db", {}).ok());
}

TEST_F(OutboxTest, ASnapshotSaysEachTopicsLastRowUpToALimit) {
  std::unique_ptr<Outbox> box = Open();
  absl::StatusOr<Outbox::Waiting> empty = box->Snapshot(10);
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_EQ(empty->last, 0u);
  ASSERT_TRUE(empty->topics.has_value());
  EXPECT_TRUE(empty->topics->empty());
  for (const char* topic : {"a", "b", "a", "c", "a"}) {
    ASSERT_TRUE(box->Append(topic, "id", "{}").ok());
  }
  ASSERT_TRUE(box->Remove(5).ok());  // acknowledged: a's last waiting row is 3
  absl::StatusOr<Outbox::Waiting> now = box->Snapshot(3);
  ASSERT_TRUE(now.ok()) << now.status();
  EXPECT_EQ(now->last, 4u);
  ASSERT_TRUE(now->topics.has_value());
  EXPECT_EQ(*now->topics, (std::map<std::string, uint64_t>{{"a", 3}, {"b", 2}, {"c", 4}}));
  now = box->Snapshot(2);  // more topics than asked for: none are listed
  ASSERT_TRUE(now.ok());
  EXPECT_FALSE(now->topics.has_value());
}

}  // namespace
}  // namespace hivemesh::bus
