#include "cli/mesh_view.h"

#include <simdjson.h>

#include <algorithm>
#include <set>

#include "base/strings.h"
#include "cli/table.h"
#include "codec/json_writer.h"

namespace hivemesh::cli {
namespace {

using simdjson::dom::array;
using simdjson::dom::element;
using simdjson::dom::object;

std::string Str(element e, const char* key) {
  std::string_view v;
  return e[key].get(v) == simdjson::SUCCESS ? std::string(v) : std::string();
}

int64_t Int(element e, const char* key) {
  int64_t v = 0;
  if (e[key].get(v) == simdjson::SUCCESS) return v;
  uint64_t u = 0;
  if (e[key].get(u) == simdjson::SUCCESS) return static_cast<int64_t>(u);
  return 0;
}

// "1" < "2" < "10"; names that are not numbers after numbers, alphabetically.
bool VersionLess(const std::string& a, const std::string& b) {
  const bool an = !a.empty() && a.find_first_not_of("0123456789") == std::string::npos;
  const bool bn = !b.empty() && b.find_first_not_of("0123456789") == std::string::npos;
  if (an != bn) return an;
  if (an && a.size() != b.size()) return a.size() < b.size();
  return a < b;
}

std::string Join(const std::vector<std::string>& items, std::string_view sep) {
  std::string out;
  for (const std::string& s : items) StrAppend(&out, out.empty() ? "" : sep, s);
  return out;
}

std::string ServiceText(const ModelRow& r) {
  if (!r.service_us_min) return "-";
  if (*r.service_us_min == *r.service_us_max) {
    return FormatMicros(static_cast<double>(*r.service_us_min));
  }
  return StrCat(FormatMicros(static_cast<double>(*r.service_us_min)), " - ",
                FormatMicros(static_cast<double>(*r.service_us_max)));
}

}  // namespace

std::string Member::label(const std::string& key) const {
  auto it = labels.find(key);
  return it == labels.end() ? std::string() : it->second;
}

absl::StatusOr<std::vector<Member>> ParseMembers(std::string_view json) {
  simdjson::dom::parser parser;
  element doc;
  array list;
  if (parser.parse(json.data(), json.size()).get(doc) != simdjson::SUCCESS ||
      doc["members"].get(list) != simdjson::SUCCESS) {
    return absl::InternalError("the node's member list cannot be read (no \"members\" array)");
  }
  std::vector<Member> out;
  for (element e : list) {
    Member m;
    m.name = Str(e, "name");
    m.address = Str(e, "address");
    m.state = Str(e, "state");
    m.api_address = Str(e, "api_address");
    m.version = Str(e, "version");
    bool draining = false;
    if (e["draining"].get(draining) == simdjson::SUCCESS) m.draining = draining;
    bool insecure = false;
    if (e["insecure"].get(insecure) == simdjson::SUCCESS) m.insecure = insecure;
    object labels;
    if (e["labels"].get(labels) == simdjson::SUCCESS) {
      for (auto [k, v] : labels) {
        std::string_view sv;
        if (v.get(sv) == simdjson::SUCCESS) m.labels[std::string(k)] = std::string(sv);
      }
    }
    array models;
    if (e["models"].get(models) == simdjson::SUCCESS) {
      for (element x : models) {
        ModelAdvert a;
        a.name = Str(x, "name");
        array versions;
        if (x["versions"].get(versions) == simdjson::SUCCESS) {
          for (element v : versions) {
            std::string_view sv;
            if (v.get(sv) == simdjson::SUCCESS) a.versions.emplace_back(sv);
          }
        }
        bool ready = false;
        if (x["ready"].get(ready) == simdjson::SUCCESS) a.ready = ready;
        a.data_policy = Str(x, "data_policy");
        a.instances = Int(x, "instances");
        if (!a.name.empty()) m.models.push_back(std::move(a));
      }
    }
    element load;
    if (e["load"].get(load) == simdjson::SUCCESS) {
      m.load_age_ms = Int(load, "age_ms");
      array loads;
      if (load["models"].get(loads) == simdjson::SUCCESS) {
        for (element x : loads) {
          m.load.push_back(ModelLoad{Str(x, "name"), Int(x, "queue_depth"), Int(x, "in_flight"),
                                     Int(x, "ewma_service_us")});
        }
      }
    }
    out.push_back(std::move(m));
  }
  return out;
}

std::string FormatMembersTable(const std::vector<Member>& members) {
  std::vector<Row> rows = {
      {"NAME", "STATE", "GOSSIP", "API", "LABELS", "MODELS", "LOAD AGE", "VERSION"}};
  for (const Member& m : members) {
    std::string labels;
    for (const auto& [k, v] : m.labels) StrAppend(&labels, labels.empty() ? "" : ",", k, "=", v);
    std::vector<std::string> models;
    for (const ModelAdvert& a : m.models) models.push_back(a.name);
    std::string state = m.state;
    if (m.draining) state += " (draining)";
    if (m.insecure) state += " (insecure)";
    rows.push_back(
        {m.name.empty() ? "-" : m.name, state.empty() ? "-" : state,
         m.address.empty() ? "-" : m.address, m.api_address.empty() ? "-" : m.api_address,
         labels.empty() ? "-" : labels, models.empty() ? "-" : Join(models, ","),
         m.load_age_ms ? StrCat(*m.load_age_ms, " ms") : "-", m.version.empty() ? "-" : m.version});
  }
  return FormatTable(rows, {6});
}

int ModelRow::ready_hosts() const {
  return static_cast<int>(
      std::count_if(hosts.begin(), hosts.end(), [](const Host& h) { return h.ready; }));
}

std::vector<ModelRow> AggregateModels(const std::vector<Member>& members) {
  std::map<std::string, ModelRow> rows;
  std::map<std::string, std::set<std::string>> policies;
  for (const Member& m : members) {
    if (m.gone()) continue;
    for (const ModelAdvert& a : m.models) {
      ModelRow& r = rows[a.name];
      r.name = a.name;
      for (const std::string& v : a.versions) {
        if (std::find(r.versions.begin(), r.versions.end(), v) == r.versions.end()) {
          r.versions.push_back(v);
        }
      }
      r.hosts.push_back({m.name, a.ready && m.serving()});
      if (!a.data_policy.empty()) policies[a.name].insert(a.data_policy);
      for (const ModelLoad& l : m.load) {
        if (l.name != a.name) continue;
        r.queued += l.queue_depth;
        r.running += l.in_flight;
        if (l.ewma_service_us > 0) {
          r.service_us_min =
              std::min(r.service_us_min.value_or(l.ewma_service_us), l.ewma_service_us);
          r.service_us_max = std::max(r.service_us_max.value_or(0), l.ewma_service_us);
        }
      }
    }
  }
  std::vector<ModelRow> out;
  for (auto& [name, r] : rows) {
    std::sort(r.versions.begin(), r.versions.end(), VersionLess);
    std::sort(r.hosts.begin(), r.hosts.end(),
              [](const ModelRow::Host& a, const ModelRow::Host& b) { return a.node < b.node; });
    r.data_policies.assign(policies[name].begin(), policies[name].end());
    out.push_back(std::move(r));
  }
  return out;
}

std::string FormatModelsTable(const std::vector<ModelRow>& rows) {
  std::vector<Row> table = {
      {"MODEL", "VERSIONS", "READY", "NODES", "POLICY", "QUEUED", "RUNNING", "SERVICE"}};
  for (const ModelRow& r : rows) {
    std::vector<std::string> hosts;
    for (const ModelRow::Host& h : r.hosts) {
      hosts.push_back(h.ready ? h.node : StrCat(h.node, " (not ready)"));
    }
    table.push_back({r.name, r.versions.empty() ? "-" : Join(r.versions, ","),
                     StrCat(r.ready_hosts(), "/", r.hosts.size()), Join(hosts, ", "),
                     r.data_policies.empty() ? "-" : Join(r.data_policies, ","), StrCat(r.queued),
                     StrCat(r.running), ServiceText(r)});
  }
  return FormatTable(table, {2, 5, 6});
}

std::string ModelsJson(const std::vector<ModelRow>& rows) {
  std::string out;
  JsonWriter w(out);
  w.BeginObject().Key("models").BeginArray();
  for (const ModelRow& r : rows) {
    w.BeginObject();
    w.Key("name").String(r.name);
    w.Key("versions").BeginArray();
    for (const std::string& v : r.versions) w.String(v);
    w.EndArray();
    w.Key("ready").Int(r.ready_hosts());
    w.Key("total").Uint(r.hosts.size());
    w.Key("nodes").BeginArray();
    for (const ModelRow::Host& h : r.hosts) {
      w.BeginObject().Key("name").String(h.node).Key("ready").Bool(h.ready).EndObject();
    }
    w.EndArray();
    w.Key("data_policy").String(Join(r.data_policies, ","));
    w.Key("queued").Int(r.queued);
    w.Key("running").Int(r.running);
    w.Key("service_us");
    if (r.service_us_min) {
      w.BeginObject().Key("min").Int(*r.service_us_min).Key("max").Int(*r.service_us_max);
      w.EndObject();
    } else {
      w.Raw("null");
    }
    w.EndObject();
  }
  w.EndArray().EndObject();
  return out;
}

}  // namespace hivemesh::cli
