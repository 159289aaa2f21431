#!/usr/bin/env bash
# Runs every libFuzzer target in BUILD_DIR for SECONDS each, from the committed seed corpus
# (tests/fuzz/corpus/<target>/, copied, so the repository is never written), JOBS targets at a
# time (each fuzzer is one process on one core). Fails when any target finds a crash, a leak or
# a timeout, with that target's log.
set -euo pipefail
build=${1:?usage: run-fuzzers.sh BUILD_DIR SECONDS}
seconds=${2:-20}
jobs=${JOBS:-$(nproc)}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Every target has a seed corpus folder; a folder without its built target is an error.
targets=()
for dir in "$root"/tests/fuzz/corpus/*/; do
  target=$(basename "$dir")
  [ -x "$build/tests/fuzz/${target}_fuzz" ] || {
    echo "run-fuzzers: $build/tests/fuzz/${target}_fuzz is missing" >&2
    exit 1
  }
  targets+=("$target")
done

fuzz_one() {
  local target=$1 dict=()
  mkdir -p "$work/$target" "$work/$target.artifacts"
  cp "$root/tests/fuzz/corpus/$target/"* "$work/$target/"
  [ -f "$root/tests/fuzz/$target.dict" ] && dict=(-dict="$root/tests/fuzz/$target.dict")
  if "$build/tests/fuzz/${target}_fuzz" -max_total_time="$seconds" -timeout=10 \
      -rss_limit_mb=2048 -print_final_stats=1 "${dict[@]}" \
      -artifact_prefix="$work/$target.artifacts/" "$work/$target" 2>"$work/$target.log"; then
    echo "fuzzed $target for ${seconds}s: $(grep -E 'stat::number_of_executed_units' \
      "$work/$target.log" | tail -1 | tr -s ' ')"
  else
    tail -50 "$work/$target.log"
    echo "FUZZER FOUND A FAILURE: $target" >&2
    return 1
  fi
}
export -f fuzz_one
export build seconds root work

if printf '%s\n' "${targets[@]}" | xargs -P "$jobs" -I{} bash -c 'fuzz_one "$@"' _ {}; then
  echo "fuzzers: ${#targets[@]} target(s) ran clean"
else
  exit 1
fi
