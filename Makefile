# The front door. Every target installs what it needs first (scripts/install-deps.sh is
# idempotent and fast when everything is present).
#
#   make demo     dependencies + Release build + sample frames, then `hivemesh demo`: a 4-node
#                 edge site on loopback for 90 s (DEMO_ARGS="--duration 30 --keep-running" ...)
#   make          dependencies + Release build (build/release)
#   make test     dependencies + ASan/UBSan build (build/asan) + fuzzers + clang's lock analysis
#                 + every test via CTest
#   make thread-safety  clang's thread-safety analysis of every file the ASan build compiles
#   make run      one node serving models/ on 127.0.0.1:8000 (REST) and :8001 (gRPC)
#   make bench    the benchmarks in bench/ (Release build)
#   make chaos    the full chaos schedule (tests/chaos) on the Release build, at 275 requests/s;
#                 needs root (network namespaces)
#   make package  the Debian package hivemesh_<version>_<arch>.deb (Release build, CPack), checked
#                 by lintian; in build/release
#   make test-package-fresh  that package on a fresh Debian 12 root made by debootstrap: installed
#                 with its Depends, served, purged (root; downloads from the Debian mirror)
#   make image    the OCI images localhost/hivemesh:<version> and :<version>-slim (no OpenCV),
#                 built offline with buildah from scratch; their sizes
#   make test-upgrade  a rolling upgrade under load from the previous release (the last tag, or
#                 UPGRADE_FROM=vX.Y.Z), built beside this tree, to the Release build: 0 failed
#   make format   clang-format every C++ file

JOBS ?= $(shell nproc)
FUZZ_SECONDS ?= 20
CMAKE_COMMON := -G Ninja -DCMAKE_EXPORT_COMPILE_COMMANDS=ON -DCMAKE_INSTALL_PREFIX=/usr

.PHONY: all deps release test asan fuzz thread-safety run bench chaos format demo clean package \
        test-package-fresh image test-upgrade

all: release

deps:
	@scripts/install-deps.sh

release: deps
	cmake -S . -B build/release $(CMAKE_COMMON) -DCMAKE_BUILD_TYPE=Release -DHIVEMESH_BUILD_TESTS=OFF
	cmake --build build/release -j $(JOBS)

asan: deps
	cmake -S . -B build/asan $(CMAKE_COMMON) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHIVEMESH_SANITIZE=ON -DHIVEMESH_BUILD_BENCH=OFF
	cmake --build build/asan -j $(JOBS)

fuzz: deps
	CC=clang CXX=clang++ cmake -S . -B build/fuzz $(CMAKE_COMMON) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHIVEMESH_FUZZ_ONLY=ON
	cmake --build build/fuzz -j $(JOBS)
	scripts/run-fuzzers.sh build/fuzz $(FUZZ_SECONDS)

# Lock annotations (ABSL_GUARDED_BY, ...) checked by clang over the files the ASan build compiles.
thread-safety: asan
	JOBS=$(JOBS) scripts/check-thread-safety.py build/asan

# The fuzzers and the lock analysis run first so that CTest's summary is the last thing printed.
test: fuzz asan thread-safety
	cd build/asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest -j $(JOBS) --output-on-failure --timeout 300

package: release
	cd build/release && rm -f hivemesh_*.deb && cpack -G DEB
	lintian --fail-on error build/release/hivemesh_*.deb
	@ls -l build/release/hivemesh_*.deb

test-package-fresh: package
	scripts/test-package-fresh-root.sh build/release/hivemesh_*.deb

UPGRADE_FROM ?= $(shell git describe --tags --abbrev=0 --match 'v*' HEAD^ 2>/dev/null)
test-upgrade: release
	scripts/build-release-at.sh "$(UPGRADE_FROM)" build/upgrade
	/usr/bin/python3 tests/upgrade/rolling_upgrade.py build/upgrade/$(UPGRADE_FROM)/hivemesh \
	  build/release/hivemesh

image: release
	scripts/build-image.py build/release --oci-dir build/release/oci-image
	scripts/build-image.py build/release --slim --oci-dir build/release/oci-image-slim

demo: release
	scripts/fetch-frames.sh build/release > /dev/null
	build/release/hivemesh demo $(DEMO_ARGS)

run: release
	build/release/hivemesh agent --model-repository models --http-address 127.0.0.1:8000

bench: release
	bench/run-all.sh build/release

CHAOS_ARGS ?= --rate 275 --max-p100-ms 2000
chaos: release
	/usr/bin/python3 tests/chaos/chaos.py build/release/hivemesh --schedule full $(CHAOS_ARGS)

format:
	clang-format -i $$(git ls-files '*.cc' '*.h')

clean:
	rm -rf build
