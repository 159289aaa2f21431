#!/usr/bin/env bash
# Runs every libFuzzer target in BUILD_DIR for SECONDS each, from the committed seed corpus
# (tests/fuzz/corpus/<target>/, copied, so the repository is never written). Fails on the first
# crash, leak or timeout.
set -euo pipefail
build=${1:?usage: run-fuzzers.sh BUILD_DIR SECONDS}
seconds=${2:-20}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Every target has a seed corpus folder; a folder without its built target is an error.
ran=0
for dir in "$root"/tests/fuzz/corpus/*/; do
  target=$(basename "$dir")
  bin="$build/tests/fuzz/${target}_fuzz"
  [ -x "$bin" ] || { echo "run-fuzzers: $bin is missing" >&2; exit 1; }
  mkdir -p "$work/$target"
  cp "$root/tests/fuzz/corpus/$target/"* "$work/$target/"
  echo "fuzzing $target for ${seconds}s"
  dict=()
  [ -f "$root/tests/fuzz/$target.dict" ] && dict=(-dict="$root/tests/fuzz/$target.dict")
  "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    "${dict[@]}" -artifact_prefix="$work/" "$work/$target" \
    2>"$work/$target.log" || { tail -50 "$work/$target.log"; echo "FUZZER FOUND A FAILURE: $target" >&2; exit 1; }
  grep -E "stat::number_of_executed_units|cov:" "$work/$target.log" | tail -2
  ran=$((ran + 1))
done
echo "fuzzers: $ran target(s) ran clean"
