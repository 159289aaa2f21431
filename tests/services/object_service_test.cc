// ObjectService (services/object_service.h): applies all or nothing, kept across a reopen,
// peers' objects taken only when they are what they say, and the fingerprint nodes announce.
#include "services/object_service.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace hivemesh::services {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr int64_t kT0 = 1'800'000'000'000;

std::string ServiceYaml(const std::string& name) {
  return "apiVersion: v1\nkind: Service\nmetadata:\n  name: " + name +
         "\nspec:\n  selector:\n    app: web\n  ports:\n  - port: 80\n";
}

class ObjectServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "hivemesh-objects-XXXXXX").string();
    dir_ = ::mkdtemp(tmpl.data());
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::unique_ptr<ObjectService> Open(const std::string& self = "gw-1") {
    absl::StatusOr<std::unique_ptr<ObjectService>> s = ObjectService::Open(dir_ + "/objects", self);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *std::move(s) : nullptr;
  }
  std::string dir_;
};

TEST_F(ObjectServiceTest, AppliesAllOrNothingAndKeepsThemAcrossAReopen) {
  std::unique_ptr<ObjectService> s = Open();
  int changes = 0;
  s->OnChange([&](bool local) { changes += local ? 1 : 100; });
  EXPECT_EQ(s->Fingerprint(), 0u) << "nothing announced for an empty store";
  ASSERT_TRUE(s->Apply(ServiceYaml("web") + "---\n" + ServiceYaml("api"), kT0).ok());
  EXPECT_EQ(changes, 1);
  EXPECT_NE(s->Fingerprint(), 0u);
  // One bad document: nothing of the manifest is applied.
  EXPECT_FALSE(s->Apply(ServiceYaml("db") + "---\nkind: Pod\n", kT0 + 1).ok());
  EXPECT_FALSE(s->Find(Kind::kService, "db").has_value());
  EXPECT_EQ(changes, 1);
  // A delete by manifest naming one that is not there deletes nothing.
  EXPECT_EQ(s->DeleteManifests(ServiceYaml("web") + "---\n" + ServiceYaml("nope"), kT0 + 2)
                .status()
                .code(),
            absl::StatusCode::kNotFound);
  EXPECT_TRUE(s->Find(Kind::kService, "web").has_value());
  ASSERT_TRUE(s->Delete(Kind::kService, "api", kT0 + 3).ok());
  const std::string digest = s->Digest();
  struct stat st {};
  ASSERT_EQ(::stat((dir_ + "/objects").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  s.reset();
  std::unique_ptr<ObjectService> again = Open();
  EXPECT_EQ(again->Digest(), digest) << "the tombstone is kept too";
  EXPECT_EQ(again->Live().size(), 1u);
  // A damaged file stops the node, naming it and the line.
  std::ofstream(dir_ + "/objects", std::ios::app) << "garbage\n";
  absl::StatusOr<std::unique_ptr<ObjectService>> broken =
      ObjectService::Open(dir_ + "/objects", "gw-1");
  ASSERT_FALSE(broken.ok());
  EXPECT_THAT(broken.status().message(), HasSubstr("objects: line 3"));
}

TEST_F(ObjectServiceTest, PeersObjectsAreTakenOnlyWhenTheyAreWhatTheySay) {
  std::unique_ptr<ObjectService> here = Open("a");
  std::unique_ptr<ObjectService> there = Open("b");
  ASSERT_TRUE(there->Apply(ServiceYaml("web"), kT0).ok());
  std::vector<StoredObject> sent = there->Export(here->Wanted(there->Index()));
  ASSERT_EQ(sent.size(), 1u);
  // Renamed in transit, or not a manifest at all: left out.
  std::vector<StoredObject> forged = sent;
  forged[0].name = "other";
  StoredObject junk = sent[0];
  junk.name = "junk";
  junk.text = "kind: Pod";
  forged.push_back(junk);
  EXPECT_EQ(*here->Merge(forged), 0u);
  EXPECT_TRUE(here->Live().empty());
  EXPECT_EQ(*here->Merge(sent), 1u);
  EXPECT_EQ(*here->Merge(sent), 0u) << "no news";
  EXPECT_EQ(here->Fingerprint(), there->Fingerprint());
}

}  // namespace
}  // namespace hivemesh::services
