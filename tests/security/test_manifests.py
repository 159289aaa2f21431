#!/usr/bin/python3
"""Manifests applied at a real node (docs/services.md, "Applied state"): `hivemesh apply`, `get`
and `delete` over /v1/objects, kept across a restart, and hostile manifests refused with a
message naming what is wrong while the node keeps serving.

- the seed's Service and a Deployment, from a folder, are applied, listed (table, JSON, YAML)
  and kept across a restart; unknown fields are warned about, not refused;
- they are deleted by name and by manifest, and a second delete says what is not there;
- invalid YAML, an unknown kind, a Service selecting nothing, a Deployment without a program,
  10 MB of manifest, 100,000 nested brackets, a billion laughs: each refused (400 naming the field
  or the bound), nothing applied, inferences served throughout, memory bounded;
- applying is an admin call: a node with `admin_access: token` refuses it without the token.

    test_manifests.py path/to/hivemesh
"""
import json
import os
import subprocess
import tempfile
import unittest

from hostile import Node, binary_from_argv, slack_mib

EXAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples",
                        "services")
with open(os.path.join(EXAMPLES, "edge-camera-ai.yaml")) as f:
    SERVICE = f.read()  # the seed's Service
with open(os.path.join(EXAMPLES, "object-detection.yaml")) as f:
    # A field hivemesh does not use, to be warned about.
    DEPLOYMENT = f.read().replace("  replicas: 1\n", "  replicas: 1\n  minReadySeconds: 5\n")


class ManifestsTest(unittest.TestCase):
    BINARY = None

    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.mkdtemp(prefix="hivemesh-manifests-")
        cls.node = Node(cls.BINARY, "objects")
        cls.token_file = os.path.join(cls.work, "admin.token")
        with open(cls.token_file, "w") as f:
            f.write("manifests-admin-token-0123456789\n")
        cls.locked = Node(cls.BINARY, "objects-locked",
                          args=["--admin-access", "token", "--admin-token-file", cls.token_file])

    @classmethod
    def tearDownClass(cls):
        cls.node.stop()
        cls.locked.stop()

    def cli(self, *args, node=None, stdin=None):
        node = node or self.node
        return subprocess.run([self.BINARY, *args, "--node", f"127.0.0.1:{node.port}"],
                              capture_output=True, text=True, timeout=30, input=stdin)

    def write(self, name, text):
        folder = os.path.join(self.work, "m")
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, name), "w") as f:
            f.write(text)
        return folder

    def objects(self, kind):
        out = self.cli("get", kind, "-o", "json")
        self.assertEqual(out.returncode, 0, out.stderr)
        return {o["name"]: o for o in json.loads(out.stdout)["objects"]}

    def test_1_apply_get_restart_delete(self):
        self.write("a-service.yaml", SERVICE)
        folder = self.write("b-deployment.yml", DEPLOYMENT)
        out = self.cli("apply", "-f", folder)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("Service/edge-camera-ai applied", out.stdout)
        self.assertIn("Deployment/object-detection applied", out.stdout)
        self.assertIn("spec.minReadySeconds is not used by hivemesh", out.stderr)
        table = self.cli("get", "services")
        self.assertEqual(table.returncode, 0, table.stderr)
        # The node listens on the Service's port (80), or says why not (another node has it).
        self.assertRegex(table.stdout, r"edge-camera-ai\s+app=object-detection\s+80->5000\s+"
                                       r"(listening on 127\.0\.0\.1:80|port 80 is not free here: "
                                       r".*)\s+objects")
        workloads = self.objects("workloads")
        self.assertEqual(workloads["object-detection"]["summary"]["replicas"], 1)
        self.assertEqual(workloads["object-detection"]["summary"]["command"],
                         "python3 -m http.server --bind 127.0.0.1 5000")
        self.assertEqual(workloads["object-detection"]["version"]["origin"], "objects")
        yaml = self.cli("get", "svc", "-o", "yaml")
        self.assertIn("kind: Service", yaml.stdout)
        self.assertIn("targetPort: 5000", yaml.stdout)
        # Applied again: a newer version of the same object.
        before = self.objects("services")["edge-camera-ai"]["version"]
        out = self.cli("apply", "-f", "-", stdin=SERVICE)
        self.assertEqual(out.returncode, 0, out.stderr)
        after = self.objects("services")["edge-camera-ai"]["version"]
        self.assertGreater((after["ms"], after["counter"]), (before["ms"], before["counter"]))
        # Kept across a restart.
        self.node.stop()
        type(self).node = Node(self.BINARY, "objects")
        self.assertIn("edge-camera-ai", self.objects("services"))
        self.assertIn("object-detection", self.objects("workloads"))
        # Deleted by name, and by manifest; once gone, a delete says so.
        out = self.cli("delete", "service", "edge-camera-ai")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(self.objects("services"), {})
        out = self.cli("delete", "-f", os.path.join(self.work, "m", "b-deployment.yml"))
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(self.objects("workloads"), {})
        out = self.cli("delete", "service", "edge-camera-ai")
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("no Service named edge-camera-ai", out.stderr)
        self.node.stop()
        type(self).node = Node(self.BINARY, "objects")
        self.assertEqual(self.objects("services"), {}, "a delete is kept across a restart too")

    def test_2_hostile_manifests_are_refused_and_the_node_serves(self):
        rss_before = self.node.rss_mib()
        laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
            f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
            for p, c in zip("abcdefgh", "bcdefghi"))
        cases = [
            ("kind: Service\nmetadata: {name: [", "not YAML"),
            (SERVICE.replace("kind: Service", "kind: Pod"), "'Pod' is not a kind hivemesh runs"),
            (SERVICE.replace("    app: object-detection\n", ""), "spec.selector"),
            (DEPLOYMENT.replace('command: ["python3", "-m", "http.server", "--bind", "127.0.0.1", '
                                '"5000"]', "x: 1"),
             "needs an image (run through podman) or a command"),
            (SERVICE.replace("port: 80", "port: 0"), "spec.ports[0].port: must be 1 to 65535"),
            ("[" * 100000, "levels deep"),
            (laughs, "kind: is required"),
            ("# " + "x" * (10 << 20) + "\n" + SERVICE, "at most 1048576"),
            ("\x00\xff binary", ""),
        ]
        for text, words in cases:
            status, body = self.node.request("POST", "/v1/objects", body=text.encode("utf-8",
                                                                                       "replace"))
            self.assertIn(status, (400, 413), (words, body[:300]))
            self.assertIn(words, body, body[:300])
            self.assertEqual(self.node.infer_identity()[0], 200, "the node serves on")
        self.assertEqual(self.objects("services"), {})
        self.assertEqual(self.objects("workloads"), {})
        # The CLI says why and exits non-zero.
        out = self.cli("apply", "-f", "-", stdin="kind: Pod\n")
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("kind", out.stderr)
        self.assertLess(self.node.rss_mib() - rss_before, slack_mib(self.BINARY, 64))

    def test_3_applying_is_an_admin_call(self):
        out = self.cli("apply", "-f", "-", stdin=SERVICE, node=self.locked)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("403", out.stderr)
        out = self.cli("apply", "-f", "-", "--admin-token-file", self.token_file, stdin=SERVICE,
                       node=self.locked)
        self.assertEqual(out.returncode, 0, out.stderr)
        out = self.cli("delete", "service", "edge-camera-ai", node=self.locked)
        self.assertNotEqual(out.returncode, 0)
        out = self.cli("get", "services", "--admin-token-file", self.token_file, node=self.locked)
        self.assertIn("edge-camera-ai", out.stdout)


if __name__ == "__main__":
    ManifestsTest.BINARY = binary_from_argv()
    unittest.main(argv=["test_manifests"], verbosity=2)
