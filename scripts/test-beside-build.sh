#!/usr/bin/env bash
# `make test` N times in a row (default 5) while a second build runs beside it without pause: a
# clean Release build of the same tree into a scratch folder, ccache off, -j 2, started again each
# time it finishes. Shows that the tests pass on a machine another build keeps busy (issue 18).
#
#   scripts/test-beside-build.sh [runs] [log-folder]
#
# Each run's output goes to log-folder/runK.log, one line per run to log-folder/summary.log, and
# each finished background build to log-folder/bg.log. Stops at the first run that fails; exits
# with that run's status.
set -u
cd "$(dirname "$0")/.."
runs=${1:-5}
log=$(realpath -m "${2:-build/beside-build}")
scratch=$(mktemp -d /tmp/hivemesh-bgbuild.XXXXXX)
mkdir -p "$log"
: > "$log/summary.log"
: > "$log/bg.log"
setsid bash -c '
  while true; do
    rm -rf "$1"
    CCACHE_DISABLE=1 cmake -S . -B "$1" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DHIVEMESH_BUILD_TESTS=OFF > /dev/null 2>&1
    CCACHE_DISABLE=1 cmake --build "$1" -j 2 > "$2/bg-last.log" 2>&1
    echo "background build rc=$? done $(date +%T)" >> "$2/bg.log"
  done' _ "$scratch" "$log" &
bg=$!
trap 'kill -- -$bg 2>/dev/null; rm -rf "$scratch"' EXIT
status=0
for i in $(seq 1 "$runs"); do
  start=$(date +%s)
  make test > "$log/run$i.log" 2>&1
  status=$?
  echo "run $i rc=$status wall=$(( $(date +%s) - start ))s" \
       "$(grep -E 'tests passed|Total Test time' "$log/run$i.log" | tr '\n' ' ')" >> "$log/summary.log"
  [ $status -ne 0 ] && break
done
cat "$log/summary.log"
exit $status
