// Who may change a node (api/admin_access.h): the loopback rule, bearer tokens, gRPC peers.
#include "api/admin_access.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

#include "support/agent_process.h"

namespace hivemesh {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr std::string_view kToken = "0123456789abcdef0123456789abcdef";

std::string BearerToken() { return "Bearer " + std::string(kToken); }

TEST(AdminAccessTest, LoopbackAddresses) {
  for (std::string_view ip : {"127.0.0.1", "127.1.2.3", "127.255.255.255", "::1",
                              "::ffff:127.0.0.1", "0:0:0:0:0:0:0:1"}) {
    EXPECT_TRUE(IsLoopbackAddress(ip)) << ip;
  }
  for (std::string_view ip : {"", "10.0.0.7", "192.0.2.2", "128.0.0.1", "0.0.0.0", "::", "::2",
                              "fe80::1", "::ffff:10.0.0.1", "::127.0.0.1", "localhost",
                              "127.0.0.1 ", "127.0.0.1:80", "127.0.0.1\n", "1270.0.0.1"}) {
    EXPECT_FALSE(IsLoopbackAddress(ip)) << ip;
  }
  EXPECT_FALSE(IsLoopbackAddress(std::string(100, '1')));
}

TEST(AdminAccessTest, LoopbackModeAllowsOnlyThisHost) {
  const AdminAccess access;  // the default
  EXPECT_EQ(access.mode(), AdminAccessMode::kLoopback);
  EXPECT_TRUE(access.Check({"127.0.0.1", ""}).ok());
  EXPECT_TRUE(access.Check({"::1", ""}).ok());
  for (std::string_view ip : {"10.0.0.7", "", "::ffff:192.0.2.2"}) {
    const absl::Status s = access.Check({ip, BearerToken()});
    EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << ip;
    EXPECT_THAT(std::string(s.message()), HasSubstr("admin_access: loopback"));
  }
}

TEST(AdminAccessTest, TokenModeNeedsTheTokenFromAnyAddress) {
  absl::StatusOr<AdminAccess> access = AdminAccess::Token(kToken);
  ASSERT_TRUE(access.ok()) << access.status();
  const std::string good = BearerToken();
  EXPECT_TRUE(access->Check({"10.0.0.7", good}).ok());
  EXPECT_TRUE(access->Check({"127.0.0.1", good}).ok());
  EXPECT_TRUE(access->Check({"10.0.0.7", "bearer " + std::string(kToken)}).ok());
  for (const std::string& bad :
       {std::string(), std::string("Bearer"), std::string("Bearer "),
        std::string("Basic ") + std::string(kToken), std::string(kToken),
        std::string("Bearer ") + std::string(kToken.substr(1)),
        std::string("Bearer ") + std::string(kToken) + "0", std::string("Bearer x")}) {
    for (std::string_view ip : {"127.0.0.1", "10.0.0.7"}) {
      const absl::Status s = access->Check({ip, bad});
      EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << bad;
      EXPECT_THAT(std::string(s.message()), HasSubstr("admin token"));
      EXPECT_THAT(std::string(s.message()), Not(HasSubstr(kToken)));
    }
  }
}

TEST(AdminAccessTest, AnOperatorCertificateIsEnoughInEveryModeAndNothingElseIs) {
  absl::StatusOr<AdminAccess> token = AdminAccess::Token(kToken);
  ASSERT_TRUE(token.ok());
  for (const AdminAccess& access : {AdminAccess::Loopback(), *token}) {
    EXPECT_TRUE(access.Check({"10.0.0.7", "", "operator:ops"}).ok());
    // A client certificate and a member's are not an operator's.
    for (std::string_view peer : {"client:ops", "node-2", "ops"}) {
      EXPECT_EQ(access.Check({"10.0.0.7", "", peer}).code(), absl::StatusCode::kPermissionDenied)
          << peer;
    }
  }
}

TEST(AdminAccessTest, TokensTooShortOrNotPrintableAreRefused) {
  EXPECT_EQ(AdminAccess::Token("short").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(AdminAccess::Token("0123456789 abcdef").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(AdminAccess::Token(std::string("0123456789abcdef\0", 17)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(AdminAccess::Token("0123456789abcdef").ok());
}

TEST(AdminAccessTest, AnyModeAllowsEveryone) {
  EXPECT_TRUE(AdminAccess::Any().Check({"10.0.0.7", ""}).ok());
  EXPECT_TRUE(AdminAccess::Any().Check({"", ""}).ok());
}

TEST(AdminAccessTest, ModeNames) {
  for (AdminAccessMode m :
       {AdminAccessMode::kLoopback, AdminAccessMode::kToken, AdminAccessMode::kAny}) {
    EXPECT_EQ(*AdminAccessModeFromName(AdminAccessModeName(m)), m);
  }
  EXPECT_THAT(std::string(AdminAccessModeFromName("open").status().message()),
              HasSubstr("not one of loopback, token, any"));
}

TEST(AdminAccessTest, GrpcPeers) {
  EXPECT_EQ(AddressOfGrpcPeer("ipv4:127.0.0.1:50123"), "127.0.0.1");
  EXPECT_EQ(AddressOfGrpcPeer("ipv4:10.0.0.7:1"), "10.0.0.7");
  EXPECT_EQ(AddressOfGrpcPeer("ipv6:[::1]:50123"), "::1");
  EXPECT_EQ(AddressOfGrpcPeer("ipv6:%5B::1%5D:50123"), "::1");
  EXPECT_EQ(AddressOfGrpcPeer("ipv6:[fe80::1%25eth0]:5"), "fe80::1");
  EXPECT_EQ(AddressOfGrpcPeer("unix:/tmp/socket"), "");
  EXPECT_EQ(AddressOfGrpcPeer("ipv6:::1:5"), "");
  EXPECT_EQ(AddressOfGrpcPeer(""), "");
  EXPECT_TRUE(IsLoopbackAddress(AddressOfGrpcPeer("ipv6:[::ffff:127.0.0.1]:9")));
  EXPECT_FALSE(IsLoopbackAddress(AddressOfGrpcPeer("unix:/tmp/socket")));
}

TEST(AdminAccessTest, TokenFiles) {
  test::TempDir dir;
  dir.Write("good", std::string(kToken) + "\n");
  dir.Write("short", "@@@\n");
  dir.Write("empty", "");
  absl::StatusOr<std::string> good = ReadAdminTokenFile(dir.path() + "/good");
  ASSERT_TRUE(good.ok()) << good.status();
  EXPECT_EQ(*good, kToken);
  absl::StatusOr<std::string> short_token = ReadAdminTokenFile(dir.path() + "/short");
  EXPECT_EQ(short_token.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(short_token.status().message()), HasSubstr("at least 16"));
  EXPECT_THAT(std::string(short_token.status().message()), Not(HasSubstr("@@@")));
  EXPECT_FALSE(ReadAdminTokenFile(dir.path() + "/empty").ok());
  EXPECT_EQ(ReadAdminTokenFile(dir.path() + "/missing").status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace hivemesh
