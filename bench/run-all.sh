#!/usr/bin/env bash
# Runs every benchmark against a Release build: bench/run-all.sh build/release
set -euo pipefail
build=${1:-build/release}
root=$(cd "$(dirname "$0")/.." && pwd)
echo "== codec: JSON and binary decode of a 1 MiB FP32 tensor"
"$build/bench/codec_bench"
echo
echo "== startup: cold start and idle memory"
/usr/bin/python3 "$root/bench/startup/bench_startup.py" --build "$build"
echo
echo "== serving: throughput, latency and overhead against nginx"
/usr/bin/python3 "$root/bench/serving/bench_serving.py" --build "$build"
echo
echo "== hop overhead: one mesh hop against an nginx reverse proxy hop"
/usr/bin/python3 "$root/bench/hop_overhead/bench_hop_overhead.py" --build "$build"
echo
echo "== TLS hop: one mutual-TLS mesh hop against nginx proxying over TLS; handshakes; idle memory"
/usr/bin/python3 "$root/bench/hop_overhead/bench_hop_tls.py" --build "$build"
echo
echo "== hop instructions: user-space instructions per request, mesh path against nginx's (callgrind)"
/usr/bin/python3 "$root/bench/hop_overhead/bench_hop_instructions.py" --build "$build"
echo
echo "== link vs h2c: the mesh link against an HTTP/2 (nghttp2) transport for the hop, both sides"
/usr/bin/python3 "$root/bench/hop_overhead/bench_link_vs_h2c.py" --build "$build" --instructions
echo
echo "== gossip vs serf: membership convergence, failure detection, memory and bytes against Serf"
/usr/bin/python3 "$root/bench/gossip_vs_serf/bench_gossip_vs_serf.py" --build "$build"
echo
echo "== hotspot: one node offered 3x its capacity in a 4-node mesh; local, random, hivemesh, balanced"
/usr/bin/python3 "$root/bench/hotspot/bench_hotspot.py" --build "$build"
echo
echo "== hostile: memory a node holds under each memory attack, against its budget + 64 MiB (and nginx's)"
/usr/bin/python3 "$root/bench/hostile/bench_hostile.py" --build "$build"
echo
echo "== batching: dynamic batching against unbatched serving (vibration model and a 2.4M-parameter MLP)"
/usr/bin/python3 "$root/tools/gen_mlp_model.py" --out "$build/bench-models/mlp-large"
"$build/bench/batching_bench" --source "$root" --mlp "$build/bench-models/mlp-large"
echo "== batching at concurrency 1, alternating pairs on one core (is batching ever slower?)"
taskset -c 0 "$build/bench/batching_bench" --source "$root" --mlp "$build/bench-models/mlp-large" \
  --pairs 15 --paired-only 1
echo
echo "== service hop: a service reached through the mesh (A -> B -> workload) against nginx proxying to it"
/usr/bin/python3 "$root/bench/service_hop/bench_service_hop.py" --build "$build"
echo
echo "== service spread: an applied Service routable at every node of 20, against a Serf user event reaching 20 agents"
/usr/bin/python3 "$root/bench/service_spread/bench_service_spread.py" --build "$build"
echo
echo "== insights: a published insight reaching a subscriber on another node, against a mosquitto broker"
/usr/bin/python3 "$root/bench/insights/bench_insights.py" --build "$build"
