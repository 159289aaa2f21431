#!/usr/bin/python3
"""The OCI image (scripts/build-image.py), built offline from the build under test with buildah
from scratch, run with podman:

- the full image serves /v2/health/ready and the four shipped models (the OpenCV plugin and its
  libraries are in it), answers an inference, runs as uid 10001 and not root, passes its own
  health check (`podman healthcheck run`, which runs `hivemesh health` inside), carries its
  labels, runs with a read-only root, and stops with exit 0 on `podman stop` (SIGTERM, the
  drain);
- the slim image (no OpenCV) serves the identity model;
- both sizes are printed.

This machine's podman needs runc, the cgroupfs cgroup manager and no default ulimits: the test
writes a containers.conf saying so (agent_node.use_podman_here). Without systemd, podman cannot schedule
the health check itself (it logs "unable to get systemd connection"); the test runs it.

    image_test.py path/to/build/hivemesh
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "integration"))
from agent_node import free_port, http_get as get, use_podman_here, wait_for  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHIPPED_MODELS = ("face-detector", "identity", "people-detector", "vibration-anomaly")


def podman(*args, timeout=120):
    return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)


def infer_identity(port):
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/v2/models/identity/infer",
        data=json.dumps({"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [3],
                                     "data": [1, 2, 3]}]}).encode(),
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())["outputs"][0]["data"]


class ImageTest(unittest.TestCase):
    BINARY = None

    @classmethod
    def setUpClass(cls):
        for tool in ("podman", "buildah", "runc", "readelf", "strip"):
            if shutil.which(tool) is None:
                raise AssertionError(f"{tool} is missing: scripts/install-deps.sh installs it")
        cls.work = tempfile.mkdtemp(prefix="hivemesh-image-test-")
        use_podman_here(cls.work)
        cls.build = os.path.dirname(os.path.abspath(cls.BINARY))
        cls.images, cls.containers = [], []

    @classmethod
    def tearDownClass(cls):
        for name in cls.containers:
            podman("rm", "--force", "--volumes", "--time", "0", name)
        for image in cls.images:
            podman("rmi", "--force", image)
        shutil.rmtree(cls.work, ignore_errors=True)

    def build_image(self, *flags):
        tag = f"localhost/hivemesh-test-{os.getpid()}:{'slim' if flags else 'full'}"
        oci = os.path.join(self.work, "oci-" + tag.rsplit(":", 1)[1])
        out = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "build-image.py"),
                              self.build, "--tag", tag, "--oci-dir", oci, *flags],
                             capture_output=True, text=True, timeout=600)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.images.append(tag)
        print(out.stdout.strip().splitlines()[0], flush=True)
        m = re.search(r"^RESULT image=\S+ size_bytes=(\d+) compressed_bytes=(\d+)$", out.stdout,
                      re.M)
        self.assertIsNotNone(m, out.stdout)
        self.assertGreater(int(m.group(2)), 0)
        return tag

    def start(self, tag, name, *podman_flags):
        http, grpc, gossip = free_port(), free_port(), free_port()
        name = f"hivemesh-test-{os.getpid()}-{name}"
        out = podman("run", "-d", "--name", name, "--network", "host", *podman_flags,
                     "--env", f"HIVEMESH_NODE=127.0.0.1:{http}", tag,
                     "--node-name", name, "--http-address", f"127.0.0.1:{http}",
                     "--grpc-address", f"127.0.0.1:{grpc}", "--gossip-address",
                     f"127.0.0.1:{gossip}")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.containers.append(name)
        try:
            wait_for(lambda: get(http, "/v2/health/ready")[0] == 200, 120,
                     f"the container {name} to be ready")
        except AssertionError as e:
            raise AssertionError(f"{e}; its log:\n{self.logs(name)}") from None
        return name, http

    @staticmethod
    def logs(name):
        out = podman("logs", name)
        return (out.stdout + out.stderr)[-3000:]

    def test_1_the_full_image_serves_the_shipped_models(self):
        tag = self.build_image()
        # Read-only, as Kubernetes runs it (packaging/kubernetes): it writes only its volume and
        # /tmp.
        name, http = self.start(tag, "full", "--read-only")
        for model in SHIPPED_MODELS:
            wait_for(lambda: get(http, f"/v2/models/{model}/ready")[0] == 200, 60,
                     f"{model} to be ready in the image")
        self.assertEqual(infer_identity(http), [1, 2, 3])

        # Not root: the user the image names, also for the process podman started.
        inspect = json.loads(podman("inspect", name).stdout)[0]
        pid = inspect["State"]["Pid"]
        with open(f"/proc/{pid}/status") as f:
            uids = re.search(r"^Uid:\s+(\d+)", f.read(), re.M).group(1)
        self.assertEqual(uids, "10001")
        image = json.loads(podman("image", "inspect", tag).stdout)[0]
        self.assertEqual(image["Config"]["User"], "10001:10001")
        labels = image["Config"]["Labels"]
        self.assertEqual(labels["org.opencontainers.image.title"], "hivemesh")
        version = subprocess.run([self.BINARY, "--version"], capture_output=True,
                                 text=True).stdout.strip()
        self.assertEqual(labels["org.opencontainers.image.version"], version)
        # Its health check is the image's own, run inside the container.
        self.assertEqual(image["Healthcheck"]["Test"], ["CMD", "/usr/bin/hivemesh", "health"])
        check = podman("healthcheck", "run", name)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        # ... which fails when the node does not answer.
        self.assertEqual(podman("exec", name, "/usr/bin/hivemesh", "health", "--node",
                                "127.0.0.1:1").returncode, 3)

        # SIGTERM: the node drains and exits 0.
        self.assertEqual(podman("stop", "--time", "60", name, timeout=90).returncode, 0)
        code = podman("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()
        self.assertEqual(code, "0", self.logs(name))

    def test_2_the_slim_image_serves_without_opencv(self):
        tag = self.build_image("--slim")
        name, http = self.start(tag, "slim")
        self.assertEqual(infer_identity(http), [1, 2, 3])
        listing = podman("run", "--rm", "--entrypoint", "/usr/bin/hivemesh", tag, "--version")
        self.assertEqual(listing.returncode, 0, listing.stderr)
        # No OpenCV in it: the people detector is not even shipped, and the plugin is absent.
        self.assertEqual(get(http, "/v2/models/people-detector/ready")[0], 404)
        mount = subprocess.run(["podman", "image", "mount", tag], capture_output=True, text=True)
        self.assertEqual(mount.returncode, 0, mount.stderr)
        try:
            files = [name for _, _, names in os.walk(mount.stdout.strip()) for name in names]
        finally:
            podman("image", "unmount", tag)
        self.assertIn("libhivemesh_grpc.so", files)
        self.assertEqual([f for f in files if "opencv" in f], [])
        self.assertEqual(podman("stop", "--time", "60", name, timeout=90).returncode, 0)


if __name__ == "__main__":
    ImageTest.BINARY = sys.argv.pop(1)
    unittest.main(verbosity=2)
