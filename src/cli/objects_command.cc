#include "cli/objects_command.h"

#include <simdjson.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>

#include "base/status_macros.h"
#include "base/strings.h"
#include "cli/cli_flags.h"
#include "cli/table.h"

namespace hivemesh::cli {
namespace {

constexpr std::string_view kServices[] = {"services", "service", "svc", "Service"};
constexpr std::string_view kWorkloads[] = {"workloads",  "workload", "deployments",
                                           "deployment", "deploy",   "Deployment"};

// "Service" or "Deployment" for what a command line may say; empty for anything else.
std::string_view KindOf(std::string_view text) {
  for (std::string_view s : kServices) {
    if (text == s) return "Service";
  }
  for (std::string_view s : kWorkloads) {
    if (text == s) return "Deployment";
  }
  return {};
}

std::string Age(int64_t ms) {
  const int64_t s = std::max<int64_t>(ms / 1000, 0);
  if (s >= 86400) return StrCat(s / 86400, "d");
  if (s >= 3600) return StrCat(s / 3600, "h");
  if (s >= 60) return StrCat(s / 60, "m");
  return StrCat(s, "s");
}

std::string Labels(simdjson::dom::element labels) {
  std::string out;
  simdjson::dom::object o;
  if (labels.get(o) != simdjson::SUCCESS) return "-";
  for (auto [k, v] : o) {
    std::string_view value;
    if (v.get(value) != simdjson::SUCCESS) continue;
    StrAppend(&out, out.empty() ? "" : ",", k, "=", value);
  }
  return out.empty() ? "-" : out;
}

}  // namespace

absl::StatusOr<std::string> ReadManifests(const std::string& path) {
  std::error_code ec;
  if (path != "-" && std::filesystem::is_directory(path, ec)) {
    std::vector<std::filesystem::path> files;
    for (const auto& entry : std::filesystem::directory_iterator(path, ec)) {
      const std::string ext = entry.path().extension().string();
      if (entry.is_regular_file() && (ext == ".yaml" || ext == ".yml" || ext == ".json")) {
        files.push_back(entry.path());
      }
    }
    if (ec) return absl::InvalidArgumentError(StrCat("cannot read '", path, "': ", ec.message()));
    std::sort(files.begin(), files.end());
    if (files.empty()) {
      return absl::InvalidArgumentError(StrCat("'", path, "' holds no .yaml, .yml or .json file"));
    }
    std::string all;
    for (const auto& f : files) {
      HM_ASSIGN_OR_RETURN(std::string text, ReadInputFile(f.string()));
      StrAppend(&all, all.empty() ? "" : "\n---\n", text);
    }
    return all;
  }
  return ReadInputFile(path);
}

absl::StatusOr<std::string> FormatEndpoints(std::string_view body) {
  simdjson::dom::parser parser;
  simdjson::dom::array list;
  if (parser.parse(body.data(), body.size()).get_object()["endpoints"].get(list) !=
      simdjson::SUCCESS) {
    return absl::UnknownError("the node's answer holds no endpoints");
  }
  std::vector<Row> rows = {{"SERVICE", "NODE", "TARGET", "READY"}};
  for (simdjson::dom::element e : list) {
    std::string_view service, node;
    uint64_t port = 0;
    bool ready = false;
    if (e["service"].get(service) || e["node"].get(node) || e["port"].get(port) ||
        e["ready"].get(ready)) {
      continue;
    }
    rows.push_back(
        {std::string(service), std::string(node), StrCat(node, ":", port), ready ? "yes" : "no"});
  }
  if (rows.size() == 1) return std::string("no endpoints\n");
  return FormatTable(rows);
}

absl::StatusOr<std::string> FormatObjects(std::string_view body, int64_t now_ms) {
  simdjson::dom::parser parser;
  simdjson::dom::array objects;
  if (parser.parse(body.data(), body.size()).get_object()["objects"].get(objects) !=
      simdjson::SUCCESS) {
    return absl::UnknownError("the node's answer holds no objects");
  }
  std::vector<Row> services = {{"SERVICE", "SELECTOR", "PORTS", "ON THIS NODE", "BY", "AGE"}};
  std::vector<Row> workloads = {{"WORKLOAD", "REPLICAS", "LABELS", "RUNS", "BY", "AGE"}};
  for (simdjson::dom::element o : objects) {
    std::string_view kind, name, origin;
    int64_t ms = 0;
    if (o["kind"].get(kind) || o["name"].get(name) || o["version"]["origin"].get(origin) ||
        o["version"]["ms"].get(ms)) {
      continue;
    }
    const simdjson::dom::element summary = o["summary"];
    if (kind == "Service") {
      std::string ports;
      simdjson::dom::array list;
      if (summary["ports"].get(list) == simdjson::SUCCESS) {
        for (simdjson::dom::element p : list) {
          uint64_t port = 0;
          std::string_view target;
          if (p["port"].get(port) || p["targetPort"].get(target)) continue;
          StrAppend(&ports, ports.empty() ? "" : ",", port, "->", target);
        }
      }
      std::string_view here;
      if (o["port_here"].get(here) != simdjson::SUCCESS) here = "";
      services.push_back({std::string(name), Labels(summary["selector"]), ports, std::string(here),
                          std::string(origin), Age(now_ms - ms)});
    } else {
      int64_t replicas = 0;
      std::string_view image, command;
      if (summary["replicas"].get(replicas) != simdjson::SUCCESS) replicas = 0;
      std::string runs;
      if (summary["image"].get(image) == simdjson::SUCCESS) runs = StrCat("image ", image);
      if (summary["command"].get(command) == simdjson::SUCCESS) runs = std::string(command);
      workloads.push_back({std::string(name), StrCat(replicas), Labels(summary["labels"]),
                           Abbreviate(runs, 48), std::string(origin), Age(now_ms - ms)});
    }
  }
  std::string out;
  if (services.size() > 1) out += FormatTable(services);
  if (workloads.size() > 1) StrAppend(&out, out.empty() ? "" : "\n", FormatTable(workloads, {1}));
  if (out.empty()) out = "no objects\n";
  return out;
}

void AddObjectsCommands(CLI::App& app, ObjectsFlags& flags) {
  flags.apply = app.add_subcommand(
      "apply", "apply manifests (Service, Deployment) to the mesh at any node: they spread to all");
  flags.get = app.add_subcommand("get", "list the mesh's services, workloads or endpoints");
  flags.remove = app.add_subcommand("delete", "delete objects by manifest or by kind and name");
  AddNodeFlags(flags.apply, flags.node,
               "  hivemesh apply -f service.yaml\n  hivemesh apply -f manifests/\n"
               "  cat app.yaml | hivemesh apply -f -");
  AddNodeFlags(
      flags.get, flags.node,
      "  hivemesh get services\n  hivemesh get workloads -o json\n  hivemesh get endpoints\n"
      "  hivemesh get services -o yaml");
  AddNodeFlags(flags.remove, flags.node,
               "  hivemesh delete -f service.yaml\n  hivemesh delete service edge-camera-ai");
  // get also prints the manifests themselves.
  flags.get->remove_option(flags.get->get_option("--output"));
  flags.get->add_option("-o,--output", flags.node.output, "table, json or yaml [default: table]")
      ->check(CLI::IsMember({"table", "json", "yaml"}));
  for (CLI::App* cmd : {flags.apply, flags.get, flags.remove}) {
    cmd->add_option("--admin-token-file", flags.admin_token_file,
                    "file holding the node's admin token (admin_access: token)");
  }
  flags.apply->add_option("-f,--filename", flags.file, "a manifest file, a folder of them, or -")
      ->required();
  flags.get->add_option("kind", flags.kind, "services, workloads or endpoints")->required();
  flags.remove->add_option("-f,--filename", flags.file, "delete what these manifests name");
  flags.remove->add_option("kind", flags.kind, "service or workload");
  flags.remove->add_option("name", flags.name, "its name");
}

bool RunObjects(const ObjectsFlags& flags, int* exit_code) {
  const auto print = [&](const std::string& body) { std::printf("%s\n", body.c_str()); };
  if (flags.apply->parsed()) {
    absl::StatusOr<std::string> yaml = ReadManifests(flags.file);
    absl::StatusOr<HttpResult> reply =
        yaml.ok() ? AdminCall(flags.node, flags.admin_token_file, "POST", "/v1/objects", *yaml)
                  : absl::StatusOr<HttpResult>(yaml.status());
    if (!reply.ok()) {
      *exit_code = Fail("apply", reply.status());
      return true;
    }
    *exit_code = kExitOk;
    if (flags.node.output == "json") {
      print(reply->body);
      return true;
    }
    simdjson::dom::parser parser;
    simdjson::dom::object answer;
    if (parser.parse(reply->body).get(answer) != simdjson::SUCCESS) return true;
    simdjson::dom::array list;
    if (answer["warnings"].get(list) == simdjson::SUCCESS) {
      for (simdjson::dom::element w : list) {
        std::string_view text;
        if (w.get(text) == simdjson::SUCCESS) {
          std::fprintf(stderr, "warning: %.*s\n", static_cast<int>(text.size()), text.data());
        }
      }
    }
    if (answer["applied"].get(list) == simdjson::SUCCESS) {
      for (simdjson::dom::element o : list) {
        std::string_view kind, name;
        if (o["kind"].get(kind) || o["name"].get(name)) continue;
        std::printf("%.*s/%.*s applied\n", static_cast<int>(kind.size()), kind.data(),
                    static_cast<int>(name.size()), name.data());
      }
    }
    return true;
  }
  if (flags.get->parsed() &&
      (flags.kind == "endpoints" || flags.kind == "endpoint" || flags.kind == "ep")) {
    absl::StatusOr<HttpResult> reply =
        AdminCall(flags.node, flags.admin_token_file, "GET", "/v1/endpoints");
    if (!reply.ok()) {
      *exit_code = Fail("get", reply.status());
      return true;
    }
    *exit_code = kExitOk;
    if (flags.node.output == "json") {
      print(reply->body);
      return true;
    }
    absl::StatusOr<std::string> table = FormatEndpoints(reply->body);
    if (!table.ok()) {
      *exit_code = Fail("get", table.status());
      return true;
    }
    std::fputs(table->c_str(), stdout);
    return true;
  }
  if (flags.get->parsed()) {
    const std::string_view kind = KindOf(flags.kind);
    if (kind.empty()) {
      *exit_code = Fail("get", absl::InvalidArgumentError(StrCat(
                                   "'", flags.kind, "': get services, workloads or endpoints")));
      return true;
    }
    absl::StatusOr<HttpResult> reply =
        AdminCall(flags.node, flags.admin_token_file, "GET", StrCat("/v1/objects?kind=", kind));
    if (!reply.ok()) {
      *exit_code = Fail("get", reply.status());
      return true;
    }
    *exit_code = kExitOk;
    if (flags.node.output == "json") {
      print(reply->body);
      return true;
    }
    if (flags.node.output == "yaml") {
      simdjson::dom::parser parser;
      simdjson::dom::array objects;
      if (parser.parse(reply->body)["objects"].get(objects) == simdjson::SUCCESS) {
        bool first = true;
        for (simdjson::dom::element o : objects) {
          std::string_view text;
          if (o["text"].get(text) != simdjson::SUCCESS) continue;
          std::printf("%s%.*s\n", first ? "" : "---\n", static_cast<int>(text.size()), text.data());
          first = false;
        }
      }
      return true;
    }
    const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count();
    absl::StatusOr<std::string> table = FormatObjects(reply->body, now_ms);
    if (!table.ok()) {
      *exit_code = Fail("get", table.status());
      return true;
    }
    std::fputs(table->c_str(), stdout);
    return true;
  }
  if (flags.remove->parsed()) {
    absl::StatusOr<HttpResult> reply =
        absl::InvalidArgumentError("delete -f FILE, or delete service|workload NAME");
    if (!flags.file.empty() && flags.kind.empty()) {
      absl::StatusOr<std::string> yaml = ReadManifests(flags.file);
      reply = yaml.ok() ? AdminCall(flags.node, flags.admin_token_file, "POST",
                                    "/v1/objects/delete", *yaml)
                        : absl::StatusOr<HttpResult>(yaml.status());
    } else if (flags.file.empty() && !KindOf(flags.kind).empty() && !flags.name.empty()) {
      reply = AdminCall(flags.node, flags.admin_token_file, "DELETE",
                        StrCat("/v1/objects/", KindOf(flags.kind), "/", flags.name));
    }
    if (!reply.ok()) {
      *exit_code = Fail("delete", reply.status());
      return true;
    }
    *exit_code = kExitOk;
    if (flags.node.output == "json") {
      print(reply->body);
    } else {
      std::printf("deleted\n");
    }
    return true;
  }
  return false;
}

}  // namespace hivemesh::cli
