#!/usr/bin/env bash
# Installs exactly the Debian 12 packages hivemesh needs to build, test, benchmark and run.
# Idempotent: packages already present are not touched, and apt-get runs only when one is missing.
set -euo pipefail

packages=(
  # toolchain
  cmake ninja-build g++ ccache clang libclang-rt-14-dev pkg-config
  # libraries (headers); images are decoded with libturbojpeg and libpng directly, which keeps
  # OpenCV's imgcodecs (and the ~120 libraries it links) out of the agent
  libboost-dev libabsl-dev libsimdjson-dev libyaml-cpp-dev libspdlog-dev libfmt-dev libcli11-dev
  libopencv-core-dev libopencv-dnn-dev libopencv-objdetect-dev
  libopencv-imgproc-dev libturbojpeg0-dev libpng-dev libssl-dev
  # the agent's memory allocator: fewer instructions per allocation than glibc's on the
  # request path, for about 1 MiB more resident memory
  libjemalloc-dev
  # gRPC API (src/api/grpc): C++ runtime and headers, protoc and its grpc_cpp_plugin (and
  # grpc_python_plugin, used by the interop test) to generate proto/grpc_service.proto at build time
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc
  # video decoding (FFmpeg) for tools/extract-frames only; never linked into the agent
  libopencv-videoio-dev
  # data: Haar/LBP cascades used by the face-detector model
  opencv-data
  # the insight outbox for the MQTT broker (bus/outbox.h): SQLite in WAL mode; the MQTT client
  # that forwards it (bus/mqtt_bridge.h)
  libsqlite3-dev libmosquitto-dev
  # the service manager's protocol (agent/service_notify.h): sd_notify READY, WATCHDOG, RELOADING;
  # systemd-analyze checks the shipped unit (tests/integration/systemd_unit_test.py)
  libsystemd-dev systemd
  # the Debian package (`make package`, tests/packaging/deb_test.py): man pages from --help,
  # lintian's checks, a fresh Debian root for `make test-package-fresh`
  help2man lintian debootstrap
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev curl wrk nginx-light serf
  # TLS handshakes per second against nginx's (bench/hop_overhead/bench_hop_tls.py: s_time)
  openssl
  # instructions per request (bench/hop_overhead/bench_hop_instructions.py)
  valgrind
  # HTTP/2 (nghttp2's C library) for the h2c transport measured against the mesh link
  # (bench/hop_overhead/h2c); never linked into the agent
  libnghttp2-dev
  # promtool (`promtool check metrics`) for the /metrics tests; the package also brings a
  # Prometheus server, which is stopped below
  prometheus
  # model generation (tools/gen_vibration_model.py)
  python3-onnx python3-numpy
  # the gRPC interop test (tests/integration/grpc_test.py): a Python client on Debian's grpcio
  python3-grpcio python3-protobuf
  # the hostile-network tests (tests/security): Ed25519 and AES-GCM to forge gossip as an attacker
  python3-cryptography
  # the chaos suite (tests/chaos): network namespaces, veth pairs and a bridge (ip), cuts and
  # loss (iptables), bandwidth limits (tc)
  iproute2 iptables
  # workloads that run an image (tests/security/test_image_workloads.py): podman with runc, and
  # buildah and a static busybox to build the test's image offline from scratch
  podman runc buildah busybox-static
  # the insight bus measured against an MQTT broker (bench/insights), and the broker and the
  # consumer of tests/security/test_mqtt.py: mosquitto and a Python client; the package also
  # brings a system broker on port 1883, which is stopped below. `hivemesh demo` runs a broker
  # and reads it with mosquitto_sub (mosquitto-clients).
  mosquitto mosquitto-clients python3-paho-mqtt
)

# kubectl (its kustomize renders packaging/kubernetes, tests/packaging/kubernetes_test.py): Debian's
# kubernetes-client, unless a kubectl is installed already (another package may own the path).
command -v kubectl >/dev/null 2>&1 || packages+=(kubernetes-client)
# node and npm run the Kubernetes schema check (kubernetes-models, below): Debian's, unless a
# Node.js with npm is installed already.
command -v npm >/dev/null 2>&1 || packages+=(nodejs npm)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

# The Kubernetes API's schemas, compiled into validators, from the npm registry, into the
# repository's .cache/ (not committed): tests/packaging/validate_k8s.mjs uses them. 4.5.1 runs on
# Debian's Node.js 18 (5.x wants 22).
npm_packages() {
  local root
  root=$(cd "$(dirname "$0")/.." && pwd)
  if ! grep -qs '"version": "4.5.1"' "$root/.cache/npm/node_modules/kubernetes-models/package.json"; then
    echo "install-deps: npm install kubernetes-models@4.5.1 into .cache/npm"
    mkdir -p "$root/.cache/npm"
    npm install --silent --no-audit --no-fund --prefix "$root/.cache/npm" kubernetes-models@4.5.1
  fi
}

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages present"
  npm_packages
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
# nginx-light's package starts a system nginx on port 80; benchmarks run their own instance.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet nginx 2>/dev/null; then
  $SUDO systemctl stop nginx || true
fi
# Likewise prometheus starts a server on port 9090 where systemd runs; only promtool is needed.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
  $SUDO systemctl disable --now prometheus || true
fi
# And mosquitto's on port 1883: the benchmark starts its own broker on a free port.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet mosquitto 2>/dev/null; then
  $SUDO systemctl disable --now mosquitto || true
fi
npm_packages
