#include "api/mesh_handler.h"

#include "routing/forwarder.h"
#include "serving/data_policy.h"

#include "base/strings.h"
#include "codec/infer_codec.h"
#include "codec/json_writer.h"
#include "identity/node_key.h"
#include "membership/gossip_node.h"
#include "membership/node_meta.h"
#include "routing/forwarder.h"

namespace hivemesh {
namespace {

using membership::MemberInfo;

HttpResponse Json(int status, std::string body) {
  HttpResponse r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

void WriteMember(JsonWriter& w, const MemberInfo& m, SteadyTime now) {
  w.BeginObject();
  w.Key("name").String(m.name);
  w.Key("address").String(m.addr);
  w.Key("state").String(membership::MemberStateName(m.state));
  w.Key("incarnation").Uint(m.incarnation);
  w.Key("key").String(identity::KeyFingerprint(m.key));
  absl::StatusOr<membership::NodeMeta> meta = membership::DecodeNodeMeta(m.meta);
  if (meta.ok()) {
    w.Key("api_address").String(meta->api_address);
    if (!meta->software_version.empty()) w.Key("version").String(meta->software_version);
    w.Key("draining").Bool(meta->draining);
    w.Key("insecure").Bool(meta->insecure);
    w.Key("labels").BeginObject();
    for (const auto& [k, v] : meta->labels) w.Key(k).String(v);
    w.EndObject();
    w.Key("capacity").BeginObject();
    w.Key("cores").Uint(meta->cores);
    w.Key("memory_mb").Uint(meta->memory_mb);
    w.Key("accelerators").Uint(meta->accelerators);
    w.EndObject();
    w.Key("models").BeginArray();
    for (const membership::ModelAdvert& a : meta->models) {
      w.BeginObject();
      w.Key("name").String(a.name);
      w.Key("versions").BeginArray();
      for (const std::string& v : a.versions) w.String(v);
      w.EndArray();
      w.Key("ready").Bool(a.ready);
      w.Key("data_policy").String(DataPolicyName(static_cast<DataPolicy>(a.data_policy)));
      w.Key("instances").Uint(a.instances);
      w.EndObject();
    }
    w.EndArray();
  } else {
    w.Key("metadata_error").String(MessageOf(meta.status()));
  }
  if (!m.load.empty()) {
    absl::StatusOr<membership::LoadReport> load = membership::DecodeLoadReport(m.load);
    w.Key("load").BeginObject();
    const int64_t held =
        std::chrono::duration_cast<std::chrono::milliseconds>(now - m.load_received).count();
    w.Key("age_ms").Int(static_cast<int64_t>(m.load_age_ms) + std::max<int64_t>(0, held));
    w.Key("seq").Uint(m.load_seq);
    if (load.ok()) {
      w.Key("models").BeginArray();
      for (const membership::ModelLoad& l : load->models) {
        w.BeginObject();
        w.Key("name").String(l.name);
        w.Key("queue_depth").Uint(l.queue_depth);
        w.Key("in_flight").Uint(l.in_flight);
        w.Key("ewma_service_us").Uint(l.ewma_service_us);
        w.EndObject();
      }
      w.EndArray();
    }
    w.EndObject();
  }
  w.EndObject();
}

}  // namespace

bool MeshHandler::Handle(const HttpRequest& request, HttpResponder& respond) {
  std::string_view path = request.target();
  path = path.substr(0, path.find('?'));
  if (!path.starts_with("/v1/mesh/")) return false;
  if (path != "/v1/mesh/members" && path != "/v1/mesh/stats" &&
      !(path == "/v1/mesh/routes" && forwarder_ != nullptr)) {
    respond(Json(404, EncodeError(StrCat("no such endpoint: ", path))));
    return true;
  }
  if (request.method() != "GET") {
    HttpResponse r = Json(405, EncodeError(StrCat("method ", request.method(),
                                                  " is not allowed on ", path, "; use GET")));
    r.headers.emplace_back("Allow", "GET");
    respond(std::move(r));
    return true;
  }
  std::string out;
  JsonWriter w(out);
  if (path == "/v1/mesh/members") {
    const SteadyTime now = SystemClock::Get().Now();
    w.BeginObject().Key("members").BeginArray();
    for (const MemberInfo& m : gossip_->Members()) WriteMember(w, m, now);
    w.EndArray().EndObject();
  } else if (path == "/v1/mesh/routes") {
    const routing::RouteStats s = forwarder_->Stats();
    w.BeginObject();
    w.Key("local").Uint(s.local);
    w.Key("forwarded").Uint(s.forwarded);
    w.Key("retries").Uint(s.retries);
    w.Key("hedges").Uint(s.hedges);
    w.Key("served_back").Uint(s.served_back);
    w.Key("rejected").Uint(s.rejected);
    w.Key("held").Uint(s.held);
    w.Key("held_found").Uint(s.held_found);
    w.Key("cancelled").Uint(s.cancelled);
    w.Key("settling").Bool(forwarder_->Settling());
    w.Key("peer_connections").Int(s.connections);
    w.Key("peer_links").Int(s.links);
    w.Key("peers").BeginArray();
    for (const routing::PeerStats& p : s.peers) {
      w.BeginObject();
      w.Key("node").String(p.node);
      w.Key("sent").Uint(p.sent);
      w.Key("failures").Uint(p.failures);
      w.Key("late").Uint(p.late);
      w.Key("times_ejected").Int(p.times_ejected);
      w.Key("ejected").Bool(p.ejected);
      w.Key("latency_us").Uint(static_cast<uint64_t>(p.latency_ns / 1e3));
      w.Key("rtt_us").Uint(static_cast<uint64_t>(p.rtt_ns / 1e3));
      w.Key("bandwidth_mbps").Uint(static_cast<uint64_t>(p.bandwidth_bytes_per_s * 8 / 1e6));
      w.EndObject();
    }
    w.EndArray();
    w.EndObject();
  } else {
    const membership::GossipStats s = gossip_->Stats();
    w.BeginObject();
    w.Key("address").String(gossip_->address());
    w.Key("joined").Bool(gossip_->joined());
    w.Key("packets_out").Uint(s.udp_packets_out);
    w.Key("bytes_out").Uint(s.udp_bytes_out + s.tcp_bytes_out);
    w.Key("udp_bytes_out").Uint(s.udp_bytes_out);
    w.Key("tcp_bytes_out").Uint(s.tcp_bytes_out);
    w.Key("tcp_exchanges_failed").Uint(s.tcp_exchanges_failed);
    w.Key("packets_in").Uint(s.swim.packets_in);
    w.Key("bytes_in").Uint(s.udp_bytes_in + s.tcp_bytes_in);
    w.Key("udp_packets_in").Uint(s.udp_packets_in);
    w.Key("udp_bytes_in").Uint(s.udp_bytes_in);
    w.Key("tcp_bytes_in").Uint(s.tcp_bytes_in);
    w.Key("probes").Uint(s.swim.probes);
    w.Key("probe_failures").Uint(s.swim.probe_failures);
    w.Key("indirect_probes").Uint(s.swim.indirect_probes);
    w.Key("refutations").Uint(s.swim.refutations);
    w.Key("suspicions").Uint(s.swim.suspicions);
    w.Key("watch_closed").Uint(s.swim.watch_closed);
    w.Key("watching").Uint(s.watching);
    w.Key("watched_by").Uint(s.watched_by);
    w.Key("tls_handshakes").Uint(s.tls_handshakes);
    w.Key("tls_resumed").Uint(s.tls_resumed);
    w.Key("push_pulls").Uint(s.swim.push_pulls);
    w.Key("dropped").BeginObject();
    for (size_t r = 0; r < membership::kDropReasonCount; ++r) {
      const auto reason = static_cast<membership::DropReason>(r);
      w.Key(membership::DropReasonName(reason))
          .Uint(s.drops.of(reason) +
                (reason == membership::DropReason::kMalformed ? s.swim.malformed_in : 0));
    }
    w.EndObject();
    w.EndObject();
  }
  respond(Json(200, std::move(out)));
  return true;
}

}  // namespace hivemesh
