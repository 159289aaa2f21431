// The KServe v2 REST API of a real `hivemesh agent` process, over loopback sockets.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <future>
#include <thread>

#include "support/agent_process.h"
#include "support/http_client.h"
#include "support/mesh_util.h"

namespace hivemesh::test {
namespace {

using ::testing::HasSubstr;

constexpr const char* kAllTypes = R"(backend: identity
inputs:
  - {name: b, datatype: BOOL, shape: [-1], optional: true}
  - {name: u8, datatype: UINT8, shape: [-1], optional: true}
  - {name: u16, datatype: UINT16, shape: [-1], optional: true}
  - {name: u32, datatype: UINT32, shape: [-1], optional: true}
  - {name: u64, datatype: UINT64, shape: [-1], optional: true}
  - {name: i8, datatype: INT8, shape: [-1], optional: true}
  - {name: i16, datatype: INT16, shape: [-1], optional: true}
  - {name: i32, datatype: INT32, shape: [-1], optional: true}
  - {name: i64, datatype: INT64, shape: [-1], optional: true}
  - {name: f16, datatype: FP16, shape: [-1], optional: true}
  - {name: bf16, datatype: BF16, shape: [-1], optional: true}
  - {name: f32, datatype: FP32, shape: [-1, -1], optional: true}
  - {name: f64, datatype: FP64, shape: [-1], optional: true}
  - {name: s, datatype: BYTES, shape: [-1], optional: true}
outputs:
  - {name: ob, datatype: BOOL, shape: [-1]}
  - {name: ou8, datatype: UINT8, shape: [-1]}
  - {name: ou16, datatype: UINT16, shape: [-1]}
  - {name: ou32, datatype: UINT32, shape: [-1]}
  - {name: ou64, datatype: UINT64, shape: [-1]}
  - {name: oi8, datatype: INT8, shape: [-1]}
  - {name: oi16, datatype: INT16, shape: [-1]}
  - {name: oi32, datatype: INT32, shape: [-1]}
  - {name: oi64, datatype: INT64, shape: [-1]}
  - {name: of16, datatype: FP16, shape: [-1]}
  - {name: obf16, datatype: BF16, shape: [-1]}
  - {name: of32, datatype: FP32, shape: [-1, -1]}
  - {name: of64, datatype: FP64, shape: [-1]}
  - {name: os, datatype: BYTES, shape: [-1]}
)";

constexpr const char* kIdentity = R"(backend: identity
queue_limit: 1000
version_policy: all
inputs: [{name: INPUT0, datatype: FP32, shape: [-1]}]
outputs: [{name: OUTPUT0, datatype: FP32, shape: [-1]}]
)";

constexpr const char* kSlow = R"(backend: identity
instances: 1
queue_limit: 2
inputs: [{name: INPUT0, datatype: FP32, shape: [-1]}]
outputs: [{name: OUTPUT0, datatype: FP32, shape: [-1]}]
options: {delay_us: 2000000}
)";

constexpr const char* kPeople = R"(backend: hog-people
inputs:
  - {name: image, datatype: BYTES, shape: [1], optional: true}
  - {name: pixels, datatype: UINT8, shape: [-1, -1, 3], optional: true}
outputs:
  - {name: boxes, datatype: FP32, shape: [-1, 4]}
  - {name: scores, datatype: FP32, shape: [-1]}
  - {name: count, datatype: INT32, shape: [1]}
)";

constexpr const char* kBroken = R"(backend: identity
inputs: [{name: INPUT0, datatype: FP33, shape: [-1]}]
outputs: [{name: OUTPUT0, datatype: FP32, shape: [-1]}]
)";

class KServeApiTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    repo_ = new TempDir();
    repo_->Write("alltypes/config.yaml", kAllTypes);
    repo_->Write("alltypes/1/.keep", "");
    repo_->Write("identity/config.yaml", kIdentity);
    repo_->Write("identity/1/.keep", "");
    repo_->Write("identity/2/.keep", "");
    repo_->Write("slow/config.yaml", kSlow);
    repo_->Write("slow/1/.keep", "");
    repo_->Write("people/config.yaml", kPeople);
    repo_->Write("people/1/.keep", "");
    repo_->Write("broken/config.yaml", kBroken);
    repo_->Write("broken/1/.keep", "");
    agent_ = new AgentProcess({"--model-repository", repo_->path(), "--max-body-bytes", "200000",
                               "--header-timeout-ms", "500", "--node-name", "api-test"});
  }
  // In SetUp, not SetUpTestSuite: a failed start then fails every test instead of skipping it.
  void SetUp() override { ASSERT_TRUE(agent_->ok()) << agent_->log(); }
  static void TearDownTestSuite() {
    delete agent_;
    delete repo_;
  }
  static int port() { return agent_->port(); }

 public:
  static int Port() { return agent_->port(); }

 protected:
  static HttpResult Post(const std::string& path, const std::string& body,
                         const std::vector<std::pair<std::string, std::string>>& headers = {}) {
    return HttpRequestOnce(port(), "POST", path, body, headers);
  }
  static HttpResult Get(const std::string& path) { return HttpRequestOnce(port(), "GET", path); }

  // Every test ends by checking the node still answers a correct request correctly.
  void TearDown() override {
    if (!agent_->ok()) return;
    HttpResult r =
        Post("/v2/models/identity/infer",
             R"({"inputs":[{"name":"INPUT0","shape":[2],"datatype":"FP32","data":[1,2]}]})");
    EXPECT_EQ(r.status, 200) << r.body;
    EXPECT_THAT(r.body, HasSubstr(R"("data":[1,2])"));
  }

  static TempDir* repo_;
  static AgentProcess* agent_;
};

TempDir* KServeApiTest::repo_ = nullptr;
AgentProcess* KServeApiTest::agent_ = nullptr;

int KServeApiTestPort() { return KServeApiTest::Port(); }

TEST_F(KServeApiTest, HealthAndServerMetadata) {
  HttpResult live = Get("/v2/health/live");
  EXPECT_EQ(live.status, 200);
  EXPECT_EQ(live.body, R"({"live":true})");
  EXPECT_EQ(Get("/v2/health/ready").status, 200);
  HttpResult meta = Get("/v2");
  EXPECT_EQ(meta.status, 200);
  EXPECT_THAT(meta.body, HasSubstr(R"("name":"hivemesh")"));
  EXPECT_THAT(meta.body, HasSubstr("binary_tensor_data"));
  EXPECT_THAT(meta.body, HasSubstr(R"("node":"api-test")"));
  // Gossip without keys says so to whoever asks.
  EXPECT_THAT(meta.body,
              HasSubstr(R"("gossip":{"encrypted":false,"warning":"gossip is plaintext)"));
}

TEST_F(KServeApiTest, ModelMetadataAndReadinessWithAndWithoutVersions) {
  HttpResult m = Get("/v2/models/identity");
  EXPECT_EQ(m.status, 200);
  EXPECT_EQ(
      m.body,
      R"({"name":"identity","versions":["1","2"],"platform":"identity","inputs":[{"name":"INPUT0","datatype":"FP32","shape":[-1]}],"outputs":[{"name":"OUTPUT0","datatype":"FP32","shape":[-1]}]})");
  HttpResult v = Get("/v2/models/identity/versions/1");
  EXPECT_EQ(v.status, 200);
  EXPECT_THAT(v.body, HasSubstr(R"("versions":["1"])"));
  EXPECT_EQ(Get("/v2/models/identity/ready").status, 200);
  EXPECT_EQ(Get("/v2/models/identity/versions/2/ready").status, 200);
  HttpResult missing = Get("/v2/models/identity/versions/3/ready");
  EXPECT_EQ(missing.status, 404);
  EXPECT_THAT(missing.body, HasSubstr("has no version '3' (versions: 1, 2)"));
  EXPECT_EQ(Get("/v2/models/nope").status, 404);
}

TEST_F(KServeApiTest, InferWithVersionEchoesIdAndModelVersion) {
  HttpResult r = Post(
      "/v2/models/identity/versions/1/infer",
      R"({"id":"req-9","inputs":[{"name":"INPUT0","shape":[3],"datatype":"FP32","data":[[1],[2],[3.5]]}]})");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(
      r.body,
      R"({"model_name":"identity","model_version":"1","id":"req-9","parameters":{"served_by":"api-test"},"outputs":[{"name":"OUTPUT0","datatype":"FP32","shape":[3],"data":[1,2,3.5]}]})");
  HttpResult latest =
      Post("/v2/models/identity/infer",
           R"({"inputs":[{"name":"INPUT0","shape":[1],"datatype":"FP32","data":[1]}]})");
  EXPECT_THAT(latest.body, HasSubstr(R"("model_version":"2")"));
  EXPECT_EQ(latest.header("hivemesh-served-by"), "api-test") << "the response names its node";
}

TEST_F(KServeApiTest, EveryDatatypeAsJsonAndOutputSelection) {
  const std::string body = R"({"inputs":[
    {"name":"b","shape":[2],"datatype":"BOOL","data":[true,false]},
    {"name":"u8","shape":[1],"datatype":"UINT8","data":[255]},
    {"name":"u16","shape":[1],"datatype":"UINT16","data":[65535]},
    {"name":"u32","shape":[1],"datatype":"UINT32","data":[4294967295]},
    {"name":"u64","shape":[1],"datatype":"UINT64","data":[18446744073709551615]},
    {"name":"i8","shape":[1],"datatype":"INT8","data":[-128]},
    {"name":"i16","shape":[1],"datatype":"INT16","data":[-32768]},
    {"name":"i32","shape":[1],"datatype":"INT32","data":[-2147483648]},
    {"name":"i64","shape":[1],"datatype":"INT64","data":[-9223372036854775808]},
    {"name":"f16","shape":[1],"datatype":"FP16","data":[0.5]},
    {"name":"bf16","shape":[1],"datatype":"BF16","data":[2.5]},
    {"name":"f32","shape":[2,2],"datatype":"FP32","data":[[1,2],[3,4]]},
    {"name":"f64","shape":[1],"datatype":"FP64","data":[0.1]},
    {"name":"s","shape":[2],"datatype":"BYTES","data":["edge","ai"]}],
    "outputs":[{"name":"ou64"},{"name":"of32"},{"name":"os"},{"name":"of16"},{"name":"oi64"}]})";
  HttpResult r = Post("/v2/models/alltypes/infer", body);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(
      r.body,
      R"({"model_name":"alltypes","model_version":"1","parameters":{"served_by":"api-test"},"outputs":[)"
      R"({"name":"ou64","datatype":"UINT64","shape":[1],"data":[18446744073709551615]},)"
      R"({"name":"of32","datatype":"FP32","shape":[2,2],"data":[1,2,3,4]},)"
      R"({"name":"os","datatype":"BYTES","shape":[2],"data":["edge","ai"]},)"
      R"({"name":"of16","datatype":"FP16","shape":[1],"data":[0.5]},)"
      R"({"name":"oi64","datatype":"INT64","shape":[1],"data":[-9223372036854775808]}]})");
}

TEST_F(KServeApiTest, BinaryTensorsInBothDirections) {
  const std::string json =
      R"({"inputs":[{"name":"INPUT0","shape":[3],"datatype":"FP32","parameters":{"binary_data_size":12}}],)"
      R"("outputs":[{"name":"OUTPUT0","parameters":{"binary_data":true}}]})";
  const float values[3] = {1.5f, -2.0f, 1e-3f};
  std::string raw(reinterpret_cast<const char*>(values), 12);
  HttpResult r = Post("/v2/models/identity/infer", json + raw,
                      {{"Inference-Header-Content-Length", std::to_string(json.size())},
                       {"Content-Type", "application/octet-stream"}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.header("content-type"), "application/octet-stream");
  const size_t header_len = std::stoul(r.header("inference-header-content-length"));
  const std::string header = r.body.substr(0, header_len);
  EXPECT_THAT(header, HasSubstr(R"("parameters":{"binary_data_size":12})"));
  EXPECT_EQ(r.body.substr(header_len), raw);

  // FP16 travels binary both ways.
  const std::string fjson =
      R"({"inputs":[{"name":"f16","shape":[2],"datatype":"FP16","parameters":{"binary_data_size":4}},)"
      R"({"name":"b","shape":[1],"datatype":"BOOL","data":[true]}],)"
      R"("parameters":{"binary_data_output":true},"outputs":[{"name":"of16"}]})";
  const uint16_t halves[2] = {0x3c00, 0xc000};  // 1.0, -2.0
  std::string hraw(reinterpret_cast<const char*>(halves), 4);
  HttpResult h = Post("/v2/models/alltypes/infer", fjson + hraw,
                      {{"Inference-Header-Content-Length", std::to_string(fjson.size())}});
  ASSERT_EQ(h.status, 200) << h.body;
  const size_t hlen = std::stoul(h.header("inference-header-content-length"));
  EXPECT_EQ(h.body.substr(hlen), hraw);
}

TEST_F(KServeApiTest, HeaderContentLengthZeroSendsTheSingleInputRaw) {
  const float values[2] = {3.0f, 4.0f};
  HttpResult r =
      Post("/v2/models/identity/infer", std::string(reinterpret_cast<const char*>(values), 8),
           {{"Inference-Header-Content-Length", "0"}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_THAT(r.body, HasSubstr(R"("shape":[2],"data":[3,4])"));
}

TEST_F(KServeApiTest, ClearErrorsForBadRequests) {
  struct Case {
    std::string method, path, body;
    std::vector<std::pair<std::string, std::string>> headers;
    int status;
    std::string message;
  };
  const std::string infer = "/v2/models/identity/infer";
  const std::string ok_json =
      R"({"inputs":[{"name":"INPUT0","shape":[1],"datatype":"FP32","data":[1]}]})";
  const std::string bin_json =
      R"({"inputs":[{"name":"INPUT0","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":8}}]})";
  const std::string bytes_json =
      R"({"inputs":[{"name":"s","shape":[1],"datatype":"BYTES","parameters":{"binary_data_size":6}},)"
      R"({"name":"b","shape":[1],"datatype":"BOOL","data":[true]}]})";
  std::string overrun("\x63\x00\x00\x00xy", 6);
  const std::vector<Case> cases = {
      {"POST", infer, "{\"inputs\": [", {}, 400, "malformed JSON"},
      {"POST",
       "/v2/models/nope/infer",
       ok_json,
       {},
       404,
       "model 'nope' is not served by this node"},
      {"POST", "/v2/models/identity/versions/7/infer", ok_json, {}, 404, "has no version '7'"},
      {"GET", infer, "", {}, 405, "method GET is not allowed"},
      {"POST", "/v2/health/live", "", {}, 405, "use GET"},
      {"POST",
       infer,
       R"({"inputs":[{"name":"INPUT0","shape":[1],"datatype":"FP99","data":[1]}]})",
       {},
       400,
       "input 'INPUT0'.datatype: unknown datatype 'FP99'"},
      {"POST",
       infer,
       R"({"inputs":[{"name":"INPUT0","shape":[3],"datatype":"FP32","data":[1,2]}]})",
       {},
       400,
       "input 'INPUT0': its shape needs 3 elements but data has 2"},
      {"POST",
       infer,
       R"({"inputs":[{"name":"INPUT0","shape":[-3],"datatype":"FP32","data":[1]}]})",
       {},
       400,
       "dimension -3 is negative"},
      {"POST",
       infer,
       R"({"inputs":[{"name":"INPUT0","shape":[4294967296,4294967296],"datatype":"FP32","data":[1]}]})",
       {},
       400,
       "more than 2^40 elements"},
      {"POST",
       infer,
       R"({"inputs":[{"name":"INPUT0","shape":[1],"datatype":"INT32","data":[1]}]})",
       {},
       400,
       "input 'INPUT0': datatype INT32 does not match the model's FP32"},
      {"POST",
       infer,
       R"({"inputs":[{"name":"X","shape":[1],"datatype":"FP32","data":[1]}]})",
       {},
       400,
       "input 'X' is not an input of model 'identity'"},
      {"POST",
       infer,
       R"({"inputs":[],"outputs":[{"name":"nope"}]})",
       {},
       400,
       "input 'INPUT0' is required"},
      {"POST",
       infer,
       bin_json + "12345678",
       {{"Inference-Header-Content-Length", "9999"}},
       400,
       "Inference-Header-Content-Length is 9999 but the body has only"},
      {"POST",
       infer,
       bin_json + "1234",
       {{"Inference-Header-Content-Length", std::to_string(bin_json.size())}},
       400,
       "binary_data_size: 8 bytes run past the end"},
      {"POST",
       "/v2/models/alltypes/infer",
       bytes_json + overrun,
       {{"Inference-Header-Content-Length", std::to_string(bytes_json.size())}},
       400,
       "tensor 's': BYTES element 0 has length 99, which runs past the end"},
      {"POST",
       "/v2/models/broken/infer",
       ok_json,
       {},
       503,
       "config.yaml: inputs[0].datatype: unknown datatype 'FP33'"},
      {"GET", "/v2/nothing", "", {}, 404, "no such endpoint"},
      {"POST",
       "/v2/models/people/infer",
       "GIF89a not a JPEG or PNG",
       {{"Inference-Header-Content-Length", "0"}},
       400,
       "'image'"},
      {"POST",
       "/v2/models/people/infer",
       std::string("\xff\xd8\xff\xe0 truncated", 14),
       {{"Inference-Header-Content-Length", "0"}},
       400,
       "'image'"},
  };
  for (const Case& c : cases) {
    HttpResult r = HttpRequestOnce(port(), c.method, c.path, c.body, c.headers);
    EXPECT_EQ(r.status, c.status) << c.path << " " << c.body << " -> " << r.body;
    EXPECT_THAT(r.body, HasSubstr(R"({"error":")")) << c.path;
    EXPECT_THAT(r.body, HasSubstr(c.message)) << c.path << " " << c.body;
  }
}

TEST_F(KServeApiTest, BodyOverTheLimitIs413) {
  HttpResult r = Post("/v2/models/identity/infer", std::string(300000, ' '));
  EXPECT_EQ(r.status, 413);
  EXPECT_THAT(r.body, HasSubstr("larger than the limit of 200000 bytes"));
}

TEST_F(KServeApiTest, HeadersThatNeverFinishAreClosedAfterTheTimeout) {
  HttpConnection c(port());
  ASSERT_TRUE(c.SendRaw("POST /v2/models/identity/infer HTTP/1.1\r\nHost: x\r\nContent-Le"));
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(c.WaitClosed(std::chrono::seconds(5)));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
}

TEST_F(KServeApiTest, RepositoryIndexReportsTheBrokenModelWithFileAndField) {
  HttpResult r = Post("/v2/repository/index", "");
  EXPECT_EQ(r.status, 200);
  EXPECT_THAT(r.body, HasSubstr(R"({"name":"broken","state":"UNAVAILABLE","reason":")"));
  EXPECT_THAT(r.body, HasSubstr("broken/config.yaml: inputs[0].datatype: unknown datatype 'FP33'"));
  EXPECT_THAT(r.body, HasSubstr(R"({"name":"identity","version":"2","state":"READY")"));
  EXPECT_THAT(agent_->log(), HasSubstr("model 'broken' is unavailable"));
}

TEST_F(KServeApiTest, NamesThatBreakTheRuleAre400AndNoAnswerSaysWhereTheRepositoryIs) {
  struct Case {
    std::string method, path, message;
  };
  const std::vector<Case> cases = {
      {"POST", "/v2/models/../infer", "model name '..' is not valid: a model name is"},
      {"GET", "/v2/models/%2e%2e", "model name '%2e%2e' is not valid"},
      {"GET", "/v2/models/.hidden/ready", "model name '.hidden' is not valid"},
      {"GET", "/v2/models/" + std::string(3000, 'x') + "/stats", "... (3000 bytes)"},
      {"GET", "/v2/models/identity/versions/x", "model version 'x' is not valid"},
      {"POST", "/v2/models/identity/versions/01/infer", "a version is a positive integer"},
      {"POST", "/v2/repository/models/../load", "model name '..' is not valid"},
      {"POST", "/v2/repository/models/./unload", "model name '.' is not valid"},
      {"POST", "/v2/repository/models/%2E%2E/load", "model name '%2E%2E' is not valid"},
  };
  for (const Case& c : cases) {
    HttpResult r = HttpRequestOnce(port(), c.method, c.path, c.method == "POST" ? "{}" : "");
    EXPECT_EQ(r.status, 400) << c.path.substr(0, 80) << ": " << r.body;
    EXPECT_THAT(r.body, HasSubstr(c.message)) << c.path.substr(0, 80);
    EXPECT_LT(r.body.size(), 1024u);
  }
  // Paths with more segments than a route has are no route.
  EXPECT_EQ(Post("/v2/repository/models/../../load", "").status, 404);
  EXPECT_EQ(Post("/v2/repository/models/a/b/unload", "").status, 404);
  // Failures name files relative to the repository, wherever the client reads them.
  for (const HttpResult& r :
       {Post("/v2/repository/index", ""), Post("/v2/models/broken/infer", R"({"inputs":[]})"),
        Post("/v2/repository/models/nope/load", "")}) {
    EXPECT_THAT(r.body, ::testing::Not(HasSubstr(repo_->path()))) << r.body;
  }
  EXPECT_THAT(agent_->log(), HasSubstr(repo_->path() + "/broken/config.yaml")) << "the log has it";
}

TEST_F(KServeApiTest, KeepAliveAndPipelining) {
  HttpConnection c(port());
  for (int i = 0; i < 50; ++i) {
    HttpResult r = c.Request(
        "POST", "/v2/models/identity/infer",
        R"({"id":")" + std::to_string(i) +
            R"(","inputs":[{"name":"INPUT0","shape":[1],"datatype":"FP32","data":[1]}]})");
    ASSERT_EQ(r.status, 200);
    ASSERT_THAT(r.body, HasSubstr(R"("id":")" + std::to_string(i) + "\""));
  }
  // Ten requests in one write; the answers come back in order.
  std::string batch;
  for (int i = 0; i < 10; ++i) {
    const std::string body =
        R"({"id":"p)" + std::to_string(i) +
        R"(","inputs":[{"name":"INPUT0","shape":[1],"datatype":"FP32","data":[1]}]})";
    batch += "POST /v2/models/identity/infer HTTP/1.1\r\nHost: x\r\nContent-Length: " +
             std::to_string(body.size()) + "\r\n\r\n" + body;
  }
  ASSERT_TRUE(c.SendRaw(batch));
  for (int i = 0; i < 10; ++i) {
    HttpResult r = c.ReadResponse();
    ASSERT_EQ(r.status, 200);
    EXPECT_THAT(r.body, HasSubstr(R"("id":"p)" + std::to_string(i) + "\""));
  }
}

TEST_F(KServeApiTest, ManyConcurrentConnections) {
  constexpr int kConnections = 200;
  std::vector<std::unique_ptr<HttpConnection>> conns;
  for (int i = 0; i < kConnections; ++i) {
    conns.push_back(std::make_unique<HttpConnection>(port()));
    ASSERT_TRUE(conns.back()->connected());
  }
  for (int i = 0; i < kConnections; ++i) {
    const std::string body =
        R"({"id":"c)" + std::to_string(i) +
        R"(","inputs":[{"name":"INPUT0","shape":[1],"datatype":"FP32","data":[1]}]})";
    ASSERT_TRUE(conns[i]->SendRaw("POST /v2/models/identity/infer HTTP/1.1\r\nContent-Length: " +
                                  std::to_string(body.size()) + "\r\n\r\n" + body));
  }
  for (int i = 0; i < kConnections; ++i) {
    HttpResult r = conns[i]->ReadResponse();
    ASSERT_EQ(r.status, 200);
    EXPECT_THAT(r.body, HasSubstr(R"("id":"c)" + std::to_string(i) + "\""));
  }
}

// The slow model's queue as its statistics say: {in_flight, queue_depth}.
std::pair<int, int> SlowLoad() {
  HttpResult s = HttpRequestOnce(KServeApiTestPort(), "GET", "/v2/models/slow/versions/1/stats");
  auto field = [&](std::string_view name) {
    const size_t at = s.body.find("\"" + std::string(name) + "\":");
    return at == std::string::npos ? -1 : std::stoi(s.body.substr(at + name.size() + 3));
  };
  return {field("in_flight"), field("queue_depth")};
}

// Waits until the slow model has `running` requests running and `queued` queued.
bool SlowLoadIs(int running, int queued) {
  return WaitFor([&] { return SlowLoad() == std::make_pair(running, queued); },
                 std::chrono::seconds(30));
}

TEST_F(KServeApiTest, FullQueueIsShedAtOnceWith503AndRetryAfter) {
  // One worker busy for 2 s and two requests queued behind it (read from the model's statistics,
  // not assumed from pauses): the next requests are refused while the first still computes.
  const std::string body =
      R"({"inputs":[{"name":"INPUT0","shape":[1],"datatype":"FP32","data":[1]}]})";
  auto post = [&] {
    return std::async(std::launch::async, [&] { return Post("/v2/models/slow/infer", body); });
  };
  auto running = post();
  ASSERT_TRUE(SlowLoadIs(1, 0));
  auto queued1 = post();
  auto queued2 = post();
  ASSERT_TRUE(SlowLoadIs(1, 2));
  for (int i = 0; i < 3; ++i) {
    HttpResult r = Post("/v2/models/slow/infer", body);
    EXPECT_EQ(r.status, 503) << r.body;
    EXPECT_EQ(r.header("retry-after"), "1");
    EXPECT_THAT(r.body, HasSubstr("queue is full"));
    // Shedding does not wait for the queue: the first request is still being computed.
    EXPECT_EQ(running.wait_for(std::chrono::seconds(0)), std::future_status::timeout)
        << "the refusal waited for the queue";
  }
  EXPECT_EQ(running.get().status, 200);
  EXPECT_EQ(queued1.get().status, 200);
  EXPECT_EQ(queued2.get().status, 200);
}

TEST_F(KServeApiTest, DeadlinePassedInTheQueueIs504AndNeverComputed) {
  auto stats = [] {
    HttpResult s = Get("/v2/models/slow/versions/1/stats");
    const size_t at = s.body.find("\"execution_count\":");
    return std::stoi(s.body.substr(at + 18));
  };
  const int before = stats();
  const std::string body =
      R"({"inputs":[{"name":"INPUT0","shape":[1],"datatype":"FP32","data":[1]}]})";
  auto busy = std::async(std::launch::async, [&] { return Post("/v2/models/slow/infer", body); });
  ASSERT_TRUE(SlowLoadIs(1, 0));
  HttpResult late = Post("/v2/models/slow/infer", body, {{"Inference-Timeout-Ms", "100"}});
  EXPECT_EQ(late.status, 504) << late.body;
  EXPECT_THAT(late.body, HasSubstr("it was not computed"));
  // Answered when its deadline passed, not when the worker came free.
  EXPECT_EQ(busy.wait_for(std::chrono::seconds(0)), std::future_status::timeout)
      << "the expired request waited for the worker";
  EXPECT_EQ(busy.get().status, 200);
  // The same through the request parameter.
  auto busy2 = std::async(std::launch::async, [&] { return Post("/v2/models/slow/infer", body); });
  ASSERT_TRUE(SlowLoadIs(1, 0));
  HttpResult late2 = Post(
      "/v2/models/slow/infer",
      R"({"parameters":{"timeout":50},"inputs":[{"name":"INPUT0","shape":[1],"datatype":"FP32","data":[1]}]})");
  EXPECT_EQ(late2.status, 504) << late2.body;
  EXPECT_EQ(busy2.wait_for(std::chrono::seconds(0)), std::future_status::timeout);
  EXPECT_EQ(busy2.get().status, 200);
  EXPECT_EQ(stats(), before + 2) << "the expired requests were never computed";
}

TEST_F(KServeApiTest, StatisticsExtension) {
  Post("/v2/models/identity/infer",
       R"({"inputs":[{"name":"INPUT0","shape":[1],"datatype":"FP32","data":[1]}]})");
  HttpResult s = Get("/v2/models/identity/stats");
  EXPECT_EQ(s.status, 200);
  EXPECT_THAT(s.body, HasSubstr(R"("model_stats":[{"name":"identity","version":"1")"));
  EXPECT_THAT(s.body, HasSubstr(R"("inference_stats":{"success":{"count":)"));
  // One execution per request for a model that does not batch: batch size 1.
  EXPECT_THAT(s.body, HasSubstr(R"("batch_stats":[{"batch_size":1,"compute_input":{"count":)"));
  HttpResult all = Get("/v2/models/stats");
  EXPECT_THAT(all.body, HasSubstr(R"("name":"alltypes")"));
  EXPECT_THAT(all.body, HasSubstr(R"("name":"slow")"));
}

}  // namespace
}  // namespace hivemesh::test
