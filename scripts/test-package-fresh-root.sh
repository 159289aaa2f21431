#!/usr/bin/env bash
# The package on a fresh Debian 12 root (`make test-package-fresh`): debootstrap makes a minimal
# bookworm root from the Debian mirror; in it, `dpkg -i` of the package then `apt-get -f install`
# (its Depends, from the mirror), the unit's ExecStart line run as the package's user serves
# /v2/health/ready and the four shipped models, then `dpkg --purge` and `apt-get autoremove`, and
# the root's files are compared with what they were before the package: nothing may be left.
#
#   scripts/test-package-fresh-root.sh path/to/hivemesh_<version>_<arch>.deb
#
# Needs root and the network to deb.debian.org (MIRROR=... to use another). Takes some minutes:
# it downloads the base system and the package's Depends. The root is removed at the end.
set -euo pipefail
deb=$(readlink -f "${1:?usage: test-package-fresh-root.sh hivemesh_VERSION_ARCH.deb}")
mirror=${MIRROR:-http://deb.debian.org/debian}
[ "$(id -u)" = 0 ] || { echo "needs root (debootstrap, chroot)" >&2; exit 2; }
command -v debootstrap >/dev/null || { echo "debootstrap is missing: scripts/install-deps.sh" >&2; exit 2; }

work=$(mktemp -d /var/tmp/hivemesh-fresh-XXXXXX)
root=$work/root
node_pid=
cleanup() {
  [ -n "$node_pid" ] && kill -KILL "$node_pid" 2>/dev/null || true
  for m in dev/pts dev proc sys; do umount "$root/$m" 2>/dev/null || umount -l "$root/$m" || true; done
  # Never delete through a mount that is still there (the host's /dev is bound into the root).
  if findmnt -rn -o TARGET | grep -q "^$root/"; then
    echo "test-package-fresh-root: mounts remain under $root; left $work in place" >&2
    return
  fi
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
in_root() { chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }

echo "== debootstrap bookworm (minbase) from $mirror"
started=$(date +%s)
debootstrap --variant=minbase bookworm "$root" "$mirror" > "$work/debootstrap.log" 2>&1 ||
  { tail -20 "$work/debootstrap.log"; fail "debootstrap"; }
mount -t proc proc "$root/proc"
mount -t sysfs sysfs "$root/sys"
mount --bind /dev "$root/dev"
mount --bind /dev/pts "$root/dev/pts"
cp /etc/resolv.conf "$root/etc/resolv.conf"
echo "   $(( $(date +%s) - started )) s"

# What a fresh root holds, to compare with after the purge. Left out: the mounts, /run and /tmp
# (memory on a real system), the records and logs of dpkg, apt and debconf, and the backups
# shadow's tools keep of the user files they change (/etc/shadow- and the like).
snapshot() {
  (cd "$root" && find . -xdev \( -path ./proc -o -path ./sys -o -path ./dev -o -path ./tmp \
      -o -path ./run -o -path ./var/cache/apt -o -path ./var/lib/apt -o -path ./var/log \
      -o -path ./var/cache/debconf -o -path ./var/lib/dpkg -o -path ./var/tmp/hivemesh_\*.deb \
      -o -name '*-' -path './etc/*' \) -prune -o -print | sort)
}
snapshot > "$work/before"

echo "== dpkg -i $(basename "$deb"), then apt-get -f install"
cp "$deb" "$root/var/tmp/"
in_root dpkg -i "/var/tmp/$(basename "$deb")" > "$work/dpkg.log" 2>&1 || true
grep -q "dependency problems" "$work/dpkg.log" || cat "$work/dpkg.log"
in_root apt-get update -qq
in_root env DEBIAN_FRONTEND=noninteractive apt-get -f install -y -qq --no-install-recommends \
  > "$work/apt.log" 2>&1 || { tail -30 "$work/apt.log"; fail "apt-get -f install"; }
status=$(in_root dpkg-query -W -f='${Status}' hivemesh)
[ "$status" = "install ok installed" ] || fail "hivemesh is '$status'"
echo "   installed with $(grep -c '^Setting up' "$work/apt.log") packages of Depends"
in_root getent passwd hivemesh > /dev/null || fail "no hivemesh user"

echo "== the unit's ExecStart line, as the unit's user"
exec_start=$(sed -n 's/^ExecStart=//p' "$root/lib/systemd/system/hivemesh.service")
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http=$(port)
sed -i "s/127.0.0.1:8000/127.0.0.1:$http/; s/127.0.0.1:8001/127.0.0.1:$(port)/; \
        s/127.0.0.1:7946/127.0.0.1:$(port)/" "$root/etc/hivemesh/node.yaml"
[ "$(in_root stat -c %U:%a /var/lib/hivemesh)" = hivemesh:700 ] ||
  fail "postinst did not make /var/lib/hivemesh the user's, 0700"
# shellcheck disable=SC2086
chroot --userspec=hivemesh:hivemesh "$root" $exec_start > "$work/node.log" 2>&1 &
node_pid=$!
ready=
for _ in $(seq 1 300); do
  if curl -sf "http://127.0.0.1:$http/v2/health/ready" > /dev/null; then ready=1; break; fi
  kill -0 "$node_pid" 2>/dev/null || break
  sleep 0.2
done
[ -n "$ready" ] || { cat "$work/node.log"; fail "the node never became ready"; }
for model in face-detector identity people-detector vibration-anomaly; do
  ok=
  for _ in $(seq 1 100); do
    if curl -sf "http://127.0.0.1:$http/v2/models/$model/ready" > /dev/null; then ok=1; break; fi
    sleep 0.2
  done
  [ -n "$ok" ] || { cat "$work/node.log"; fail "$model is not ready"; }
done
out=$(curl -sf -H 'Content-Type: application/json' \
  -d '{"inputs":[{"name":"INPUT0","datatype":"FP32","shape":[4],"data":[1,2,3,4]}]}' \
  "http://127.0.0.1:$http/v2/models/identity/infer")
echo "$out" | grep -q '"data":\[1.0,2.0,3.0,4.0\]\|"data":\[1,2,3,4\]' || fail "identity answered $out"
echo "   ready, serving the 4 shipped models: $(curl -sf "http://127.0.0.1:$http/v2")"
kill -TERM "$node_pid"
wait "$node_pid" || fail "the node did not exit 0 on SIGTERM"
node_pid=

echo "== dpkg --purge, apt-get autoremove --purge"
in_root dpkg --purge hivemesh > /dev/null
in_root env DEBIAN_FRONTEND=noninteractive apt-get autoremove --purge -y -qq > /dev/null
snapshot > "$work/after"
if ! diff "$work/before" "$work/after" > "$work/diff"; then
  cat "$work/diff"
  fail "the purge left the root different from before the install"
fi
in_root getent passwd hivemesh > /dev/null && fail "the hivemesh user is still there"
in_root getent group hivemesh > /dev/null && fail "the hivemesh group is still there"
echo "PASS: fresh bookworm root: installed (dpkg -i + apt-get -f install), served, purged with" \
  "nothing left ($(wc -l < "$work/before") paths compared), $(( $(date +%s) - started )) s"
