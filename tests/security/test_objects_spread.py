#!/usr/bin/python3
"""Applied objects spread to every node by anti-entropy (docs/services.md, "Applied state"), on a
secure mesh of three real nodes with `admin_access: token`.

- manifests applied at one node are on every node within seconds (the time is printed);
- a node stopped while objects are applied and deleted comes back, compares fingerprints and
  indexes with the others and catches up, deletes included;
- the same object applied at two nodes at once ends as the same version on every node;
- the index and the pull are for members and admins only; a pull of keys that are not keys is
  refused naming the line.

    test_objects_spread.py path/to/hivemesh
"""
import json
import os
import tempfile
import threading
import time
import unittest

from hostile import binary_from_argv, raw_http, wait_for
from secure_mesh import SecureMeshTest

EXAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples",
                        "services")


def service(name, app="web"):
    return (f"apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  selector:\n"
            f"    app: {app}\n  ports:\n  - port: 80\n")


class ObjectsSpreadTest(SecureMeshTest):
    WORK = tempfile.TemporaryDirectory(prefix="hivemesh-spread-")
    ADMIN_TOKEN = os.path.join(WORK.name, "admin.token")
    NODE_ARGS = ("--admin-access", "token", "--admin-token-file", ADMIN_TOKEN)
    CLI_ARGS = ("--admin-token-file", ADMIN_TOKEN)

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        with open(cls.ADMIN_TOKEN, "w") as f:
            f.write("spread-admin-token-0123456789\n")
        cls.n0 = cls.start("n0", (), [], secure=True)
        cls.n1 = cls.start("n1", (), cls.join_args())
        cls.n2 = cls.start("n2", (), cls.join_args())
        wait_for(lambda: all(len([m for m in n.members() if m["state"] == "alive"]) == 3
                             for n in (cls.n0, cls.n1, cls.n2)), 30, "three members")

    def objects(self, node, kind="services"):
        out = self.cli("get", kind, "-o", "json", "--node", f"127.0.0.1:{node.port}")
        self.assertEqual(out.returncode, 0, out.stderr)
        return {o["name"]: o for o in json.loads(out.stdout)["objects"]}

    def apply(self, node, text):
        out = self.cli("apply", "-f", "-", "--node", f"127.0.0.1:{node.port}", stdin=text)
        self.assertEqual(out.returncode, 0, out.stderr)

    def test_1_applied_at_one_node_on_every_node(self):
        with open(os.path.join(EXAMPLES, "edge-camera-ai.yaml")) as f:
            seed = f.read()
        started = time.monotonic()
        self.apply(self.n1, seed)
        for n in (self.n0, self.n2):
            wait_for(lambda: "edge-camera-ai" in self.objects(n), 10,
                     f"{n.name} to hold the Service")
        print(f"a Service applied at n1 was on n0 and n2 {time.monotonic() - started:.2f} s later",
              flush=True)
        versions = {json.dumps(self.objects(n)["edge-camera-ai"]["version"], sort_keys=True)
                    for n in (self.n0, self.n1, self.n2)}
        self.assertEqual(len(versions), 1, versions)

    def test_2_a_node_back_from_offline_catches_up(self):
        self.apply(self.n0, service("gone"))
        wait_for(lambda: "gone" in self.objects(self.n2), 10, "n2 to hold gone")
        self.n2.stop()
        self.nodes.remove(self.n2)
        out = self.cli("delete", "service", "gone", "--node", f"127.0.0.1:{self.n0.port}")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.apply(self.n1, service("new-while-away"))
        type(self).n2 = self.start("n2", (), ["--join", self.n0.gossip], secure=True)
        started = time.monotonic()
        wait_for(lambda: "new-while-away" in self.objects(self.n2) and
                 "gone" not in self.objects(self.n2), 30, "n2 to catch up")
        print(f"n2, back after an apply and a delete, caught up {time.monotonic() - started:.2f} s "
              f"after it started", flush=True)
        wait_for(lambda: self.objects(self.n0).keys() == self.objects(self.n2).keys(), 10,
                 "the same objects on n0 and n2")

    def test_3_concurrent_applies_converge(self):
        threads = [threading.Thread(target=self.apply, args=(n, service("both", app)))
                   for n, app in ((self.n0, "from-n0"), (self.n1, "from-n1"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

        def versions():
            return {json.dumps(self.objects(n).get("both", {}).get("version"), sort_keys=True)
                    for n in (self.n0, self.n1, self.n2)}

        wait_for(lambda: len(versions()) == 1 and "null" not in versions(), 15,
                 "one version of the object on every node")
        apps = {self.objects(n)["both"]["summary"]["selector"]["app"]
                for n in (self.n0, self.n1, self.n2)}
        self.assertEqual(len(apps), 1, apps)

    def test_4_index_and_pull_are_for_members_and_admins(self):
        status, raw = raw_http(self.n0.port, b"GET /v1/objects/index HTTP/1.1\r\nHost: n\r\n"
                                             b"Connection: close\r\n\r\n")
        self.assertEqual(status, 403, raw[:300])
        with open(self.ADMIN_TOKEN) as f:
            token = f.read().strip().encode()
        status, raw = raw_http(self.n0.port, b"GET /v1/objects/index HTTP/1.1\r\nHost: n\r\n"
                                             b"Authorization: Bearer " + token +
                               b"\r\nConnection: close\r\n\r\n")
        self.assertEqual(status, 200, raw[:300])
        self.assertIn(b"Service edge-camera-ai ", raw)
        body = b"Service ../../etc\nPod x\n"
        status, raw = raw_http(self.n0.port, b"POST /v1/objects/pull HTTP/1.1\r\nHost: n\r\n"
                                             b"Authorization: Bearer " + token +
                               b"\r\nContent-Length: " + str(len(body)).encode() +
                               b"\r\nConnection: close\r\n\r\n" + body)
        self.assertEqual(status, 400, raw[:300])
        self.assertIn(b"line 1", raw)


if __name__ == "__main__":
    ObjectsSpreadTest.BINARY = binary_from_argv()
    unittest.main(argv=["test_objects_spread"], verbosity=2)
