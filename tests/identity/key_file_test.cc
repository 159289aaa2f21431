#include "identity/key_file.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace hivemesh::identity {
namespace {

namespace fs = std::filesystem;

class KeyFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "hivemesh-key-XXXXXX").string();
    dir_ = ::mkdtemp(tmpl.data());
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string dir_;
};

TEST_F(KeyFileTest, CreatesTheKeyOnceAndReadsItBackAfterwards) {
  const std::string path = dir_ + "/state/node.key";
  absl::StatusOr<NodeKey> first = LoadOrCreateNodeKey(path);
  ASSERT_TRUE(first.ok()) << first.status();
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat((dir_ + "/state").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  absl::StatusOr<NodeKey> again = LoadOrCreateNodeKey(path);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->public_key(), first->public_key());
  // No temporary file is left behind.
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir_ + "/state")) {
    (void)e;
    ++files;
  }
  EXPECT_EQ(files, 1);
}

TEST_F(KeyFileTest, RefusesAKeyOthersCanReadAndSaysWhatToDo) {
  const std::string path = dir_ + "/node.key";
  ASSERT_TRUE(LoadOrCreateNodeKey(path).ok());
  ASSERT_EQ(::chmod(path.c_str(), 0644), 0);
  absl::StatusOr<NodeKey> key = LoadOrCreateNodeKey(path);
  ASSERT_FALSE(key.ok());
  EXPECT_NE(key.status().message().find("chmod 600"), std::string::npos) << key.status();
  EXPECT_NE(key.status().message().find("644"), std::string::npos) << key.status();
}

TEST_F(KeyFileTest, RefusesAFileThatIsNotAKey) {
  const std::string path = dir_ + "/node.key";
  std::ofstream(path) << "garbage";
  ASSERT_EQ(::chmod(path.c_str(), 0600), 0);
  absl::StatusOr<NodeKey> key = LoadOrCreateNodeKey(path);
  ASSERT_FALSE(key.ok());
  EXPECT_NE(key.status().message().find(path), std::string::npos) << key.status();
}

TEST_F(KeyFileTest, AnUnwritableFolderIsAClearError) {
  if (::geteuid() == 0) {
    // Root writes anywhere; a path under a regular file cannot be created by anyone.
    std::ofstream(dir_ + "/file") << "x";
    absl::StatusOr<NodeKey> key = LoadOrCreateNodeKey(dir_ + "/file/sub/node.key");
    ASSERT_FALSE(key.ok());
    EXPECT_NE(key.status().message().find("--state-dir"), std::string::npos) << key.status();
    return;
  }
  ASSERT_EQ(::chmod(dir_.c_str(), 0500), 0);
  absl::StatusOr<NodeKey> key = LoadOrCreateNodeKey(dir_ + "/sub/node.key");
  ::chmod(dir_.c_str(), 0700);
  ASSERT_FALSE(key.ok());
  EXPECT_NE(key.status().message().find("--state-dir"), std::string::npos) << key.status();
}

}  // namespace
}  // namespace hivemesh::identity
