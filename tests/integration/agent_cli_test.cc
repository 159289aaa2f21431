// The `hivemesh agent` command line: --help documents every setting, --config loads YAML, flags
// override it, bad settings are refused with the setting's name, and the shipped repository loads.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <memory>
#include <sstream>

#include "support/agent_process.h"
#include "support/http_client.h"

namespace hivemesh::test {
namespace {

using ::testing::HasSubstr;

std::string RunCli(const std::string& args, int* exit_code) {
  // A node that gets as far as its state folder gets one of its own (never the host's default)
  // and no mesh: these tests are about settings.
  static TempDir* const state = new TempDir();
  const std::string own = args.starts_with("agent ") && args.find("--help") == std::string::npos
                              ? " --insecure --state-dir " + state->path()
                              : "";
  std::string out;
  FILE* p = ::popen((HivemeshBinary() + " " + args + own + " 2>&1").c_str(), "r");
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int status = ::pclose(p);
  *exit_code = WEXITSTATUS(status);
  return out;
}

TEST(AgentCliTest, HelpDocumentsEverySetting) {
  int code;
  const std::string help = RunCli("agent --help", &code);
  EXPECT_EQ(code, 0);
  std::istringstream flags(
      "--config --node-name --http-address --model-repository --http-threads "
      "--default-instances --default-queue-limit --max-body-bytes --header-timeout-ms "
      "--body-timeout-ms --drain-timeout-ms --log-level --routing-mode --local-margin "
      "--max-hops --http-advertise-address --drain-announce-ms --models --log-format "
      "--grpc-address --grpc-max-message-bytes --model-control-mode --repository-poll-ms ");
  for (std::string flag; flags >> flag;) EXPECT_THAT(help, HasSubstr(flag));
  // gRPC is on by default, beside REST's 8000.
  EXPECT_THAT(help, testing::ContainsRegex("--grpc-address[^\n]*or off[^\n]*"
                                           "\\[default: 127\\.0\\.0\\.1:8001\\]"));
}

TEST(AgentCliTest, BadSettingsAreRefusedByName) {
  int code;
  EXPECT_THAT(RunCli("agent --http-address nonsense", &code), HasSubstr("http_address"));
  EXPECT_EQ(code, 2);
  EXPECT_THAT(RunCli("agent --http-threads 0", &code), HasSubstr("http_threads: 0 is outside"));
  EXPECT_EQ(code, 2);
  EXPECT_THAT(RunCli("agent --routing-mode nearest", &code),
              HasSubstr("routing_mode: 'nearest' is not one of hivemesh, local, random"));
  EXPECT_EQ(code, 2);
  EXPECT_THAT(RunCli("agent --http-advertise-address 10.0.0.1", &code),
              HasSubstr("http_advertise_address: '10.0.0.1' is not host:port"));
  EXPECT_EQ(code, 2);
  EXPECT_THAT(RunCli("agent --max-hops 0", &code), HasSubstr("max_hops: 0 is outside [1, 8]"));
  EXPECT_THAT(RunCli("agent --model-control-mode watch", &code),
              HasSubstr("model_control_mode: 'watch' is not one of none, poll, explicit"));
  EXPECT_THAT(RunCli("agent --repository-poll-ms 0", &code),
              HasSubstr("repository_poll_ms: 0 is outside [10, 3600000]"));
  EXPECT_EQ(code, 2);
  TempDir dir;
  dir.Write("node.yaml", "node_name: a\nhttp_treads: 3\n");
  EXPECT_THAT(RunCli("agent --config " + dir.path() + "/node.yaml", &code),
              HasSubstr("node.yaml: http_treads: unknown setting"));
  EXPECT_EQ(code, 2);
  EXPECT_THAT(RunCli("agent --model-repository /nonexistent --http-address 127.0.0.1:0", &code),
              HasSubstr("model repository '/nonexistent' is not a readable folder"));
  EXPECT_EQ(code, 1);
  EXPECT_THAT(RunCli("agent --model-repository " + SourceDir() +
                         "/models --models identity,nope --http-address 127.0.0.1:0",
                     &code),
              HasSubstr("model 'nope' is not in the model repository"));
  EXPECT_EQ(code, 1);
}

TEST(AgentCliTest, GossipLimitsAreSettingsCheckedByName) {
  int code;
  const std::string help = RunCli("agent --help", &code);
  for (const char* flag :
       {"--gossip-max-connections ", "--gossip-max-connections-per-source ", "--gossip-buffer-mb ",
        "--gossip-head-timeout-ms ", "--gossip-max-members "}) {
    EXPECT_THAT(help, HasSubstr(flag));
  }
  EXPECT_THAT(RunCli("agent --gossip-max-connections-per-source 0", &code),
              HasSubstr("gossip_max_connections_per_source: 0 is outside [1, 65536]"));
  EXPECT_EQ(code, 2);
  // Too small to hold the largest gossip frame beside the share kept for small ones.
  EXPECT_THAT(RunCli("agent --gossip-buffer-mb 8", &code),
              HasSubstr("gossip_buffer_mb: 8 is outside [20, 4096]"));
  EXPECT_EQ(code, 2);
  EXPECT_THAT(RunCli("agent --gossip-head-timeout-ms 0", &code),
              HasSubstr("gossip_head_timeout_ms: 0 is outside"));
  EXPECT_EQ(code, 2);
  EXPECT_THAT(RunCli("agent --gossip-max-members 1", &code),
              HasSubstr("gossip_max_members: 1 is outside"));
  EXPECT_EQ(code, 2);
  // The gossip address is what the node advertises and what sealed gossip names.
  EXPECT_THAT(RunCli("agent --model-repository " + SourceDir() +
                         "/models --models identity --http-address 127.0.0.1:0 "
                         "--grpc-address off --gossip-address 0.0.0.0:0",
                     &code),
              HasSubstr("gossip_address: 0.0.0.0:0 is not an address peers can reach"));
  EXPECT_EQ(code, 1);
}

TEST(AgentCliTest, LoadsOnlyTheListedModels) {
  AgentProcess agent(
      {"--model-repository", SourceDir() + "/models", "--models", "identity, vibration-anomaly"});
  ASSERT_TRUE(agent.ok()) << agent.log();
  EXPECT_EQ(HttpRequestOnce(agent.port(), "GET", "/v2/models/identity/ready").status, 200);
  EXPECT_EQ(HttpRequestOnce(agent.port(), "GET", "/v2/models/vibration-anomaly/ready").status, 200);
  const HttpResult index = HttpRequestOnce(agent.port(), "POST", "/v2/repository/index");
  EXPECT_THAT(index.body, ::testing::Not(HasSubstr("people-detector"))) << index.body;
  EXPECT_THAT(index.body, ::testing::Not(HasSubstr("face-detector"))) << index.body;
  EXPECT_EQ(agent.Terminate(), 0);
}

TEST(AgentCliTest, ConfigFileWithFlagOverride) {
  TempDir dir;
  dir.Write("node.yaml", "node_name: from-yaml\nmodel_repository: " + SourceDir() +
                             "/models\nhttp_threads: 1\nlog_level: debug\n");
  AgentProcess agent({"--config", dir.path() + "/node.yaml", "--node-name", "from-flag"});
  ASSERT_TRUE(agent.ok()) << agent.log();
  HttpResult meta = HttpRequestOnce(agent.port(), "GET", "/v2");
  EXPECT_THAT(meta.body, HasSubstr(R"("node":"from-flag")"));
  EXPECT_THAT(agent.log(), HasSubstr("[from-flag]"));
}

TEST(AgentCliTest, ShippedRepositoryLoadsEveryModel) {
  AgentProcess agent({"--model-repository", SourceDir() + "/models"});
  ASSERT_TRUE(agent.ok()) << agent.log();
  for (const char* model : {"identity", "vibration-anomaly", "people-detector", "face-detector"}) {
    EXPECT_EQ(
        HttpRequestOnce(agent.port(), "GET", std::string("/v2/models/") + model + "/ready").status,
        200)
        << model << "\n"
        << agent.log();
  }
  EXPECT_EQ(agent.Terminate(), 0);
}

}  // namespace
}  // namespace hivemesh::test
