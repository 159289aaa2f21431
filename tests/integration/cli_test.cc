// The `hivemesh` client commands (infer, models, top, members) run as the real binary against two
// real agents on loopback: node-b hosts `identity` and `people-detector`, node-a only
// `people-detector`, so an inference of `identity` through node-a is forwarded to node-b. Checks
// what the commands print, what they send (a real JPEG through the binary extension) and their
// exit codes: 0 success, 1 the node answered an error, 2 usage, 3 the node could not be reached.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <simdjson.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <turbojpeg.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "support/agent_process.h"
#include "support/http_client.h"
#include "support/mesh_util.h"

namespace hivemesh::test {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

struct CliResult {
  int code = -1;
  std::string out, err;
  std::string Describe() const {
    return "exit " + std::to_string(code) + "\nstdout:\n" + out + "\nstderr:\n" + err;
  }
};

std::string ReadAll(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// Runs `hivemesh <args>` with stdout and stderr captured (and stdin from `stdin_path` if given),
// waiting at most 60 s; a run that takes longer is killed and reported as exit -1.
CliResult RunCli(const std::vector<std::string>& args, const std::string& stdin_path = "") {
  TempDir dir;
  const std::string out_path = dir.path() + "/out", err_path = dir.path() + "/err";
  std::vector<std::string> argv = {HivemeshBinary()};
  argv.insert(argv.end(), args.begin(), args.end());
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int in = ::open(stdin_path.empty() ? "/dev/null" : stdin_path.c_str(), O_RDONLY);
    ::dup2(in, 0);
    ::dup2(out, 1);
    ::dup2(err, 2);
    std::vector<char*> cargv;
    for (std::string& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    ::execv(cargv[0], cargv.data());
    ::_exit(127);
  }
  CliResult r;
  int status = 0;
  const bool exited =
      WaitFor([&] { return ::waitpid(pid, &status, WNOHANG) == pid; }, std::chrono::seconds(60));
  if (!exited) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
  } else if (WIFEXITED(status)) {
    r.code = WEXITSTATUS(status);
  }
  r.out = ReadAll(out_path);
  r.err = ReadAll(err_path);
  return r;
}

// A real JPEG (libturbojpeg): a 160x320 grey scene with a dark upright figure.
std::string MakeJpeg() {
  const int width = 160, height = 320;
  std::vector<unsigned char> bgr(static_cast<size_t>(width * height * 3), 200);
  for (int y = 60; y < 280; ++y) {
    for (int x = 60; x < 100; ++x) {
      for (int c = 0; c < 3; ++c) bgr[static_cast<size_t>((y * width + x) * 3 + c)] = 40;
    }
  }
  tjhandle tj = tjInitCompress();
  unsigned char* jpeg = nullptr;
  unsigned long size = 0;
  const int rc = tjCompress2(tj, bgr.data(), width, 0, height, TJPF_BGR, &jpeg, &size, TJSAMP_420,
                             90, TJFLAG_ACCURATEDCT);
  std::string out = rc == 0 ? std::string(reinterpret_cast<char*>(jpeg), size) : std::string();
  tjFree(jpeg);
  tjDestroy(tj);
  return out;
}

simdjson::dom::element ParseJson(simdjson::dom::parser& parser, const std::string& text) {
  simdjson::dom::element doc;
  EXPECT_EQ(parser.parse(text).get(doc), simdjson::SUCCESS) << text;
  return doc;
}

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::ifstream people(SourceDir() + "/models/people-detector/config.yaml");
    std::stringstream people_config;
    people_config << people.rdbuf();
    dir_.Write("b/identity/config.yaml", IdentityModelConfig());
    dir_.Write("b/identity/1/.keep", "");
    dir_.Write("b/people-detector/config.yaml", people_config.str());
    dir_.Write("b/people-detector/1/.keep", "");
    dir_.Write("a/people-detector/config.yaml", people_config.str());
    dir_.Write("a/people-detector/1/.keep", "");
    b_ = std::make_unique<AgentProcess>(
        std::vector<std::string>{"--node-name", "node-b", "--model-repository", dir_.path() + "/b",
                                 "--labels", "zone=west"});
    ASSERT_TRUE(b_->ok()) << b_->log();
    a_ = std::make_unique<AgentProcess>(
        std::vector<std::string>{"--node-name", "node-a", "--model-repository", dir_.path() + "/a",
                                 "--labels", "zone=east", "--join", GossipAddress(b_->port())});
    ASSERT_TRUE(a_->ok()) << a_->log();
    ASSERT_TRUE(WaitFor([&] { return PeersHosting(a_->port(), "identity") == 1; },
                        std::chrono::seconds(10)))
        << a_->log();
    ASSERT_TRUE(WaitFor([&] { return PeersHosting(b_->port(), "people-detector") == 1; },
                        std::chrono::seconds(10)))
        << b_->log();
    // node-a's routing table follows gossip within 100 ms: wait until it forwards.
    ASSERT_TRUE(WaitFor(
        [&] {
          return HttpRequestOnce(
                     a_->port(), "POST", "/v2/models/identity/infer",
                     R"({"inputs":[{"name":"INPUT0","shape":[1],"datatype":"FP32","data":[0]}]})")
                     .status == 200;
        },
        std::chrono::seconds(5)));
  }

  std::string A() const { return "127.0.0.1:" + std::to_string(a_->port()); }
  std::string B() const { return "127.0.0.1:" + std::to_string(b_->port()); }

  TempDir dir_;
  std::unique_ptr<AgentProcess> b_, a_;
};

TEST_F(CliTest, InferDataOnTheHostAndThroughANodeWithoutTheModel) {
  CliResult here = RunCli({"infer", "identity", "--data", "1,2.5,-3", "--node", B()});
  ASSERT_EQ(here.code, 0) << here.Describe();
  EXPECT_THAT(here.out, HasSubstr("OUTPUT0  FP32      [3]    1, 2.5, -3\n"));
  EXPECT_THAT(here.out, HasSubstr("served by node-b in "));
  EXPECT_EQ(here.err, "");

  // node-a does not host identity: the CLI reads its metadata from node-b (found in node-a's
  // member list) and sends the inference to node-a, which forwards it.
  CliResult via_a = RunCli({"infer", "identity", "--data", "[4,5]", "--node", A()});
  ASSERT_EQ(via_a.code, 0) << via_a.Describe();
  EXPECT_THAT(via_a.out, HasSubstr("OUTPUT0  FP32      [2]    4, 5\n"));
  EXPECT_THAT(via_a.out, HasSubstr("served by node-b in "));

  CliResult json = RunCli({"infer", "identity", "--data", "7", "--node", A(), "-o", "json"});
  ASSERT_EQ(json.code, 0) << json.Describe();
  simdjson::dom::parser parser;
  simdjson::dom::element doc = ParseJson(parser, json.out);
  EXPECT_EQ(std::string_view(doc["parameters"]["served_by"]), "node-b");
  EXPECT_EQ(std::string_view(doc["outputs"].at(0)["name"]), "OUTPUT0");
  EXPECT_EQ(double(doc["outputs"].at(0)["data"].at(0)), 7.0);
  EXPECT_GE(RouteCounter(a_->port(), "forwarded"), 2);
}

TEST_F(CliTest, InferImageSendsARealJpegAsTheBytesInput) {
  const std::string jpeg = MakeJpeg();
  ASSERT_GT(jpeg.size(), 100u);
  dir_.Write("frame.jpg", jpeg);
  const std::string frame = dir_.path() + "/frame.jpg";
  for (const std::string& node : {A(), B()}) {
    CliResult r = RunCli({"infer", "people-detector", "--image", frame, "--node", node});
    ASSERT_EQ(r.code, 0) << r.Describe();
    EXPECT_THAT(r.out, HasSubstr("boxes   FP32"));
    EXPECT_THAT(r.out, HasSubstr("count   INT32     [1]"));
    EXPECT_THAT(r.out, HasSubstr("(model people-detector, version 1)"));
    EXPECT_THAT(r.out, ::testing::ContainsRegex("served by node-[ab] in "));
  }
  CliResult json = RunCli({"infer", "people-detector", "--image", frame, "--node", A(), "-o",
                           "json", "--timeout-ms", "20000"});
  ASSERT_EQ(json.code, 0) << json.Describe();
  simdjson::dom::parser parser;
  simdjson::dom::element doc = ParseJson(parser, json.out);
  simdjson::dom::array outputs = doc["outputs"];
  ASSERT_EQ(outputs.size(), 3u);
  EXPECT_EQ(std::string_view(outputs.at(2)["name"]), "count");
  const int64_t count = outputs.at(2)["data"].at(0);
  EXPECT_EQ(int64_t(outputs.at(1)["shape"].at(0)), count) << "one score per detection";

  // The node decodes what it is sent: a file that only starts like a JPEG is refused by the
  // node (1), a file that is not an image at all by the CLI (2).
  dir_.Write("broken.jpg", std::string("\xFF\xD8\xFF\xE0", 4) + "not really a jpeg");
  CliResult broken =
      RunCli({"infer", "people-detector", "--image", dir_.path() + "/broken.jpg", "--node", A()});
  EXPECT_EQ(broken.code, 1) << broken.Describe();
  EXPECT_THAT(broken.err, HasSubstr("answered 400 Bad Request"));
  dir_.Write("notes.txt", "hello");
  CliResult text =
      RunCli({"infer", "people-detector", "--image", dir_.path() + "/notes.txt", "--node", A()});
  EXPECT_EQ(text.code, 2) << text.Describe();
  EXPECT_THAT(text.err, HasSubstr("is not a JPEG or PNG file"));
}

TEST_F(CliTest, InferJsonSendsTheBodyAsIsFromAFileOrStdin) {
  dir_.Write("request.json",
             R"({"id":"cli-1","inputs":[{"name":"INPUT0","shape":[4],"datatype":"FP32",)"
             R"("data":[1,2,3,4]}]})");
  const std::string file = dir_.path() + "/request.json";
  CliResult r = RunCli({"infer", "identity", "--json", file, "--node", A()});
  ASSERT_EQ(r.code, 0) << r.Describe();
  EXPECT_THAT(r.out, HasSubstr("OUTPUT0  FP32      [4]    1, 2, 3, 4\n"));
  EXPECT_THAT(r.out, HasSubstr("served by node-b"));
  CliResult stdin_run =
      RunCli({"infer", "identity", "--json", "-", "--node", B(), "-o", "json"}, file);
  ASSERT_EQ(stdin_run.code, 0) << stdin_run.Describe();
  EXPECT_THAT(stdin_run.out, HasSubstr(R"("id":"cli-1")"));
  // The node's own refusal of a bad body: exit 1 with the status and the node's message.
  dir_.Write("bad.json",
             R"({"inputs":[{"name":"INPUT0","shape":[3],"datatype":"FP32","data":[1]}]})");
  CliResult bad = RunCli({"infer", "identity", "--json", dir_.path() + "/bad.json", "--node", B()});
  EXPECT_EQ(bad.code, 1) << bad.Describe();
  EXPECT_THAT(bad.err, HasSubstr("hivemesh infer: the node at " + B() + " answered 400"));
  EXPECT_THAT(bad.err, HasSubstr("INPUT0"));
  EXPECT_EQ(bad.out, "");
}

TEST_F(CliTest, ModelsListsEveryModelWithItsHosts) {
  CliResult r = RunCli({"models", "--node", A()});
  ASSERT_EQ(r.code, 0) << r.Describe();
  EXPECT_THAT(r.out, HasSubstr("MODEL"));
  EXPECT_THAT(r.out, ::testing::ContainsRegex("identity +1 +1/1  node-b "));
  EXPECT_THAT(r.out, ::testing::ContainsRegex("people-detector +1 +2/2  node-a, node-b "));

  CliResult json = RunCli({"models", "--node", A(), "-o", "json"});
  ASSERT_EQ(json.code, 0) << json.Describe();
  simdjson::dom::parser parser;
  simdjson::dom::element doc = ParseJson(parser, json.out);
  simdjson::dom::array models = doc["models"];
  ASSERT_EQ(models.size(), 2u) << json.out;
  simdjson::dom::element people = models.at(1);
  EXPECT_EQ(std::string_view(people["name"]), "people-detector");
  EXPECT_EQ(int64_t(people["ready"]), 2);
  EXPECT_EQ(int64_t(people["total"]), 2);
  EXPECT_EQ(std::string_view(people["nodes"].at(0)["name"]), "node-a");
  EXPECT_EQ(std::string_view(people["nodes"].at(1)["name"]), "node-b");
  EXPECT_EQ(std::string_view(people["data_policy"]), "mesh");
}

TEST_F(CliTest, TopPrintsOneJsonObjectPerRefreshWithRates) {
  // Steady load on node-b while top watches.
  LoadGenerator load(b_->port(), "/v2/models/identity/infer",
                     R"({"inputs":[{"name":"INPUT0","shape":[1],"datatype":"FP32","data":[1]}]})",
                     1, std::chrono::milliseconds(5));
  CliResult r =
      RunCli({"top", "--node", A(), "--count", "2", "--interval-ms", "300", "-o", "json"});
  const LoadGenerator::Result sent = load.Stop();
  ASSERT_EQ(r.code, 0) << r.Describe();
  ASSERT_GT(sent.ok, 0) << sent.Describe();
  std::vector<std::string> lines;
  std::stringstream in(r.out);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  ASSERT_EQ(lines.size(), 2u) << r.out;
  double b_rate_seen = 0;
  for (const std::string& line : lines) {
    simdjson::dom::parser parser;
    simdjson::dom::element doc = ParseJson(parser, line);
    simdjson::dom::array nodes = doc["nodes"];
    ASSERT_EQ(nodes.size(), 2u) << line;
    EXPECT_EQ(std::string_view(nodes.at(0)["name"]), "node-a");
    EXPECT_EQ(std::string_view(nodes.at(0)["zone"]), "east");
    EXPECT_EQ(std::string_view(nodes.at(1)["name"]), "node-b");
    EXPECT_EQ(std::string_view(nodes.at(1)["state"]), "alive");
    double rate = -1;
    ASSERT_EQ(nodes.at(1)["requests_per_s"].get(rate), simdjson::SUCCESS) << line;
    b_rate_seen = std::max(b_rate_seen, rate);
    EXPECT_FALSE(nodes.at(1)["local"].is_null()) << line;
  }
  EXPECT_GT(b_rate_seen, 0) << r.out;

  // Not a terminal: plain tables, no ANSI codes.
  CliResult table = RunCli({"top", "--node", A(), "--count", "1", "--interval-ms", "100"});
  ASSERT_EQ(table.code, 0) << table.Describe();
  EXPECT_THAT(table.out, HasSubstr("NAME    STATE  ZONE  MODELS  QUEUED  RUNNING  REQ/S"));
  EXPECT_THAT(table.out, HasSubstr("node-b  alive  west"));
  EXPECT_THAT(table.out, Not(HasSubstr("\x1b[")));
}

TEST_F(CliTest, MembersListsBothNodes) {
  CliResult r = RunCli({"members", "--node", A()});
  ASSERT_EQ(r.code, 0) << r.Describe();
  EXPECT_THAT(r.out, HasSubstr("node-a  alive"));
  EXPECT_THAT(r.out, HasSubstr("node-b  alive"));
  EXPECT_THAT(r.out, HasSubstr("zone=west"));
  CliResult json = RunCli({"members", "--node", A(), "-o", "json"});
  ASSERT_EQ(json.code, 0) << json.Describe();
  simdjson::dom::parser parser;
  simdjson::dom::element doc = ParseJson(parser, json.out);
  EXPECT_EQ(simdjson::dom::array(doc["members"]).size(), 2u);
  // Each member says its release, gossiped in its metadata: the binary's --version.
  CliResult version = RunCli({"--version"});
  ASSERT_EQ(version.code, 0) << version.Describe();
  const std::string release = version.out.substr(0, version.out.find('\n'));
  ASSERT_FALSE(release.empty());
  for (simdjson::dom::element m : simdjson::dom::array(doc["members"])) {
    EXPECT_EQ(std::string_view(m["version"]), release);
  }
  EXPECT_THAT(r.out, HasSubstr("  " + release + "\n"));
}

TEST_F(CliTest, HealthExitsZeroWhenTheNodeIsReadyOrLive) {
  CliResult ready = RunCli({"health", "--node", A()});
  ASSERT_EQ(ready.code, 0) << ready.Describe();
  EXPECT_EQ(ready.out, A() + ": ready\n");
  CliResult live = RunCli({"health", "--live", "--node", A(), "-o", "json"});
  ASSERT_EQ(live.code, 0) << live.Describe();
  EXPECT_EQ(live.out, "{\"live\":true}\n");
}

TEST_F(CliTest, ErrorsFromTheNodeExitOne) {
  ASSERT_TRUE(WaitSettled(a_->port()));  // an unknown model is 404 once the view settled
  CliResult unknown = RunCli({"infer", "nowhere", "--data", "1", "--node", A()});
  EXPECT_EQ(unknown.code, 1) << unknown.Describe();
  EXPECT_THAT(unknown.err, HasSubstr("hivemesh infer: the node at " + A() + " answered 404"));
  EXPECT_THAT(unknown.err, HasSubstr("nowhere"));
  EXPECT_EQ(unknown.out, "");
  CliResult json_unknown = RunCli({"infer", "nowhere", "--json", "-", "--node", A()}, "/dev/null");
  EXPECT_EQ(json_unknown.code, 1) << json_unknown.Describe();
  CliResult bad_version =
      RunCli({"infer", "identity", "--version", "9", "--data", "1", "--node", B()});
  EXPECT_EQ(bad_version.code, 1) << bad_version.Describe();
  // Data that does not fit the model is a usage error, found before anything is sent.
  CliResult bad_data = RunCli({"infer", "identity", "--data", "1,x", "--node", A()});
  EXPECT_EQ(bad_data.code, 2) << bad_data.Describe();
  EXPECT_THAT(bad_data.err, HasSubstr("value 2 ('x')"));
}

TEST(CliNoNodeTest, UnreachableNodeExitsThree) {
  const std::string nobody = "127.0.0.1:" + std::to_string(UnusedPort());
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{"infer", "identity", "--data", "1"},
                                             {"models"},
                                             {"members"},
                                             {"health"},
                                             {"top", "--count", "1"}}) {
    std::vector<std::string> full = args;
    full.insert(full.end(), {"--node", nobody});
    CliResult r = RunCli(full);
    EXPECT_EQ(r.code, 3) << args[0] << "\n" << r.Describe();
    EXPECT_THAT(r.err, HasSubstr("cannot connect to the node at " + nobody)) << args[0];
  }
  // $HIVEMESH_NODE stands in for --node.
  ::setenv("HIVEMESH_NODE", nobody.c_str(), 1);
  CliResult env = RunCli({"models"});
  ::unsetenv("HIVEMESH_NODE");
  EXPECT_EQ(env.code, 3) << env.Describe();
  EXPECT_THAT(env.err, HasSubstr(nobody));
}

TEST(CliNoNodeTest, UsageErrorsExitTwo) {
  const std::vector<std::vector<std::string>> cases = {
      {"infer", "identity", "--bogus"},
      {"infer"},
      {"infer", "identity"},
      {"infer", "identity", "--data", "1", "--json", "x.json"},
      {"infer", "identity", "--image", "/nonexistent/frame.jpg"},
      {"infer", "identity", "--json", "/nonexistent/request.json"},
      {"infer", "identity", "--data", "1", "--node", "not-an-address"},
      {"models", "-o", "yaml"},
      {"top", "--interval-ms", "5"},
      {"top", "--count", "many"},
      {"members", "extra"},
      {"no-such-command"},
      {},
  };
  for (const std::vector<std::string>& args : cases) {
    CliResult r = RunCli(args);
    std::string joined;
    for (const std::string& a : args) joined += a + " ";
    EXPECT_EQ(r.code, 2) << joined << "\n" << r.Describe();
    EXPECT_NE(r.err, "") << joined;
  }
  CliResult missing = RunCli({"infer", "identity", "--image", "/nonexistent/frame.jpg"});
  EXPECT_THAT(missing.err, HasSubstr("cannot read '/nonexistent/frame.jpg'"));
}

TEST(CliNoNodeTest, EveryCommandHasHelpWithExitCodes) {
  for (const char* command : {"infer", "models", "top", "members", "health"}) {
    CliResult r = RunCli({command, "--help"});
    EXPECT_EQ(r.code, 0) << command << "\n" << r.Describe();
    EXPECT_THAT(r.out, HasSubstr("--node")) << command;
    EXPECT_THAT(r.out, HasSubstr("--output")) << command;
    EXPECT_THAT(r.out, HasSubstr("Examples:")) << command;
    EXPECT_THAT(r.out, HasSubstr("Exit codes:")) << command;
    EXPECT_THAT(r.out, HasSubstr("3  the node could not be reached")) << command;
  }
  CliResult infer = RunCli({"infer", "--help"});
  for (const char* flag : {"--image", "--json", "--data", "--version", "--timeout-ms", "--input"}) {
    EXPECT_THAT(infer.out, HasSubstr(flag));
  }
  CliResult top = RunCli({"top", "--help"});
  EXPECT_THAT(top.out, HasSubstr("--interval-ms"));
  EXPECT_THAT(top.out, HasSubstr("--count"));
}

}  // namespace
}  // namespace hivemesh::test
