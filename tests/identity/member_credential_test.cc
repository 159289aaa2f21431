#include "identity/member_credential.h"

#include <gtest/gtest.h>

#include <map>

#include "base/strings.h"

namespace hivemesh::identity {
namespace {

constexpr int64_t kNow = 1'800'000'000'000;  // ms since the epoch

class MemberCredentialTest : public ::testing::Test {
 protected:
  MemberCredentialTest()
      : a_(NodeKey::FromSeed(std::string(32, 'a'))),
        b_(NodeKey::FromSeed(std::string(32, 'b'))),
        verifier_({"b", std::chrono::milliseconds(60000), 4},
                  [this](std::string_view m) -> std::optional<std::string> {
                    auto it = members_.find(std::string(m));
                    if (it == members_.end()) return std::nullopt;
                    return it->second;
                  }) {
    members_["a"] = a_.public_key();
    members_["b"] = b_.public_key();
  }
  std::string From(std::string_view origin, const NodeKey& key, std::string_view target = "b",
                   std::string_view purpose = kPurposeRequest, int64_t at = kNow) {
    return MakeCredential(key, origin, target, purpose, at, ++nonce_);
  }

  NodeKey a_, b_;
  std::map<std::string, std::string> members_;
  CredentialVerifier verifier_;
  uint64_t nonce_ = 0;
};

TEST_F(MemberCredentialTest, ProvesTheOriginToItsTarget) {
  absl::StatusOr<std::string> who = verifier_.Verify(From("a", a_), kPurposeRequest, kNow + 5);
  ASSERT_TRUE(who.ok()) << who.status();
  EXPECT_EQ(*who, "a");
}

TEST_F(MemberCredentialTest, RefusesEveryForgeryWithAReason) {
  struct Case {
    std::string what, header;
    std::string_view purpose = kPurposeRequest;
    int64_t now = kNow;
  };
  std::string tampered = From("a", a_);
  tampered[tampered.size() - 1] = tampered.back() == '0' ? '1' : '0';
  const std::vector<Case> cases = {
      {"missing", ""},
      {"garbage", "hello"},
      {"another version", "v2" + From("a", a_).substr(2)},
      {"a name it does not hold the key of", From("a", b_)},
      {"a stranger", From("mallory", NodeKey::FromSeed(std::string(32, 'm')))},
      {"addressed to another node", From("a", a_, "c")},
      {"for a link, used for a request", From("a", a_, "b", kPurposeLink)},
      {"too old", From("a", a_), kPurposeRequest, kNow + 60001},
      {"from the future", From("a", a_), kPurposeRequest, kNow - 60001},
      {"a flipped signature bit", tampered},
      {"an overflowing time",
       StrCat("v1 a request 99999999999999999999 0000000000000001 ", std::string(128, '0'))},
  };
  for (const Case& c : cases) {
    absl::StatusOr<std::string> who = verifier_.Verify(c.header, c.purpose, c.now);
    EXPECT_FALSE(who.ok()) << c.what;
    EXPECT_EQ(who.status().code(), absl::StatusCode::kUnauthenticated) << c.what;
    EXPECT_NE(who.status().message().find("member credential refused"), std::string::npos);
  }
  EXPECT_EQ(verifier_.remembered(), 0u) << "nothing refused is remembered";
}

TEST_F(MemberCredentialTest, AReplayIsRefusedForAsLongAsTheCredentialIsFresh) {
  const std::string c = From("a", a_);
  ASSERT_TRUE(verifier_.Verify(c, kPurposeRequest, kNow).ok());
  absl::StatusOr<std::string> again = verifier_.Verify(c, kPurposeRequest, kNow + 59000);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists);
  // Once it is too old to be taken, it is forgotten, and refused as stale instead.
  again = verifier_.Verify(c, kPurposeRequest, kNow + 60001);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kUnauthenticated);
}

TEST_F(MemberCredentialTest, TheReplayMemoryIsBounded) {
  for (int i = 0; i < 4; ++i)
    ASSERT_TRUE(verifier_.Verify(From("a", a_), kPurposeRequest, kNow).ok());
  absl::StatusOr<std::string> full = verifier_.Verify(From("a", a_), kPurposeRequest, kNow);
  EXPECT_EQ(full.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(verifier_.remembered(), 4u);
  // A minute later the old ones are gone and there is room again.
  EXPECT_TRUE(
      verifier_
          .Verify(From("a", a_, "b", kPurposeRequest, kNow + 61000), kPurposeRequest, kNow + 61000)
          .ok());
  EXPECT_EQ(verifier_.remembered(), 1u);
}

TEST_F(MemberCredentialTest, AMemberWhoseKeyChangedIsRefusedWithItsOldKey) {
  const std::string c = From("a", a_);
  members_["a"] = NodeKey::FromSeed(std::string(32, 'z')).public_key();
  EXPECT_FALSE(verifier_.Verify(c, kPurposeRequest, kNow).ok());
  members_.erase("a");
  EXPECT_FALSE(verifier_.Verify(From("a", a_), kPurposeRequest, kNow).ok());
}

}  // namespace
}  // namespace hivemesh::identity
