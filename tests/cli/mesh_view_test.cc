#include "cli/mesh_view.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <simdjson.h>

namespace hivemesh::cli {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;

// Shaped like a real node's GET /v1/mesh/members: node-a hosts identity v1 and v2 and a draining
// node-c hosts it too; node-b hosts identity (v10, local-only) and people-detector; node-d is
// dead and its models do not count.
constexpr const char* kMembers = R"({"members":[
 {"name":"node-a","address":"127.0.0.1:7001","state":"alive","incarnation":0,
  "api_address":"127.0.0.1:8001","version":"0.2.0","draining":false,"labels":{"zone":"east","rack":"r1"},
  "capacity":{"cores":2,"memory_mb":100,"accelerators":0},
  "models":[{"name":"identity","versions":["1","2"],"ready":true,"data_policy":"mesh","instances":1}],
  "load":{"age_ms":120,"seq":4,"models":[{"name":"identity","queue_depth":3,"in_flight":1,"ewma_service_us":900}]}},
 {"name":"node-b","address":"127.0.0.1:7002","state":"suspect","incarnation":1,
  "api_address":"127.0.0.1:8002","version":"0.1.0","draining":false,"labels":{},
  "models":[{"name":"people-detector","versions":["1"],"ready":true,"data_policy":"zone","instances":2},
            {"name":"identity","versions":["10"],"ready":true,"data_policy":"local-only","instances":1}],
  "load":{"age_ms":80,"seq":2,"models":[{"name":"identity","queue_depth":1,"in_flight":2,"ewma_service_us":1500},
                                        {"name":"people-detector","queue_depth":0,"in_flight":1,"ewma_service_us":0}]}},
 {"name":"node-c","address":"127.0.0.1:7003","state":"alive","incarnation":0,
  "api_address":"127.0.0.1:8003","draining":true,"labels":{"zone":"west"},
  "models":[{"name":"identity","versions":["1"],"ready":true,"data_policy":"mesh","instances":1}]},
 {"name":"node-d","address":"127.0.0.1:7004","state":"dead","incarnation":3,
  "api_address":"127.0.0.1:8004","draining":false,"labels":{},
  "models":[{"name":"face-detector","versions":["1"],"ready":true,"data_policy":"mesh","instances":1}]}
]})";

TEST(ParseMembersTest, ReadsEveryField) {
  absl::StatusOr<std::vector<Member>> members = ParseMembers(kMembers);
  ASSERT_TRUE(members.ok()) << members.status();
  ASSERT_EQ(members->size(), 4u);
  const Member& a = (*members)[0];
  EXPECT_EQ(a.name, "node-a");
  EXPECT_EQ(a.address, "127.0.0.1:7001");
  EXPECT_EQ(a.api_address, "127.0.0.1:8001");
  EXPECT_EQ(a.label("zone"), "east");
  EXPECT_EQ(a.label("nope"), "");
  EXPECT_EQ(a.version, "0.2.0");
  EXPECT_EQ((*members)[2].version, "") << "a node that does not say";
  ASSERT_EQ(a.models.size(), 1u);
  EXPECT_THAT(a.models[0].versions, ElementsAre("1", "2"));
  EXPECT_EQ(a.load_age_ms, 120);
  ASSERT_EQ(a.load.size(), 1u);
  EXPECT_EQ(a.load[0].queue_depth, 3);
  EXPECT_TRUE(a.serving());
  EXPECT_FALSE((*members)[1].serving()) << "suspect";
  EXPECT_FALSE((*members)[2].serving()) << "draining";
  EXPECT_FALSE((*members)[2].load_age_ms.has_value());
  EXPECT_TRUE((*members)[3].gone());
}

TEST(ParseMembersTest, NotAMemberListIsInternal) {
  for (const char* bad : {"", "{}", "[1]", R"({"members":3})"}) {
    absl::StatusOr<std::vector<Member>> r = ParseMembers(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInternal);
  }
}

TEST(AggregateModelsTest, OneRowPerModelAcrossTheLiveMembers) {
  absl::StatusOr<std::vector<Member>> members = ParseMembers(kMembers);
  ASSERT_TRUE(members.ok());
  const std::vector<ModelRow> rows = AggregateModels(*members);
  ASSERT_EQ(rows.size(), 2u) << "face-detector is only on a dead member";
  const ModelRow& id = rows[0];
  EXPECT_EQ(id.name, "identity");
  EXPECT_THAT(id.versions, ElementsAre("1", "2", "10"));
  ASSERT_EQ(id.hosts.size(), 3u);
  EXPECT_EQ(id.hosts[0].node, "node-a");
  EXPECT_TRUE(id.hosts[0].ready);
  EXPECT_FALSE(id.hosts[1].ready) << "suspect";
  EXPECT_FALSE(id.hosts[2].ready) << "draining";
  EXPECT_EQ(id.ready_hosts(), 1);
  EXPECT_THAT(id.data_policies, ElementsAre("local-only", "mesh"));
  EXPECT_EQ(id.queued, 4);
  EXPECT_EQ(id.running, 3);
  EXPECT_EQ(id.service_us_min, 900);
  EXPECT_EQ(id.service_us_max, 1500);
  const ModelRow& people = rows[1];
  EXPECT_EQ(people.name, "people-detector");
  EXPECT_FALSE(people.service_us_min.has_value()) << "an EWMA of 0 is not a measurement";
  EXPECT_EQ(people.running, 1);
}

TEST(AggregateModelsTest, TableAndJson) {
  absl::StatusOr<std::vector<Member>> members = ParseMembers(kMembers);
  ASSERT_TRUE(members.ok());
  const std::vector<ModelRow> rows = AggregateModels(*members);
  EXPECT_EQ(FormatModelsTable(rows),
            "MODEL            VERSIONS  READY  NODES                                           "
            "POLICY           QUEUED  RUNNING  SERVICE\n"
            "identity         1,2,10      1/3  node-a, node-b (not ready), node-c (not ready)  "
            "local-only,mesh       4        3  900 us - 1.50 ms\n"
            "people-detector  1           0/1  node-b (not ready)                              "
            "zone                  0        1  -\n");
  const std::string json = ModelsJson(rows);
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  ASSERT_EQ(parser.parse(json).get(doc), simdjson::SUCCESS) << json;
  EXPECT_EQ(int64_t(doc["models"].at(0)["ready"]), 1);
  EXPECT_EQ(int64_t(doc["models"].at(0)["total"]), 3);
  EXPECT_EQ(std::string_view(doc["models"].at(0)["nodes"].at(2)["name"]), "node-c");
  EXPECT_EQ(int64_t(doc["models"].at(0)["service_us"]["max"]), 1500);
  EXPECT_TRUE(doc["models"].at(1)["service_us"].is_null());
}

TEST(FormatMembersTableTest, OneRowPerMember) {
  absl::StatusOr<std::vector<Member>> members = ParseMembers(kMembers);
  ASSERT_TRUE(members.ok());
  const std::string table = FormatMembersTable(*members);
  EXPECT_THAT(table, HasSubstr("NAME    STATE             GOSSIP          API"));
  EXPECT_THAT(table, HasSubstr("node-a  alive             127.0.0.1:7001  127.0.0.1:8001  "
                               "rack=r1,zone=east  identity"));
  EXPECT_THAT(table, HasSubstr("node-c  alive (draining)"));
  // Each member's release, last: where a rolling upgrade is.
  EXPECT_THAT(table, HasSubstr("LOAD AGE  VERSION\n"));
  EXPECT_THAT(table, HasSubstr("120 ms  0.2.0\n"));
  EXPECT_THAT(table, HasSubstr("80 ms  0.1.0\n"));
  EXPECT_THAT(table, MatchesRegex("(.|\n)*node-c  alive \\(draining\\).*-  -\n(.|\n)*"));
}

TEST(FormatMembersTableTest, AnInsecureMemberSaysSo) {
  absl::StatusOr<std::vector<Member>> members = ParseMembers(
      R"({"members":[{"name":"lab","address":"127.0.0.1:7009","state":"alive","insecure":true}]})");
  ASSERT_TRUE(members.ok());
  ASSERT_EQ(members->size(), 1u);
  EXPECT_TRUE(members->front().insecure);
  EXPECT_THAT(FormatMembersTable(*members), HasSubstr("lab   alive (insecure)"));
}

}  // namespace
}  // namespace hivemesh::cli
