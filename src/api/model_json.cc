#include "api/model_json.h"

namespace hivemesh {
namespace {

void WriteDuration(JsonWriter& w, std::string_view key, const DurationStat& d) {
  w.Key(key).BeginObject();
  w.Key("count").Uint(d.count.load(std::memory_order_relaxed));
  w.Key("ns").Uint(d.ns.load(std::memory_order_relaxed));
  w.EndObject();
}

}  // namespace

void WriteTensorMetadata(JsonWriter& w, const std::vector<TensorConfig>& tensors) {
  w.BeginArray();
  for (const TensorConfig& t : tensors) {
    w.BeginObject();
    w.Key("name").String(t.name);
    w.Key("datatype").String(DataTypeName(t.type));
    w.Key("shape").BeginArray();
    for (int64_t d : t.dims) w.Int(d);
    w.EndArray();
    if (t.optional) w.Key("optional").Bool(true);
    w.EndObject();
  }
  w.EndArray();
}

void WriteStats(JsonWriter& w, const ModelRuntime& rt) {
  const ModelStats& s = rt.stats();
  w.BeginObject();
  w.Key("name").String(rt.config().name);
  w.Key("version").String(rt.version());
  w.Key("last_inference").Uint(s.last_inference_ms.load());
  w.Key("inference_count").Uint(s.inference_count.load());
  w.Key("execution_count").Uint(s.execution_count.load());
  w.Key("inference_stats").BeginObject();
  WriteDuration(w, "success", s.success);
  WriteDuration(w, "fail", s.fail);
  WriteDuration(w, "queue", s.queue);
  WriteDuration(w, "compute_input", s.compute_input);
  WriteDuration(w, "compute_infer", s.compute_infer);
  WriteDuration(w, "compute_output", s.compute_output);
  w.EndObject();
  w.Key("batch_stats").BeginArray();
  for (const auto& [size, d] : s.batch_stats.Snapshot()) {
    auto duration = [&w, count = d.count](std::string_view key, uint64_t ns) {
      w.Key(key).BeginObject().Key("count").Uint(count).Key("ns").Uint(ns).EndObject();
    };
    w.BeginObject().Key("batch_size").Uint(size);
    duration("compute_input", d.input_ns);
    duration("compute_infer", d.infer_ns);
    duration("compute_output", d.output_ns);
    w.EndObject();
  }
  w.EndArray();
  // Extensions beyond the KServe statistics schema.
  w.Key("queue_depth").Int(s.queue_depth.load());
  w.Key("in_flight").Int(s.in_flight.load());
  w.Key("rejected_queue_full").Uint(s.rejected_queue_full.load());
  w.Key("expired_in_queue").Uint(s.expired_in_queue.load());
  w.Key("cancelled_in_queue").Uint(s.cancelled_in_queue.load());
  w.Key("server_overhead").BeginObject();
  w.Key("count").Uint(s.overhead.Count());
  w.Key("p50_ns").Uint(s.overhead.Percentile(0.50));
  w.Key("p99_ns").Uint(s.overhead.Percentile(0.99));
  w.EndObject();
  w.EndObject();
}

}  // namespace hivemesh
