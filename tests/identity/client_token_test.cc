// Client bearer tokens (identity/client_token.h): signed by an issuer, checked by any node with
// the time passed in; forged, tampered, foreign, expired and malformed tokens are refused.
#include "identity/client_token.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <regex>

#include "absl/strings/escaping.h"

namespace hivemesh::identity {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kNow = 1'800'000'000;

class ClientTokenTest : public ::testing::Test {
 protected:
  ClientTokenTest()
      : mesh_(NewMeshId()),
        root_(MakeRootCertificate(root_key_, mesh_, WallTime(std::chrono::seconds(kNow)))),
        issuer_(MakeIssuerCertificate(issuer_key_.public_key(), "first", root_, root_key_,
                                      WallTime(std::chrono::seconds(kNow)))) {}

  ClientToken Token() const {
    return ClientToken{mesh_, "dashboard", {"yolo", "resnet-*"}, kNow, kNow + 3600};
  }
  std::string Refusal(std::string_view text, int64_t now = kNow) {
    absl::StatusOr<ClientToken> t = VerifyClientToken(text, {issuer_}, mesh_, now);
    EXPECT_FALSE(t.ok()) << text;
    if (!t.ok()) {
      EXPECT_EQ(t.status().code(), absl::StatusCode::kPermissionDenied);
    }
    return t.ok() ? "" : std::string(t.status().message());
  }

  NodeKey root_key_ = NodeKey::Generate();
  NodeKey issuer_key_ = NodeKey::Generate();
  std::string mesh_;
  Certificate root_;
  Certificate issuer_;
};

TEST_F(ClientTokenTest, ASignedTokenSaysWhoAndWhichModels) {
  absl::StatusOr<std::string> text = SignClientToken(Token(), issuer_key_);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_TRUE(text->starts_with("HMC1."));
  EXPECT_EQ(text->find('='), std::string::npos) << "no padding: it fits a header as it is";
  absl::StatusOr<ClientToken> t = VerifyClientToken(*text, {root_, issuer_}, mesh_, kNow + 10);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->subject, "dashboard");
  EXPECT_TRUE(t->Covers("yolo"));
  EXPECT_TRUE(t->Covers("resnet-50"));
  EXPECT_FALSE(t->Covers("resnet"));
  EXPECT_FALSE(t->Covers("yolo2"));
  EXPECT_EQ(t->expires, kNow + 3600);
  ClientToken every = Token();
  every.models = {"*"};
  EXPECT_TRUE(VerifyClientToken(*SignClientToken(every, issuer_key_), {issuer_}, mesh_, kNow)
                  ->Covers("anything"));
}

TEST_F(ClientTokenTest, ForgedTamperedForeignAndExpiredTokensAreRefused) {
  const std::string text = *SignClientToken(Token(), issuer_key_);
  EXPECT_THAT(Refusal(text, kNow + 3600), HasSubstr("expired 0 s ago"));
  // Signed by a member's key, by the root (not an issuer the node holds), or for another mesh.
  const NodeKey member = NodeKey::Generate();
  EXPECT_THAT(Refusal(*SignClientToken(Token(), member)), HasSubstr("not signed by an issuer"));
  EXPECT_THAT(Refusal(*SignClientToken(Token(), root_key_)), HasSubstr("not signed by an issuer"));
  ClientToken foreign = Token();
  foreign.mesh_id = NewMeshId();
  EXPECT_THAT(Refusal(*SignClientToken(foreign, issuer_key_)), HasSubstr("another mesh's"));
  // The payload changed (more models, a later expiry): the signature no longer holds.
  const size_t dot = text.find('.', 5);
  std::string payload;
  ASSERT_TRUE(absl::WebSafeBase64Unescape(text.substr(5, dot - 5), &payload));
  const std::string widened =
      std::regex_replace(payload, std::regex(R"("models":\[[^\]]*\])"), R"("models":["*"])");
  ASSERT_NE(widened, payload);
  EXPECT_THAT(Refusal("HMC1." + absl::WebSafeBase64Escape(widened) + text.substr(dot)),
              HasSubstr("not signed by an issuer"));
  // Not a token, malformed, too long.
  for (std::string_view bad : {"", "Bearer x", "HMC1.", "HMC1.x", "HMC1.!!.!!", "HMC2.a.b"}) {
    Refusal(bad);
  }
  EXPECT_THAT(Refusal("HMC1." + std::string(kMaxClientTokenBytes, 'A')), HasSubstr("too long"));
}

TEST_F(ClientTokenTest, TokensAreMadeOnlyWithAValidNameModelsAndLife) {
  auto error = [&](ClientToken t) {
    absl::StatusOr<std::string> s = SignClientToken(t, issuer_key_);
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
    return std::string(s.status().message());
  };
  ClientToken t = Token();
  t.subject = "a\"b";
  EXPECT_THAT(error(t), HasSubstr("name"));
  t = Token();
  t.models = {};
  EXPECT_THAT(error(t), HasSubstr("models"));
  t.models = {"a\",\"*"};
  EXPECT_THAT(error(t), HasSubstr("is not a model name"));
  t = Token();
  t.expires = t.issued;
  EXPECT_THAT(error(t), HasSubstr("ttl"));
  t.expires = t.issued + kMaxClientTokenLife.count() + 1;
  EXPECT_THAT(error(t), HasSubstr("ttl"));
}

TEST(ClientTokensRevocationTest, NamesAClientAndATimeUnderAKeyNoNodeHas) {
  const std::string name = ClientTokensRevocationName("cam.app-1", 1'800'000'000);
  EXPECT_EQ(name, "tokens:cam.app-1@1800000000");
  std::optional<ClientTokensRevocation> back = ParseClientTokensRevocation(name);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->client, "cam.app-1");
  EXPECT_EQ(back->before, 1'800'000'000);
  const std::string key = ClientTokensKey(name);
  EXPECT_EQ(key.size(), 32u);
  EXPECT_NE(key, ClientTokensKey(ClientTokensRevocationName("cam.app-1", 1'800'000'001)));
  // A member's or client's name is no tokens revocation, nor is anything malformed.
  for (std::string_view other : {"cam-7", "tokens:", "tokens:@1", "tokens:a@", "tokens:a@x",
                                 "tokens:a b@1", "tokens:a@-1"}) {
    EXPECT_FALSE(ParseClientTokensRevocation(other).has_value()) << other;
  }
}

}  // namespace
}  // namespace hivemesh::identity
