#include "support/mesh_util.h"

#include <simdjson.h>

#include "support/http_client.h"

namespace hivemesh::test {

std::string GossipAddress(int port) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  std::string_view addr;
  if (parser.parse(HttpRequestOnce(port, "GET", "/v1/mesh/stats").body).get(doc) ||
      doc["address"].get(addr)) {
    return "";
  }
  return std::string(addr);
}

bool WaitFor(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return condition();
}

int PeersHosting(int port, const std::string& model) {
  simdjson::dom::parser parser;
  simdjson::dom::element self;
  if (parser.parse(HttpRequestOnce(port, "GET", "/v2").body).get(self)) return -1;
  std::string_view self_name;
  if (self["node"].get(self_name)) return -1;
  const std::string self_copy(self_name);
  simdjson::dom::parser members_parser;
  simdjson::dom::element doc;
  if (members_parser.parse(HttpRequestOnce(port, "GET", "/v1/mesh/members").body).get(doc)) {
    return -1;
  }
  int count = 0;
  simdjson::dom::array members;
  if (doc["members"].get(members)) return -1;
  for (simdjson::dom::element m : members) {
    std::string_view name, state;
    bool draining = false;
    if (m["name"].get(name) || m["state"].get(state) || m["draining"].get(draining)) continue;
    if (name == self_copy || state != "alive" || draining) continue;
    simdjson::dom::array models;
    if (m["models"].get(models)) continue;
    for (simdjson::dom::element a : models) {
      std::string_view n;
      bool ready = false;
      if (!a["name"].get(n) && n == model && !a["ready"].get(ready) && ready) ++count;
    }
  }
  return count;
}

long RouteCounter(int port, const std::string& key, const std::string& peer) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(HttpRequestOnce(port, "GET", "/v1/mesh/routes").body).get(doc)) return -1;
  int64_t value = -1;
  if (peer.empty()) return doc[key].get(value) ? -1 : static_cast<long>(value);
  simdjson::dom::array peers;
  if (doc["peers"].get(peers)) return -1;
  for (simdjson::dom::element p : peers) {
    std::string_view node;
    if (p["node"].get(node) || node != peer) continue;
    if (key == "ejected") {
      bool ejected = false;
      return p[key].get(ejected) ? -1 : (ejected ? 1 : 0);
    }
    return p[key].get(value) ? -1 : static_cast<long>(value);
  }
  return -1;
}

bool WaitSettled(int port) {
  return WaitFor(
      [port] {
        simdjson::dom::parser parser;
        simdjson::dom::element doc;
        if (parser.parse(HttpRequestOnce(port, "GET", "/v1/mesh/routes").body).get(doc)) {
          return false;
        }
        bool settling = true;
        return !doc["settling"].get(settling) && !settling;
      },
      std::chrono::seconds(30));
}

std::string LoadGenerator::Result::Describe() const {
  std::string out = "ok=" + std::to_string(ok);
  for (const auto& [node, n] : served_by) out += " " + node + "=" + std::to_string(n);
  for (const auto& [status, n] : by_status) {
    out += " status" + std::to_string(status) + "=" + std::to_string(n);
  }
  if (!failures.empty()) out += " first failure: " + failures.front();
  return out;
}

LoadGenerator::LoadGenerator(int port, std::string path, std::string body, int threads,
                             std::chrono::milliseconds interval)
    : port_(port), path_(std::move(path)), body_(std::move(body)), interval_(interval) {
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Run(); });
}

LoadGenerator::~LoadGenerator() { Stop(); }

void LoadGenerator::Run() {
  auto conn = std::make_unique<HttpConnection>(port_);
  while (!stop_.load()) {
    HttpResult r = conn->Request("POST", path_, body_);
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (r.status == 200) {
        ++result_.ok;
        ++result_.served_by[r.header("hivemesh-served-by")];
      } else {
        ++result_.by_status[r.status];
        if (result_.failures.size() < 10) {
          result_.failures.push_back(std::to_string(r.status) + " " + r.body);
        }
      }
    }
    if (r.status == 0 || r.header("connection") == "close") {
      conn = std::make_unique<HttpConnection>(port_);
    }
    if (interval_.count() > 0) std::this_thread::sleep_for(interval_);
  }
}

LoadGenerator::Result LoadGenerator::Stop() {
  stop_.store(true);
  for (std::thread& t : threads_) {
    if (t.joinable()) t.join();
  }
  return Snapshot();
}

LoadGenerator::Result LoadGenerator::Snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  return result_;
}

}  // namespace hivemesh::test
