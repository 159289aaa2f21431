#!/usr/bin/env bash
# Builds the node of an earlier release, beside this tree, for the rolling-upgrade test
# (`make test-upgrade`): the tag's sources in a git worktree, a Release build of them in
# OUT/<tag>/ (the binary and its plugins). ccache is pointed at the worktree, so what has not
# changed since the tag compiles from the cache.
#
#   scripts/build-release-at.sh v0.1.0 build/upgrade
set -euo pipefail
tag=${1:?usage: build-release-at.sh TAG OUT (no tag: fetch them with git fetch --tags)}
out=$(mkdir -p "${2:?usage: build-release-at.sh TAG OUT}" && cd "$2" && pwd)
root=$(cd "$(dirname "$0")/.." && pwd)
git -C "$root" rev-parse --verify --quiet "$tag^{commit}" > /dev/null ||
  { echo "build-release-at: no tag $tag in this clone (git fetch --tags)" >&2; exit 2; }
src=$out/src-$tag
if [ ! -d "$src" ]; then
  git -C "$root" worktree add --detach "$src" "$tag" > /dev/null
fi
export CCACHE_BASEDIR=$src
cmake -S "$src" -B "$out/$tag" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr \
  -DHIVEMESH_BUILD_TESTS=OFF -DHIVEMESH_BUILD_BENCH=OFF -DHIVEMESH_BUILD_TOOLS=OFF > /dev/null
cmake --build "$out/$tag" --target hivemesh hivemesh_opencv hivemesh_grpc
echo "build-release-at: $out/$tag/hivemesh is $("$out/$tag/hivemesh" --version)"
