#!/usr/bin/python3
"""Model versions and live reload with real nodes on loopback, under continuous load.

Node B serves the vibration model from its own repository folder in poll mode (100 ms). Node A
serves nothing and forwards to B. Client threads send inferences without a version to B and to A
the whole time, while the test adds version 2 (a copy of the ONNX model), swaps its files, adds a
broken version 3, and removes versions 3 and 2. Not one request may fail; the responses' model
version must follow the changes on both paths; A must route a request naming version 2 to B once
B serves it, and answer 404 once it is gone. Node C, in explicit mode, unloads and loads the model
through the REST repository API: while unloaded, its requests go to B.

    versions_test.py BINARY
"""
import http.client
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agent_node import AgentNode, wait_for  # noqa: E402
BINARY = None
MODEL = os.path.join(ROOT, "models", "vibration-anomaly")
WINDOW = json.dumps({"inputs": [{"name": "window", "shape": [1, 128], "datatype": "FP32",
                                 "data": [((i * 7) % 13) / 13.0 for i in range(128)]}]})


class Node(AgentNode):
    def __init__(self, binary, name, repo, extra=()):
        super().__init__(binary, name, ["--model-repository", repo, "--log-level", "info", *extra])

    def index(self):
        return json.loads(self.request("POST", "/v2/repository/index")[1])


class Load:
    """Client threads sending inferences (no version named) to one node, keep-alive, until
    stopped. Records every answer: (status, model_version, served_by, error text, thread)."""

    def __init__(self, port, threads=2):
        self.port = port
        self.stopping = False
        self.lock = threading.Lock()
        self.answers = []
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]
        for t in self.threads:
            t.start()

    def _run(self, thread):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        while not self.stopping:
            try:
                conn.request("POST", "/v2/models/vib/infer", body=WINDOW,
                             headers={"Content-Type": "application/json"})
                r = conn.getresponse()
                body = r.read().decode()
                if r.status == 200:
                    doc = json.loads(body)
                    answer = (200, doc["model_version"], doc["parameters"]["served_by"], "",
                              thread)
                else:
                    answer = (r.status, "", "", body, thread)
            except Exception as e:  # a dropped connection is a failure too
                answer = (0, "", "", repr(e), thread)
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            with self.lock:
                self.answers.append(answer)
        conn.close()

    def recent_versions(self, n=20):
        with self.lock:
            return {a[1] for a in self.answers[-n:] if a[0] == 200}

    def stop(self):
        self.stopping = True
        for t in self.threads:
            t.join()
        return self.answers


class VersionsTest(unittest.TestCase):
    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="versions-test-")
        self.repo = os.path.join(self.work, "repo")
        os.makedirs(os.path.join(self.repo, "vib", "1"))
        shutil.copy(os.path.join(MODEL, "config.yaml"), os.path.join(self.repo, "vib"))
        shutil.copy(os.path.join(MODEL, "1", "model.onnx"), os.path.join(self.repo, "vib", "1"))
        os.makedirs(os.path.join(self.work, "empty"))
        self.nodes = []

    def tearDown(self):
        for n in self.nodes:
            n.stop()
        shutil.rmtree(self.work, ignore_errors=True)

    def node(self, name, repo, extra=()):
        n = Node(BINARY, name, repo, extra)
        self.nodes.append(n)
        return n

    def add_version(self, v, onnx_bytes=None):
        d = os.path.join(self.repo, "vib", str(v))
        os.makedirs(d)
        if onnx_bytes is None:
            shutil.copy(os.path.join(MODEL, "1", "model.onnx"), d)
        else:
            with open(os.path.join(d, "model.onnx"), "wb") as f:
                f.write(onnx_bytes)

    def test_versions_change_under_load_without_a_failed_request(self):
        b = self.node("node-b", self.repo, ["--model-control-mode", "poll",
                                            "--repository-poll-ms", "100"])
        a = self.node("node-a", os.path.join(self.work, "empty"), ["--join", b.gossip])
        wait_for(lambda: a.request("POST", "/v2/models/vib/infer", WINDOW)[0] == 200, 15,
                 "node-a to learn that node-b serves vib")
        direct, via_a = Load(b.port), Load(a.port)
        loads = (direct, via_a)
        try:
            time.sleep(0.5)
            # Added: both paths move to version 2.
            self.add_version(2)
            for load in loads:
                wait_for(lambda: load.recent_versions() == {"2"}, 15, "version 2 to serve")
            # A request naming version 2 reaches it through node-a once the mesh knows.
            wait_for(lambda: a.request("POST", "/v2/models/vib/versions/2/infer", WINDOW)[0]
                     == 200, 15, "node-a to route version 2 to node-b")
            # Swapped: version 2's files change; it is reloaded in place.
            reloads = b.text().count("model 'vib' now serves version 2")
            time.sleep(0.05)
            shutil.copy(os.path.join(MODEL, "1", "model.onnx"),
                        os.path.join(self.repo, "vib", "2", "model.onnx"))
            os.utime(os.path.join(self.repo, "vib", "2", "model.onnx"))
            wait_for(lambda: b.text().count("model 'vib' now serves version 2") > reloads, 15,
                     "version 2 to be reloaded")
            # A broken version 3: version 2 keeps serving, and the index says why 3 did not load.
            self.add_version(3, b"this is not an onnx model")
            row = wait_for(lambda: [m for m in b.index() if m.get("version") == "3"], 15,
                           "version 3 in the index")[0]
            self.assertEqual(row["state"], "UNAVAILABLE")
            self.assertIn("version 3", row["reason"])
            self.assertIn("model.onnx", row["reason"])
            time.sleep(0.5)
            for load in loads:
                self.assertEqual(load.recent_versions(), {"2"})
            # Removed: 3 and 2 go, version 1 serves again.
            shutil.rmtree(os.path.join(self.repo, "vib", "3"))
            shutil.rmtree(os.path.join(self.repo, "vib", "2"))
            for load in loads:
                wait_for(lambda: load.recent_versions() == {"1"}, 15, "version 1 to serve again")
            status, body = wait_for(
                lambda: (lambda r: r if r[0] == 404 else None)(
                    a.request("POST", "/v2/models/vib/versions/2/infer", WINDOW)),
                15, "node-a to answer 404 for the removed version")
            self.assertIn("version '2'", body)
            time.sleep(0.5)
        finally:
            answers = [load.stop() for load in loads]
        for name, got in zip(("node-b directly", "through node-a"), answers):
            failed = [x for x in got if x[0] != 200]
            self.assertEqual(failed, [], f"{name}: failed requests")
            # Each client saw versions in the order they served: 1, then 2, then 1 again (no
            # flapping). Answers of different clients may overlap at a change.
            for thread in {x[4] for x in got}:
                versions = [x[1] for x in got if x[4] == thread]
                order = [v for i, v in enumerate(versions) if i == 0 or versions[i - 1] != v]
                self.assertEqual(order, ["1", "2", "1"], f"{name}: versions served in order")
            self.assertGreater(len(got), 200, f"{name}: requests sent")
            self.assertEqual({x[2] for x in got}, {"node-b"})
            print(f"{name}: {len(got)} requests, 0 failed, versions {order}")

    def test_explicit_unload_sends_requests_to_peers_and_load_brings_them_back(self):
        b = self.node("node-b", self.repo)
        c = self.node("node-c", self.repo, ["--model-control-mode", "explicit", "--join",
                                            b.gossip])

        def served_by():
            status, body = c.request("POST", "/v2/models/vib/infer", WINDOW)
            self.assertEqual(status, 200, body)
            return json.loads(body)["parameters"]["served_by"]

        self.assertEqual(served_by(), "node-c")
        # Not in explicit mode: refused, naming the setting.
        status, body = b.request("POST", "/v2/repository/models/vib/unload")
        self.assertEqual(status, 400)
        self.assertIn("model_control_mode: explicit", body)
        self.assertEqual(c.request("GET", "/v2/repository/models/vib/unload")[0], 405)
        self.assertEqual(c.request("POST", "/v2/repository/models/nope/load")[0], 404)

        load = Load(c.port)
        try:
            time.sleep(0.3)
            status, body = c.request("POST", "/v2/repository/models/vib/unload")
            self.assertEqual((status, body), (200, "{}"))
            self.assertEqual(c.index(), [{"name": "vib", "state": "UNAVAILABLE",
                                          "reason": "unloaded"}])
            self.assertEqual(c.request("POST", "/v2/repository/index", '{"ready": true}'),
                             (200, "[]"))
            status, body = c.request("POST", "/v2/repository/models/vib/load",
                                     '{"parameters": {"config": "{}"}}')
            self.assertEqual(status, 400)
            self.assertIn("parameter 'config' is not supported", body)
            wait_for(lambda: served_by() == "node-b", 15, "node-c to send vib to node-b")
            status, body = c.request("POST", "/v2/repository/models/vib/load", "{}")
            self.assertEqual((status, body), (200, "{}"))
            # Under the test's own load node-c may still send one on to node-b.
            wait_for(lambda: served_by() == "node-c", 15, "node-c to serve vib again")
            time.sleep(0.3)
        finally:
            got = load.stop()
        self.assertEqual([x for x in got if x[0] != 200], [], "failed requests")
        served = [x[2] for x in got]
        self.assertIn("node-b", served)
        self.assertIn("node-c", served[-10:])


if __name__ == "__main__":
    BINARY = sys.argv.pop(1)
    unittest.main(verbosity=2)
