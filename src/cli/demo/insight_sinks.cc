#include "cli/demo/insight_sinks.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <simdjson.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "base/stable_port.h"
#include "base/strings.h"
#include "cli/demo/child_process.h"
#include "cli/http_client.h"

namespace hivemesh::demo {
namespace {

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

bool Listening(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  close(fd);
  return ok;
}

}  // namespace

std::vector<ReceivedInsight> ReadInsights(const std::string& path, size_t* other) {
  std::vector<ReceivedInsight> out;
  std::ifstream in(path);
  std::string line;
  simdjson::dom::parser parser;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    simdjson::dom::object doc;
    ReceivedInsight r;
    std::string_view id, topic, node, model, trace;
    int64_t time_ms = 0;
    simdjson::dom::object values;
    if (parser.parse(line).get(doc) != simdjson::SUCCESS ||
        doc["id"].get(id) != simdjson::SUCCESS || doc["topic"].get(topic) != simdjson::SUCCESS ||
        doc["node"].get(node) != simdjson::SUCCESS ||
        doc["time_ms"].get(time_ms) != simdjson::SUCCESS ||
        doc["values"].get(values) != simdjson::SUCCESS) {
      if (other != nullptr) ++*other;
      continue;
    }
    // Model and trace are empty for a client's own insight.
    if (doc["model"].get(model) != simdjson::SUCCESS) model = {};
    if (doc["trace"].get(trace) != simdjson::SUCCESS) trace = {};
    r.id = std::string(id);
    r.topic = std::string(topic);
    r.node = std::string(node);
    r.model = std::string(model);
    r.trace = std::string(trace);
    r.time_ms = time_ms;
    r.values = simdjson::minify(values);
    out.push_back(std::move(r));
  }
  return out;
}

std::optional<double> ValueOf(const ReceivedInsight& insight, std::string_view key) {
  simdjson::dom::parser parser;
  simdjson::dom::object values;
  if (parser.parse(insight.values).get(values) != simdjson::SUCCESS) return std::nullopt;
  simdjson::dom::element v;
  if (values[key].get(v) != simdjson::SUCCESS) return std::nullopt;
  double d = 0;
  int64_t i = 0;
  uint64_t u = 0;
  if (v.get(d) == simdjson::SUCCESS) return d;
  if (v.get(i) == simdjson::SUCCESS) return static_cast<double>(i);
  if (v.get(u) == simdjson::SUCCESS) return static_cast<double>(u);
  return std::nullopt;
}

InsightSinks::InsightSinks(std::string binary, std::string work_dir)
    : binary_(std::move(binary)),
      dir_((std::filesystem::path(work_dir) / "insights").string()),
      subscriber_file_(dir_ + "/subscriber.jsonl"),
      broker_file_(dir_ + "/broker.jsonl") {
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
}

InsightSinks::~InsightSinks() { StopAll(); }

absl::StatusOr<std::string> InsightSinks::StartBroker(const std::string& filter) {
  const std::string mosquitto = FindProgram("mosquitto");
  const std::string sub = FindProgram("mosquitto_sub");
  const std::string pub = FindProgram("mosquitto_pub");
  if (mosquitto.empty() || sub.empty() || pub.empty()) {
    return absl::FailedPreconditionError(
        "mosquitto is not installed (scripts/install-deps.sh installs it)");
  }
  absl::StatusOr<int> port = StablePort();
  if (!port.ok()) return port.status();
  broker_port_ = *port;
  const std::string conf = dir_ + "/mosquitto.conf";
  {
    std::ofstream out(conf);
    out << "# The site's uplink broker, as the demo runs it.\n"
        << "listener " << broker_port_ << " 127.0.0.1\n"
        << "allow_anonymous true\npersistence false\n"
        // The consumer keeps up; nothing it was sent is dropped for a queue limit.
        << "max_queued_messages 0\nmax_queued_bytes 0\n";
  }
  const std::string log = dir_ + "/mosquitto.log";
  absl::StatusOr<pid_t> broker = Spawn({mosquitto, "-c", conf}, log, log);
  if (!broker.ok()) return broker.status();
  broker_ = *broker;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!Listening(broker_port_)) {
    if (std::chrono::steady_clock::now() > deadline) {
      return absl::UnavailableError(StrCat("mosquitto did not listen within 10 s; see ", log));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const std::string port_text = std::to_string(broker_port_);
  absl::StatusOr<pid_t> consumer =
      Spawn({sub, "-h", "127.0.0.1", "-p", port_text, "-t", filter, "-q", "1", "-V", "mqttv5", "-i",
             "hivemesh-demo-cloud", "-c"},
            broker_file_, dir_ + "/mosquitto_sub.log");
  if (!consumer.ok()) return consumer.status();
  consumer_ = *consumer;
  // A probe through the broker: the consumer is subscribed once one arrives.
  const std::string probe_topic =
      filter.ends_with("#") ? StrCat(filter.substr(0, filter.size() - 1), "demo/probe") : filter;
  for (;;) {
    absl::StatusOr<pid_t> p = Spawn({pub, "-h", "127.0.0.1", "-p", port_text, "-t", probe_topic,
                                     "-q", "1", "-m", R"({"probe":true})"},
                                    dir_ + "/mosquitto_pub.log", dir_ + "/mosquitto_pub.log");
    if (p.ok()) Reap(*p, std::chrono::steady_clock::now() + std::chrono::seconds(5));
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    if (ReadAll(broker_file_).find("probe") != std::string::npos) break;
    if (std::chrono::steady_clock::now() > deadline) {
      return absl::UnavailableError(
          StrCat("a probe through mosquitto did not reach its consumer within 10 s; see ", dir_));
    }
  }
  return StrCat("mqtt://127.0.0.1:", broker_port_);
}

absl::Status InsightSinks::StartSubscriber(const std::string& node_address,
                                           const std::string& filter,
                                           const std::map<std::string, std::string>& publishers,
                                           std::chrono::seconds timeout) {
  absl::StatusOr<pid_t> sub =
      Spawn({binary_, "sub", filter, "--node", node_address, "--output", "json"}, subscriber_file_,
            dir_ + "/subscriber.log");
  if (!sub.ok()) return sub.status();
  subscriber_ = *sub;
  const std::string base =
      filter.ends_with("#") ? filter.substr(0, filter.size() - 1) : filter + "/";
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::set<std::string> waiting;
  for (const auto& [name, _] : publishers) waiting.insert(name);
  while (!waiting.empty()) {
    for (const std::string& name : waiting) {
      HttpClient client(publishers.at(name), 2000);
      (void)client.Request("POST", StrCat("/v1/insights/", base, "demo/probe"),
                           StrCat(R"({"probe":")", name, R"("})"),
                           {{"Content-Type", "application/json"}});
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    for (const ReceivedInsight& r : ReadInsights(subscriber_file_)) waiting.erase(r.node);
    if (!waiting.empty() && std::chrono::steady_clock::now() > deadline) {
      std::string names;
      for (const std::string& n : waiting) StrAppend(&names, names.empty() ? "" : ", ", n);
      return absl::DeadlineExceededError(StrCat("the subscriber at ", node_address,
                                                " got nothing published at ", names, " within ",
                                                timeout.count(), " s; see ", dir_));
    }
  }
  return absl::OkStatus();
}

void InsightSinks::StopAll() {
  for (pid_t* pid : {&subscriber_, &consumer_, &broker_}) {
    if (*pid > 0) Stop(*pid, std::chrono::seconds(5));
    *pid = -1;
  }
}

}  // namespace hivemesh::demo
