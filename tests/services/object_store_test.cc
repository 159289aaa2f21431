// The applied objects (services/object_store.h): versions, convergence of concurrent applies,
// tombstones, anti-entropy's digest and index, and the text form, with the time passed in.
#include "services/object_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <random>

namespace hivemesh::services {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kT0 = 1'800'000'000'000;

Manifest Service(std::string name, std::string app = "web") {
  const std::string yaml = "apiVersion: v1\nkind: Service\nmetadata:\n  name: " + name +
                           "\nspec:\n  selector:\n    app: " + app + "\n  ports:\n  - port: 80\n";
  absl::StatusOr<Parsed> p = ParseManifests(yaml);
  EXPECT_TRUE(p.ok()) << p.status();
  return p->manifests[0];
}

TEST(ObjectStoreTest, AppliesMakeNewerVersionsEvenWhenTheClockStandsStill) {
  ObjectStore store("a");
  StoredObject first = *store.Apply(Service("web"), kT0);
  StoredObject second = *store.Apply(Service("web", "web2"), kT0);
  EXPECT_LT(first.version, second.version);
  EXPECT_EQ(second.version.origin, "a");
  ASSERT_EQ(store.Live().size(), 1u);
  EXPECT_THAT(store.Find(Kind::kService, "web")->text, HasSubstr("web2"));
  // A clock that steps back still makes a newer version.
  StoredObject third = *store.Apply(Service("web", "web3"), kT0 - 5000);
  EXPECT_LT(second.version, third.version);
}

TEST(ObjectStoreTest, ConcurrentAppliesConvergeWhateverTheOrder) {
  ObjectStore a("a"), b("b");
  const StoredObject from_a = *a.Apply(Service("web", "from-a"), kT0);
  const StoredObject from_b = *b.Apply(Service("web", "from-b"), kT0);  // same ms
  const StoredObject other = *b.Apply(Service("api"), kT0 + 1);
  std::vector<StoredObject> all = {from_a, from_b, other};
  std::mt19937 rng(7);
  std::string digest;
  for (int round = 0; round < 6; ++round) {
    std::shuffle(all.begin(), all.end(), rng);
    ObjectStore c("c");
    for (const StoredObject& o : all) ASSERT_TRUE(c.Merge(o).ok());
    // The larger (ms, counter, origin) wins: b's.
    EXPECT_THAT(c.Find(Kind::kService, "web")->text, HasSubstr("from-b"));
    if (round > 0) {
      EXPECT_EQ(c.Digest(), digest);
    }
    digest = c.Digest();
  }
  // A node that saw b's version makes a newer one, though its clock lags.
  ObjectStore lagging("z");
  ASSERT_TRUE(*lagging.Merge(from_b));
  const StoredObject later = *lagging.Apply(Service("web", "later"), kT0 - 60000);
  EXPECT_LT(from_b.version, later.version);
  // An older version is not taken; the same one twice is no news.
  EXPECT_FALSE(*lagging.Merge(from_a));
  EXPECT_FALSE(*lagging.Merge(later));
}

TEST(ObjectStoreTest, DeletesAreTombstonesThatWinAndAreForgottenAfterAWeek) {
  ObjectStore a("a"), b("b");
  const StoredObject applied = *a.Apply(Service("web"), kT0);
  ASSERT_TRUE(*b.Merge(applied));
  const StoredObject tomb = *a.Delete(Kind::kService, "web", kT0 + 10);
  EXPECT_TRUE(tomb.deleted);
  EXPECT_TRUE(tomb.text.empty());
  EXPECT_FALSE(a.Find(Kind::kService, "web").has_value());
  EXPECT_EQ(a.Delete(Kind::kService, "web", kT0 + 20).status().code(), absl::StatusCode::kNotFound);
  // b, which still holds the object, takes the tombstone; the old object does not come back.
  ASSERT_TRUE(*b.Merge(tomb));
  EXPECT_TRUE(b.Live().empty());
  EXPECT_FALSE(*b.Merge(applied));
  EXPECT_EQ(a.Digest(), b.Digest());
  EXPECT_EQ(a.ForgetTombstones(kT0 + kTombstoneLifeMs), 0u);
  EXPECT_EQ(a.ForgetTombstones(kT0 + kTombstoneLifeMs + 11), 1u);
  EXPECT_TRUE(a.All().empty());
}

TEST(ObjectStoreTest, TheIndexSaysWhatToPull) {
  ObjectStore a("a"), b("b");
  ASSERT_TRUE(a.Apply(Service("web"), kT0).ok());
  ASSERT_TRUE(a.Apply(Service("api"), kT0).ok());
  ASSERT_TRUE(b.Merge(*a.Find(Kind::kService, "web")).ok());
  EXPECT_NE(a.Digest(), b.Digest());
  std::vector<ObjectKey> wanted = b.Wanted(a.Index());
  ASSERT_EQ(wanted.size(), 1u);
  EXPECT_EQ(wanted[0].second, "api");
  EXPECT_TRUE(a.Wanted(b.Index()).empty());
  ASSERT_TRUE(b.Merge(*a.Find(Kind::kService, "api")).ok());
  EXPECT_EQ(a.Digest(), b.Digest());
  // Newer here: the peer's older entry is not wanted; a newer one there is.
  ASSERT_TRUE(b.Apply(Service("web", "newer"), kT0 + 5).ok());
  EXPECT_TRUE(b.Wanted(a.Index()).empty());
  EXPECT_EQ(a.Wanted(b.Index()).size(), 1u);
}

TEST(ObjectStoreTest, TheStoreIsBounded) {
  ObjectStore a("a");
  for (size_t i = 0; i < kMaxObjects; ++i) {
    ASSERT_TRUE(a.Apply(Service("s" + std::to_string(i)), kT0).ok()) << i;
  }
  EXPECT_EQ(a.Apply(Service("one-more"), kT0).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(a.Apply(Service("s1", "again"), kT0).ok()) << "a known object is updated";
  StoredObject stranger{Kind::kService, "stranger", Version{kT0, 0, "b"}, false, "x"};
  EXPECT_EQ(a.Merge(stranger).status().code(), absl::StatusCode::kResourceExhausted);
}

TEST(ObjectStoreTest, TheTextFormRoundTripsAndRefusesBadLines) {
  ObjectStore a("gw-1");
  ASSERT_TRUE(a.Apply(Service("web"), kT0).ok());
  ASSERT_TRUE(a.Apply(Service("api"), kT0).ok());
  ASSERT_TRUE(a.Delete(Kind::kService, "api", kT0 + 1).ok());
  const std::string text = EncodeObjects(a.All());
  absl::StatusOr<std::vector<StoredObject>> back = DecodeObjects(text);
  ASSERT_TRUE(back.ok()) << back.status();
  ObjectStore b("b");
  for (const StoredObject& o : *back) ASSERT_TRUE(b.Merge(o).ok());
  EXPECT_EQ(a.Digest(), b.Digest());
  EXPECT_EQ(b.Find(Kind::kService, "web")->text, a.Find(Kind::kService, "web")->text);
  const std::string good =
      R"({"kind":"Service","name":"web","ms":1,"counter":0,"origin":"a","deleted":false,"text":"x"})";
  EXPECT_TRUE(DecodeObjects(good).ok());
  for (
      const std::string& bad : {
          std::string("not json"),
          std::string(
              R"({"kind":"Pod","name":"web","ms":1,"counter":0,"origin":"a","deleted":false,"text":"x"})"),
          std::string(
              R"({"kind":"Service","name":"Web!","ms":1,"counter":0,"origin":"a","deleted":false,"text":"x"})"),
          std::string(
              R"({"kind":"Service","name":"web","ms":99999999999999999,"counter":0,"origin":"a","deleted":false,"text":"x"})"),
          std::string(
              R"({"kind":"Service","name":"web","ms":-1,"counter":0,"origin":"a","deleted":false,"text":"x"})"),
          std::string(
              R"({"kind":"Service","name":"web","ms":1,"counter":0,"origin":"","deleted":false,"text":"x"})"),
          std::string(
              R"({"kind":"Service","name":"web","ms":1,"counter":0,"origin":"a","deleted":true,"text":"x"})"),
          std::string(
              R"({"kind":"Service","name":"web","ms":1,"counter":0,"origin":"a","deleted":false,"text":""})"),
      }) {
    absl::StatusOr<std::vector<StoredObject>> r = DecodeObjects(good + "\n" + bad);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_THAT(r.status().message(), HasSubstr("line 2")) << bad;
    }
  }
}

TEST(ObjectStoreTest, IndexesAndKeysRoundTripAndRefuseBadLines) {
  ObjectStore a("gw-1");
  ASSERT_TRUE(a.Apply(Service("web"), kT0).ok());
  ASSERT_TRUE(a.Apply(Service("api"), kT0 + 3).ok());
  absl::StatusOr<std::vector<IndexEntry>> index = DecodeIndex(EncodeIndex(a.Index()));
  ASSERT_TRUE(index.ok()) << index.status();
  ObjectStore b("b");
  EXPECT_EQ(b.Wanted(*index).size(), 2u);
  absl::StatusOr<std::vector<ObjectKey>> keys = DecodeKeys(EncodeKeys(b.Wanted(*index)));
  ASSERT_TRUE(keys.ok()) << keys.status();
  EXPECT_EQ(keys->size(), 2u);
  for (const std::string& bad : {std::string("Service web 1 0"), std::string("Pod web 1 0 a"),
                                 std::string("Service Web 1 0 a"), std::string("Service web x 0 a"),
                                 std::string("Service web 1 99999999999 a"),
                                 std::string("Service web 99999999999999999 0 a")}) {
    EXPECT_FALSE(DecodeIndex("Service ok 1 0 a\n" + bad).ok()) << bad;
  }
  EXPECT_FALSE(DecodeKeys("Service web extra").ok());
  EXPECT_FALSE(DecodeKeys("Deployment ../x").ok());
  std::string many;
  for (size_t i = 0; i <= kMaxObjects; ++i) many += "Service s" + std::to_string(i) + "\n";
  EXPECT_FALSE(DecodeKeys(many).ok());
}

}  // namespace
}  // namespace hivemesh::services
