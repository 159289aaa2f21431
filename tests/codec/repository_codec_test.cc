// The repository extension's request bodies (the index's ready filter and load/unload
// parameters) and the REST paths that name models (codec/rest_path.h).
#include "codec/repository_codec.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "codec/rest_path.h"

namespace hivemesh {
namespace {

TEST(RepositoryCodecTest, IndexRequest) {
  EXPECT_FALSE(DecodeRepositoryIndexRequest("")->ready_only);
  EXPECT_FALSE(DecodeRepositoryIndexRequest(" \n")->ready_only);
  EXPECT_FALSE(DecodeRepositoryIndexRequest("{}")->ready_only);
  EXPECT_TRUE(DecodeRepositoryIndexRequest(R"({"ready": true})")->ready_only);
  EXPECT_FALSE(
      DecodeRepositoryIndexRequest(R"({"repository_name": "", "ready": false})")->ready_only);
  EXPECT_EQ(DecodeRepositoryIndexRequest(R"({"ready": "yes"})").status().message(),
            "'ready' must be true or false");
  EXPECT_EQ(DecodeRepositoryIndexRequest("[true]").status().message(),
            "the request body must be a JSON object");
  EXPECT_EQ(DecodeRepositoryIndexRequest("{").status().message(),
            "the request body is not valid JSON");
}

TEST(RepositoryCodecTest, ControlParameters) {
  EXPECT_TRUE(DecodeRepositoryControlParameters("")->empty());
  EXPECT_TRUE(DecodeRepositoryControlParameters(R"({"parameters": {}})")->empty());
  EXPECT_EQ(
      *DecodeRepositoryControlParameters(R"({"parameters": {"config": "{}", "file:1/m": "x"}})"),
      (std::vector<std::string>{"config", "file:1/m"}));
  EXPECT_EQ(DecodeRepositoryControlParameters(R"({"parameters": 3})").status().message(),
            "'parameters' must be a JSON object");
  EXPECT_EQ(DecodeRepositoryControlParameters("nope").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(RestPathTest, ModelPaths) {
  absl::StatusOr<ModelPath> p = ParseModelPath("identity");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->model, "identity");
  EXPECT_EQ(p->version, "");
  EXPECT_EQ(p->action, ModelAction::kMetadata);
  p = ParseModelPath("vib/versions/12/infer");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->model, "vib");
  EXPECT_EQ(p->version, "12");
  EXPECT_EQ(p->action, ModelAction::kInfer);
  EXPECT_EQ(ParseModelPath("vib/ready")->action, ModelAction::kReady);
  EXPECT_EQ(ParseModelPath("vib/versions/2/stats")->action, ModelAction::kStats);
  EXPECT_EQ(ParseModelPath("vib/versions/2")->version, "2");
}

TEST(RestPathTest, ModelPathsThatAreNoRoute) {
  EXPECT_EQ(ParseModelPath("vib/")->action, ModelAction::kMetadata);
  for (std::string_view rest :
       {"", "/infer", "vib/bogus", "vib/versions", "vib/versions/", "vib/versions//infer",
        "vib/versions/1/infer/x", "a/b/c/d/e", "vib/infer/x", "../vib/infer"}) {
    EXPECT_EQ(ParseModelPath(rest).status().code(), absl::StatusCode::kNotFound) << rest;
  }
}

TEST(RestPathTest, ModelPathsWithInvalidNamesAreRefusedNamingTheRule) {
  for (std::string_view rest : {"..", "./infer", "%2e%2e/infer", "..%2f..%2fetc/ready", "-x",
                                "a%00b/infer", "bad%20name"}) {
    absl::StatusOr<ModelPath> p = ParseModelPath(rest);
    EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument) << rest;
    EXPECT_NE(p.status().message().find("is not valid: a model name is"), absl::string_view::npos)
        << p.status();
  }
  EXPECT_EQ(ParseModelPath(std::string(200, 'a') + "/infer").status().code(),
            absl::StatusCode::kInvalidArgument);
  for (std::string_view rest : {"vib/versions/0/infer", "vib/versions/01", "vib/versions/x/ready",
                                "vib/versions/../infer", "vib/versions/-1/stats"}) {
    absl::StatusOr<ModelPath> p = ParseModelPath(rest);
    EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument) << rest;
    EXPECT_NE(p.status().message().find("a version is a positive integer"), absl::string_view::npos)
        << p.status();
  }
}

TEST(RestPathTest, RepositoryPaths) {
  absl::StatusOr<RepositoryPath> p = ParseRepositoryPath("vib/load");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->model, "vib");
  EXPECT_EQ(p->action, RepositoryAction::kLoad);
  EXPECT_EQ(ParseRepositoryPath("vib/unload")->action, RepositoryAction::kUnload);
  EXPECT_EQ(RepositoryActionName(RepositoryAction::kUnload), "unload");
  for (std::string_view rest : {"", "vib", "vib/", "/load", "vib/reload", "a/b/load", "../../load",
                                "vib/load/x", "vib/load/"}) {
    EXPECT_EQ(ParseRepositoryPath(rest).status().code(), absl::StatusCode::kNotFound) << rest;
  }
  for (std::string_view rest :
       {"../load", "./unload", "%2e%2e/load", "%2E%2E/unload", ".hidden/load", "a%2fb/load"}) {
    EXPECT_EQ(ParseRepositoryPath(rest).status().code(), absl::StatusCode::kInvalidArgument)
        << rest;
  }
  EXPECT_EQ(ParseRepositoryPath(std::string("a\0b/load", 8)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

using ::testing::HasSubstr;

TEST(TokenCreateRequestTest, DefaultsFieldsAndRefusalsNamingTheField) {
  absl::StatusOr<TokenCreateRequest> d = DecodeTokenCreateRequest("");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->role, "node");
  EXPECT_EQ(d->ttl_seconds, 86400);
  EXPECT_EQ(d->uses, 0);
  absl::StatusOr<TokenCreateRequest> r =
      DecodeTokenCreateRequest(R"({"role":"operator","ttl":"7d","uses":3})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->role, "operator");
  EXPECT_EQ(r->ttl_seconds, 7 * 86400);
  EXPECT_EQ(r->uses, 3);
  EXPECT_EQ(DecodeTokenCreateRequest(R"({"ttl":90})")->ttl_seconds, 90);
  EXPECT_EQ(*ParseDurationSeconds("90s", "ttl"), 90);
  EXPECT_EQ(*ParseDurationSeconds("30m", "ttl"), 1800);
  EXPECT_EQ(*ParseDurationSeconds("24h", "ttl"), 86400);
  EXPECT_EQ(*ParseDurationSeconds("3600", "ttl"), 3600);
  for (std::string_view bad : {"", "h", "0h", "-5m", "2x", "1.5h", "99999999999999999999d"}) {
    absl::StatusOr<int64_t> s = ParseDurationSeconds(bad, "ttl");
    EXPECT_FALSE(s.ok()) << bad;
    EXPECT_THAT(std::string(s.status().message()), HasSubstr("'ttl'")) << bad;
  }
  const std::vector<std::pair<std::string_view, std::string_view>> refusals = {
      {R"({"role":1})", "'role'"},   {R"({"ttl":"2x"})", "'ttl'"},
      {R"({"ttl":-1})", "'ttl'"},    {R"({"ttl":"400d"})", "'ttl'"},
      {R"({"uses":-1})", "'uses'"},  {R"({"uses":1000001})", "'uses'"},
      {R"({"uses":"3"})", "'uses'"}, {R"({"secret":"x"})", "'secret'"},
      {"[1]", "JSON object"},        {"{", "not valid JSON"}};
  for (const auto& [body, field] : refusals) {
    absl::StatusOr<TokenCreateRequest> t = DecodeTokenCreateRequest(body);
    ASSERT_FALSE(t.ok()) << body;
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument) << body;
    EXPECT_THAT(std::string(t.status().message()), HasSubstr(field)) << body;
  }
}

TEST(TokenCreateRequestTest, AClientTokenNamesItsClientAndModels) {
  absl::StatusOr<TokenCreateRequest> r =
      DecodeTokenCreateRequest(R"({"role":"client","name":"dash","models":["a","b*"]})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->name, "dash");
  EXPECT_EQ(r->models, (std::vector<std::string>{"a", "b*"}));
  for (std::string_view bad : {R"({"models":"a"})", R"({"models":[1]})", R"({"name":2})"}) {
    EXPECT_FALSE(DecodeTokenCreateRequest(bad).ok()) << bad;
  }
  std::string many = R"({"models":[)";
  for (int i = 0; i < 65; ++i) many += (i ? ",\"m\"" : "\"m\"");
  EXPECT_FALSE(DecodeTokenCreateRequest(many + "]}").ok()) << "at most 64 models";
}

TEST(ClientRequestsTest, ClientCertificatesAndRevocationsRefuseWhatIsWrongByName) {
  absl::StatusOr<ClientCertificateRequest> c = DecodeClientCertificateRequest(
      R"({"name":"cam","role":"operator","public_key":"00ff","ttl":"7d"})");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->public_key, std::string("\x00\xff", 2));
  EXPECT_EQ(c->ttl_seconds, 7 * 86400);
  EXPECT_EQ(DecodeClientCertificateRequest(R"({"name":"a","public_key":"00"})")->ttl_seconds,
            30 * 86400);
  for (const auto& [body, field] : std::vector<std::pair<std::string_view, std::string_view>>{
           {R"({"public_key":"00"})", "'name'"},
           {R"({"name":"a"})", "'public_key'"},
           {R"({"name":"a","public_key":"zz"})", "hex"},
           {R"({"name":"a","public_key":"00","ttl":0})", "'ttl'"},
           {R"({"name":"a","public_key":"00","x":1})", "'x'"},
           {"{", "JSON"}}) {
    absl::StatusOr<ClientCertificateRequest> r = DecodeClientCertificateRequest(body);
    ASSERT_FALSE(r.ok()) << body;
    EXPECT_THAT(std::string(r.status().message()), HasSubstr(field)) << body;
  }
  absl::StatusOr<RevocationRequest> member = DecodeRevocationRequest(R"({"name":"cam-7"})");
  ASSERT_TRUE(member.ok());
  EXPECT_TRUE(member->key.empty());
  absl::StatusOr<RevocationRequest> client =
      DecodeRevocationRequest(R"({"name":"ops","key":"0a0b"})");
  ASSERT_TRUE(client.ok());
  EXPECT_EQ(client->key, "\x0a\x0b");
  EXPECT_FALSE(client->tokens);
  absl::StatusOr<RevocationRequest> tokens =
      DecodeRevocationRequest(R"({"name":"dash","tokens":true})");
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  EXPECT_TRUE(tokens->tokens);
  for (std::string_view bad :
       {R"({"key":"0a"})", R"({"name":"a","key":"xyz"})", R"({"name":"a","key":""})",
        R"({"name":"a","other":1})", R"({"name":"a","tokens":"yes"})",
        R"({"name":"a","key":"0a","tokens":true})"}) {
    EXPECT_FALSE(DecodeRevocationRequest(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace hivemesh
