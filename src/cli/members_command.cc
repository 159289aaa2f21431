#include "cli/members_command.h"

#include <simdjson.h>

#include <cstdio>
#include <string>
#include <vector>

#include "base/strings.h"
#include "cli/http_get.h"

namespace hivemesh {

int RunMembersCommand(const std::string& node, const std::string& output) {
  absl::StatusOr<HttpReply> reply = HttpGet(node, "/v1/mesh/members");
  if (!reply.ok()) {
    std::fprintf(stderr, "hivemesh members: %s\n", std::string(MessageOf(reply.status())).c_str());
    return 1;
  }
  if (reply->status != 200) {
    std::fprintf(stderr, "hivemesh members: the node answered %d: %s\n", reply->status,
                 reply->body.c_str());
    return 1;
  }
  if (output == "json") {
    std::printf("%s\n", reply->body.c_str());
    return 0;
  }
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(reply->body).get(doc) != simdjson::SUCCESS) {
    std::fprintf(stderr, "hivemesh members: the node sent malformed JSON\n");
    return 1;
  }
  std::vector<std::vector<std::string>> rows = {
      {"NAME", "STATE", "GOSSIP", "API", "LABELS", "MODELS", "LOAD AGE"}};
  simdjson::dom::array members;
  if (doc["members"].get(members) != simdjson::SUCCESS) {
    std::fprintf(stderr, "hivemesh members: unexpected answer from the node\n");
    return 1;
  }
  for (simdjson::dom::element m : members) {
    auto str = [&](const char* key) {
      std::string_view v;
      return m[key].get(v) == simdjson::SUCCESS ? std::string(v) : std::string("-");
    };
    std::string labels, models;
    simdjson::dom::object lab;
    if (m["labels"].get(lab) == simdjson::SUCCESS) {
      for (auto [k, v] : lab) {
        std::string_view sv;
        if (v.get(sv) != simdjson::SUCCESS) continue;
        StrAppend(&labels, labels.empty() ? "" : ",", k, "=", sv);
      }
    }
    simdjson::dom::array mods;
    if (m["models"].get(mods) == simdjson::SUCCESS) {
      for (simdjson::dom::element x : mods) {
        std::string_view name;
        if (x["name"].get(name) == simdjson::SUCCESS) {
          StrAppend(&models, models.empty() ? "" : ",", name);
        }
      }
    }
    int64_t age = -1;
    std::string age_text = "-";
    if (m["load"]["age_ms"].get(age) == simdjson::SUCCESS) age_text = StrCat(age, " ms");
    rows.push_back({str("name"), str("state"), str("address"), str("api_address"),
                    labels.empty() ? "-" : labels, models.empty() ? "-" : models, age_text});
  }
  std::vector<size_t> width(rows[0].size(), 0);
  for (const auto& r : rows) {
    for (size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
  }
  for (const auto& r : rows) {
    std::string line;
    for (size_t i = 0; i < r.size(); ++i) {
      line += r[i];
      if (i + 1 < r.size()) line += std::string(width[i] - r[i].size() + 2, ' ');
    }
    std::printf("%s\n", line.c_str());
  }
  return 0;
}

}  // namespace hivemesh
