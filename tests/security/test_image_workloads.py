#!/usr/bin/python3
"""Workloads that run an image (docs/services.md, "Workloads the node runs"), through podman, on
real nodes: `box` (labelled runtime=podman) and `front`, plus `bare`, labelled like `box` but
started with no podman on its PATH.

The image is built here, offline, with buildah from scratch: Debian's static busybox and a page.
Its command (a shell that serves the page with busybox's httpd and stops on SIGTERM) comes from
the Deployment, as does an env variable the shell writes into a second page.

- applied at `front`, the Deployment runs on `box` as container hivemesh-box-web, on the host's
  network: the page is served, by name too from `front`, and the env variable arrived;
- the container killed: podman exits, the node starts it again, it serves again;
- deleted: the container is stopped and removed, the port closed;
- on `bare` (no podman): a clear error naming the image and what to do, and the node serves on.

This host's podman needs cgroupfs, runc and no default ulimits (containers.conf); the test
writes such a file and points CONTAINERS_CONF (inherited by the nodes) at it.

    test_image_workloads.py path/to/hivemesh
"""
import os
import re
import shutil
import subprocess
import tempfile
import unittest
import urllib.request

from hostile import Node, binary_from_argv, wait_for
from agent_node import use_podman_here  # after hostile, which puts tests/integration on the path
from test_workloads import by_name, deployment, free_port, service

IMAGE = "localhost/hivemesh-test-busybox:1"


def need(tool):
    if shutil.which(tool) is None:
        raise SystemExit(f"FAIL: {tool} is not installed (scripts/install-deps.sh installs it)")


def fetch(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return r.read().decode()
    except OSError:
        return None


def image_deployment(port, name="web", selector="runtime=podman"):
    script = (f"echo $MESSAGE > /www/env.txt; /bin/busybox httpd -f -p 127.0.0.1:{port} -h /www "
              "& p=$!; trap 'kill $p; exit 0' TERM; wait $p")
    return deployment(name, ["/bin/busybox", "sh", "-c", script], selector=selector, image=IMAGE,
                      env=[("MESSAGE", "hello from the manifest")], ports=[port])


def podman(*args):
    return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=120)


class ImageWorkloadsTest(unittest.TestCase):
    BINARY = None

    @classmethod
    def setUpClass(cls):
        for tool in ("podman", "buildah", "busybox", "runc"):
            need(tool)
        cls.work = tempfile.mkdtemp(prefix="hivemesh-images-")
        use_podman_here(cls.work)
        www = os.path.join(cls.work, "www")
        os.makedirs(www)
        with open(os.path.join(www, "index.html"), "w") as f:
            f.write("served from an image\n")
        box = subprocess.run(["buildah", "from", "scratch"], capture_output=True, text=True,
                             check=True).stdout.strip()
        try:
            subprocess.run(["buildah", "copy", box, shutil.which("busybox"), "/bin/busybox"],
                           check=True, capture_output=True)
            subprocess.run(["buildah", "copy", box, www, "/www"], check=True, capture_output=True)
            subprocess.run(["buildah", "commit", box, IMAGE], check=True, capture_output=True)
        finally:
            subprocess.run(["buildah", "rm", box], capture_output=True)
        cls.nodes = {"box": Node(cls.BINARY, "box", models=(), args=["--labels", "runtime=podman"])}
        seed = cls.nodes["box"].gossip
        cls.nodes["front"] = Node(cls.BINARY, "front", models=(),
                                  args=["--labels", "runtime=none", "--join", seed])
        path = os.environ["PATH"]
        os.environ["PATH"] = cls.work  # no podman there
        try:
            cls.nodes["bare"] = Node(cls.BINARY, "bare", models=(),
                                     args=["--labels", "runtime=podman-missing", "--join", seed])
        finally:
            os.environ["PATH"] = path
        wait_for(lambda: all(len([m for m in n.members() if m["state"] == "alive"]) == 3
                             for n in cls.nodes.values()), 30, "three members")

    @classmethod
    def tearDownClass(cls):
        for n in cls.nodes.values():
            n.stop()
        podman("rmi", "--force", IMAGE)
        shutil.rmtree(cls.work, ignore_errors=True)

    def cli(self, *args, stdin=None):
        out = subprocess.run([self.BINARY, *args, "--node",
                              f"127.0.0.1:{self.nodes['front'].port}"], input=stdin,
                             capture_output=True, text=True, timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)

    def test_1_an_image_runs_restarts_and_is_removed(self):
        port = free_port()
        self.cli("apply", "-f", "-", stdin=image_deployment(port) + "---\n" +
                 service("web-svc", "web", port))
        wait_for(lambda: fetch(port, "/") == "served from an image\n", 60, "the container to serve")
        self.assertEqual(fetch(port, "/env.txt"), "hello from the manifest\n")
        names = podman("ps", "--format", "{{.Names}}").stdout.split()
        self.assertIn("hivemesh-box-web", names)
        front = self.nodes["front"]
        wait_for(lambda: by_name(front, "web-svc")[:2] == (200, "box"), 30, "web-svc by name")
        # The container killed: podman exits, the node starts it again.
        self.assertEqual(podman("kill", "hivemesh-box-web").returncode, 0)
        box = self.nodes["box"]
        wait_for(lambda: len(box.log_lines(r"workload web started \(pid \d+\)")) >= 2, 60,
                 "the workload to start again")
        wait_for(lambda: fetch(port, "/") == "served from an image\n", 60, "it to serve again")
        # Deleted: stopped and removed, the port closed.
        self.cli("delete", "workload", "web")
        wait_for(lambda: "hivemesh-box-web" not in podman("ps", "-a", "--format",
                                                          "{{.Names}}").stdout.split(),
                 60, "the container to be removed")
        self.assertIsNone(fetch(port, "/"))
        # podman's --rm removes the container before podman itself exits and is reaped.
        wait_for(lambda: box.log_lines(r"workload web stopped"), 30, "the workload to be reaped")

    def test_2_a_node_without_podman_says_so_and_serves_on(self):
        port = free_port()
        self.cli("apply", "-f", "-", stdin=image_deployment(port, "bare-web",
                                                              "runtime=podman-missing"))
        bare = self.nodes["bare"]
        wait_for(lambda: bare.log_lines(r"workload bare-web is placed here and runs an image "
                                        r"\(localhost/hivemesh-test-busybox:1\), but podman is "
                                        r"not installed on this node"), 30, "the error")
        self.assertEqual(bare.request("GET", "/v2/health/live")[0], 200)
        self.assertFalse(re.search(r"workload bare-web started", bare.text()))
        self.cli("delete", "workload", "bare-web")


if __name__ == "__main__":
    ImageWorkloadsTest.BINARY = binary_from_argv()
    unittest.main(argv=["test_image_workloads"], verbosity=2)
