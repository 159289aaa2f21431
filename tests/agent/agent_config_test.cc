// AgentConfig: the connection settings from YAML, their defaults and their validation.
#include "agent/agent_config.h"

#include <gtest/gtest.h>

namespace hivemesh {
namespace {

TEST(AgentConfigTest, ConnectionSettingsDefaultsAndYaml) {
  AgentConfig config;
  EXPECT_EQ(config.max_connections, 0);  // derived from the descriptor limit
  EXPECT_EQ(config.max_connections_per_source, 0);
  EXPECT_EQ(config.idle_link_timeout_ms, 60000);
  EXPECT_TRUE(config.Validate().ok());
  ASSERT_TRUE(ApplyYaml("max_connections: 300\nmax_connections_per_source: 20\n"
                        "idle_link_timeout_ms: 5000\n",
                        "node.yaml", &config)
                  .ok());
  EXPECT_EQ(config.max_connections, 300);
  EXPECT_EQ(config.max_connections_per_source, 20);
  EXPECT_EQ(config.idle_link_timeout_ms, 5000);
  EXPECT_TRUE(config.Validate().ok());
}

TEST(AgentConfigTest, ConnectionSettingsOutOfRangeAreRefusedByName) {
  for (const char* yaml : {"max_connections: -1", "max_connections_per_source: -5",
                           "idle_link_timeout_ms: 0", "idle_link_timeout_ms: 100000000"}) {
    SCOPED_TRACE(yaml);
    AgentConfig config;
    ASSERT_TRUE(ApplyYaml(yaml, "node.yaml", &config).ok());
    const absl::Status s = config.Validate();
    EXPECT_FALSE(s.ok());
    const std::string key(yaml, std::string_view(yaml).find(':'));
    EXPECT_NE(std::string(s.message()).find(key), std::string::npos) << s;
  }
}

TEST(AgentConfigTest, ASecureNodeTakesControlCallsFromNoOneAndEveryone) {
  // Control calls need an operator identity, the node's own admin (loopback) or its admin token:
  // admin_access any is refused on a node of a secure mesh, and taken with --insecure.
  AgentConfig config;
  config.admin_access = "any";
  const absl::Status refused = config.Validate();
  EXPECT_EQ(refused.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(refused.message()).find("admin_access: any"), std::string::npos);
  config.insecure = true;
  EXPECT_TRUE(config.Validate().ok());
  config.insecure = false;
  config.admin_access = "token";
  config.admin_token_file = "/etc/hivemesh/admin.token";
  EXPECT_TRUE(config.Validate().ok());
}

}  // namespace
}  // namespace hivemesh
