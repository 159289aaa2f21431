#!/usr/bin/env bash
# Decodes the sample video (vtest.avi: 768x576 pedestrians, 795 frames, MS-MPEG4v3 in AVI) into
# JPEG frames for benchmarks and demos, with the build's `extract-frames` tool (built here if
# the build folder is configured but the tool is not built yet). Prints the frames' folder.
#   scripts/fetch-frames.sh BUILD_DIR   -> .cache/samples/vtest-frames/frame-0001.jpg ... (159 files)
# One frame in EVERY (default 5) at JPEG quality QUALITY (default 90); override with the
# environment variables of those names. Idempotent: a complete folder made with the same
# settings is kept; anything else (missing, partial, other settings) is made again.
set -euo pipefail
if [ $# -ne 1 ]; then
  echo "usage: $0 BUILD_DIR   (a configured CMake build folder, e.g. build/release)" >&2
  exit 2
fi
build=$1
every=${EVERY:-5}
quality=${QUALITY:-90}
root=$(cd "$(dirname "$0")/.." && pwd)
samples=$("$root/scripts/fetch-samples.sh")
dest="$samples/vtest-frames"
stamp="every=$every quality=$quality source=$(stat -c %s "$samples/vtest.avi")"
if [ -f "$dest/.complete" ] && [ "$(cat "$dest/.complete")" = "$stamp" ]; then
  echo "$dest"
  exit 0
fi

tool="$build/extract-frames"
if [ ! -f "$build/CMakeCache.txt" ]; then
  echo "fetch-frames: $build is not a configured CMake build folder (try: make release)" >&2
  exit 1
fi
cmake --build "$build" --target extract-frames >&2

# Extract next to the destination and swap it in, so a reader never sees a partial folder.
tmp=$(mktemp -d "$samples/.vtest-frames.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
"$tool" "$samples/vtest.avi" "$tmp" --every "$every" --quality "$quality" >&2
echo "$stamp" > "$tmp/.complete"
chmod 755 "$tmp"
rm -rf "$dest"
mv "$tmp" "$dest"
trap - EXIT
echo "$dest"
