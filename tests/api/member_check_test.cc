// MemberCheck: a forwarded request's origin is believed only on a link that member opened, or
// with a valid request credential of its own; each refusal is counted by reason.
#include "api/member_check.h"

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <optional>
#include <string>

#include "identity/node_key.h"

namespace hivemesh {
namespace {

constexpr int64_t kNow = 1'800'000'000'000;

// A request with the given headers, from a link of `member` (empty: plain HTTP).
class FakeRequest final : public HttpRequest {
 public:
  FakeRequest(std::map<std::string, std::string, std::less<>> headers, std::string member = "",
              std::string tls_peer = "")
      : headers_(std::move(headers)), member_(std::move(member)), tls_peer_(std::move(tls_peer)) {}
  std::string_view method() const override { return "POST"; }
  std::string_view target() const override { return "/v2/models/m/infer"; }
  std::string_view header(std::string_view name) const override {
    auto it = headers_.find(name);
    return it == headers_.end() ? std::string_view() : std::string_view(it->second);
  }
  bool has_header(std::string_view name) const override { return headers_.count(name) > 0; }
  std::vector<std::pair<std::string_view, std::string_view>> headers() const override {
    return {headers_.begin(), headers_.end()};
  }
  std::shared_ptr<const std::string> body() const override { return body_; }
  SteadyTime received() const override { return SteadyTime(); }
  std::string_view remote_address() const override { return "10.0.0.9"; }
  std::string_view link_member() const override { return member_; }
  std::string_view tls_peer() const override { return tls_peer_; }

 private:
  std::map<std::string, std::string, std::less<>> headers_;
  std::string member_;
  std::string tls_peer_;
  std::shared_ptr<const std::string> body_ = std::make_shared<const std::string>();
};

class MemberCheckTest : public ::testing::Test {
 protected:
  MemberCheckTest() {
    identity::CredentialVerifier::Options o;
    o.self = "b";
    check_ =
        std::make_unique<MemberCheck>(std::make_shared<identity::CredentialVerifier>(
                                          o,
                                          [this](std::string_view m) -> std::optional<std::string> {
                                            if (m == "a") return a_.public_key();
                                            if (m == "c") return c_.public_key();
                                            return std::nullopt;
                                          }),
                                      rejections_, [] { return kNow; });
  }

  std::string Credential(const identity::NodeKey& key, std::string_view origin,
                         std::string_view target, std::string_view purpose, uint64_t nonce) {
    return identity::MakeCredential(key, origin, target, purpose, kNow, nonce);
  }
  FakeRequest Plain(std::string origin, std::string credential) {
    std::map<std::string, std::string, std::less<>> h{{"Hivemesh-Origin", origin}};
    if (!credential.empty()) h.emplace(std::string(identity::kCredentialHeader), credential);
    return FakeRequest(std::move(h));
  }
  absl::Status Check(const FakeRequest& r) {
    return check_->CheckForwarded(r, r.header("Hivemesh-Origin"));
  }

  identity::NodeKey a_ = identity::NodeKey::FromSeed(std::string(32, 'a'));
  identity::NodeKey c_ = identity::NodeKey::FromSeed(std::string(32, 'c'));
  std::shared_ptr<Rejections> rejections_ = std::make_shared<Rejections>();
  std::unique_ptr<MemberCheck> check_;
};

TEST_F(MemberCheckTest, APlainRequestNeedsTheOriginsOwnCredentialForThisNode) {
  EXPECT_TRUE(Check(Plain("a", Credential(a_, "a", "b", identity::kPurposeRequest, 1))).ok());
  // The header alone proves nothing, however well it names a member.
  absl::Status bare = Check(Plain("a", ""));
  EXPECT_EQ(bare.code(), absl::StatusCode::kPermissionDenied) << bare;
  // Another member's credential, a credential for another node or for a link, a forged one.
  EXPECT_EQ(Check(Plain("a", Credential(c_, "c", "b", identity::kPurposeRequest, 2))).code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(Check(Plain("a", Credential(a_, "a", "x", identity::kPurposeRequest, 3))).code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(Check(Plain("a", Credential(a_, "a", "b", identity::kPurposeLink, 4))).code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(Check(Plain("a", Credential(c_, "a", "b", identity::kPurposeRequest, 5))).code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(rejections_->count(Rejection::kForwardUnauthenticated), 5u);
  // The same credential twice: the second is a replay.
  const std::string once = Credential(a_, "a", "b", identity::kPurposeRequest, 6);
  EXPECT_TRUE(Check(Plain("a", once)).ok());
  absl::Status replay = Check(Plain("a", once));
  EXPECT_EQ(replay.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(rejections_->count(Rejection::kCredentialReplayed), 1u);
}

TEST_F(MemberCheckTest, OnALinkTheOriginMustBeTheLinksMember) {
  EXPECT_TRUE(Check(FakeRequest({{"Hivemesh-Origin", "a"}}, "a")).ok());
  EXPECT_TRUE(Check(FakeRequest({{"Hivemesh-Origin", "a"}}, "a")).ok());  // no nonce per request
  absl::Status other = Check(FakeRequest({{"Hivemesh-Origin", "c"}}, "a"));
  EXPECT_EQ(other.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(other.message().find("opened by 'a'"), std::string::npos) << other;
  EXPECT_EQ(rejections_->count(Rejection::kForwardUnauthenticated), 1u);
}

TEST_F(MemberCheckTest, ALinkOpensOnlyWithALinkCredentialForThisNode) {
  auto link = [&](std::string credential) {
    std::map<std::string, std::string, std::less<>> h;
    if (!credential.empty()) h.emplace(std::string(identity::kCredentialHeader), credential);
    return check_->AuthorizeLink(FakeRequest(std::move(h)));
  };
  absl::StatusOr<std::string> member = link(Credential(a_, "a", "b", identity::kPurposeLink, 7));
  ASSERT_TRUE(member.ok()) << member.status();
  EXPECT_EQ(*member, "a");
  EXPECT_EQ(link("").status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(link(Credential(a_, "a", "b", identity::kPurposeRequest, 8)).status().code(),
            absl::StatusCode::kPermissionDenied);
  // A stranger's key, under a member's name.
  identity::NodeKey stranger = identity::NodeKey::Generate();
  EXPECT_EQ(link(Credential(stranger, "a", "b", identity::kPurposeLink, 9)).status().code(),
            absl::StatusCode::kPermissionDenied);
}

TEST_F(MemberCheckTest, AClientCertificateForwardsNothingAndOpensNoLink) {
  // The TLS check names a member by its name and a client certificate's holder "client:<name>"
  // or "operator:<name>": a forged origin naming that text is still not a member.
  EXPECT_TRUE(Check(FakeRequest({{"Hivemesh-Origin", "a"}}, "", "a")).ok());
  for (const std::string peer : {"client:a", "operator:ops"}) {
    const absl::Status forwarded = Check(FakeRequest({{"Hivemesh-Origin", peer}}, "", peer));
    EXPECT_EQ(forwarded.code(), absl::StatusCode::kPermissionDenied) << peer;
    EXPECT_NE(forwarded.message().find("holds a client certificate"), std::string::npos)
        << forwarded;
    const absl::StatusOr<std::string> link = check_->AuthorizeLink(FakeRequest({}, "", peer));
    EXPECT_EQ(link.status().code(), absl::StatusCode::kPermissionDenied) << peer;
  }
  EXPECT_EQ(*check_->AuthorizeLink(FakeRequest({}, "", "a")), "a");
}

TEST(MemberOfTest, MembersOnLinksAndByCertificateOnly) {
  // A peer's request goes on its mesh link when one is open: the link names the member.
  EXPECT_EQ(MemberOf(FakeRequest({}, "a")), "a");
  // Or on a connection whose certificate names it.
  EXPECT_EQ(MemberOf(FakeRequest({}, "", "a")), "a");
  // Never a client's or an operator's certificate, a claimed origin, or a plain connection.
  EXPECT_EQ(MemberOf(FakeRequest({}, "", "client:a")), "");
  EXPECT_EQ(MemberOf(FakeRequest({}, "", "operator:ops")), "");
  EXPECT_EQ(MemberOf(FakeRequest({{"Hivemesh-Origin", "a"}}, "", "")), "");
}

}  // namespace
}  // namespace hivemesh
