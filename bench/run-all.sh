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
