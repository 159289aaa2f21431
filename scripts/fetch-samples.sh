#!/usr/bin/env bash
# Fetches real sample data from Debian's opencv-doc package into an ignored cache, without
# installing the package: `apt-get download` + `dpkg -x`. Prints the folder holding the data.
#   scripts/fetch-samples.sh            -> .cache/samples (messi5.jpg, basketball1.png, vtest.avi)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/.cache/samples"
if [ -f "$dest/vtest.avi" ] && [ -f "$dest/messi5.jpg" ]; then
  echo "$dest"
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
if ! apt-get download opencv-doc >/dev/null 2>"$work/err"; then
  # The package lists may be missing on a fresh machine.
  apt-get update -qq >/dev/null
  apt-get download opencv-doc >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
fi
dpkg -x opencv-doc_*.deb unpacked
mkdir -p "$dest"
# Copy, then rename into place: a concurrent run (tests run in parallel) never sees half a file.
for f in messi5.jpg basketball1.png vtest.avi; do
  cp "unpacked/usr/share/doc/opencv-doc/examples/data/$f" "$dest/.$f.$$"
  mv -f "$dest/.$f.$$" "$dest/$f"
done
echo "$dest"
