#!/usr/bin/python3
"""The root CA offline (docs/identity.md, "The trust chain"): its key exported and removed from
the node that created the mesh, and brought back for a rotation, on real nodes.

- `hivemesh ca export-key --out FILE` writes the root key (0600) and removes it from the node,
  memory and state folder; the mesh goes on: the node still issues (a node joins with a token),
  renews and serves, across a restart too;
- without the root key, `ca rotate` is refused, saying where the key is to come from;
- `hivemesh ca import-key FILE` takes it back only if it is the mesh's root key (another key,
  or a file that is not a key, is refused); then the root rotates;
- the key leaves the node only to a caller on the node itself (or one presenting an operator
  certificate): an admin call from another address is refused even with the node's admin
  token; and a node of a secure mesh refuses `admin_access: any` at start;
- an existing file is never overwritten.

    test_root_key_export.py path/to/hivemesh
"""
import os
import stat
import subprocess
import tempfile
import unittest

from hostile import binary_from_argv, http_from, non_loopback_ipv4, wait_for
import agent_node  # noqa: E402 (on the path hostile sets)
from secure_mesh import SecureMeshTest


def root_key_file(name):
    return os.path.join(agent_node.STATE_ROOT, name, "mesh", "root.key")


class RootKeyExportTest(SecureMeshTest):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.work = tempfile.TemporaryDirectory(prefix="hivemesh-root-key-")
        cls.n0 = cls.start("n0", ("identity",), ["--certificate-ttl", "20s"], secure=True)
        cls.n1 = cls.start("n1", (), cls.join_args())
        wait_for(lambda: cls.n1.infer_identity()[0] == 200, 30, "n1 to forward identity")

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        cls.work.cleanup()

    def test_export_keeps_the_mesh_going_and_import_takes_only_the_root_key(self):
        node = ["--node", f"127.0.0.1:{self.n0.port}"]
        self.assertTrue(os.path.exists(root_key_file("n0")))
        with open(root_key_file("n0")) as f:
            original = f.read()

        # Never over an existing file.
        taken = os.path.join(self.work.name, "taken.key")
        with open(taken, "w") as f:
            f.write("something else\n")
        out = self.cli("ca", "export-key", "--out", taken, *node)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("exists", out.stderr)
        self.assertTrue(os.path.exists(root_key_file("n0")), "nothing was removed")

        exported = os.path.join(self.work.name, "root.key")
        out = self.cli("ca", "export-key", "--out", exported, *node)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(stat.S_IMODE(os.stat(exported).st_mode), 0o600)
        with open(exported) as f:
            self.assertEqual(f.read(), original)
        self.assertFalse(os.path.exists(root_key_file("n0")), "the key is still on the node")
        out = self.cli("ca", "export-key", "--out", os.path.join(self.work.name, "again.key"),
                       *node)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("does not hold the mesh's root key", out.stderr)

        # Without it: the node still issues and renews (20 s certificates), and restarts so.
        late = self.start("late", (), self.join_args())
        wait_for(lambda: late.infer_identity()[0] == 200, 30, "a node joined after the export")
        wait_for(lambda: self.n0.log_lines(r"certificate renewed by this node"), 30,
                 "the issuer to renew its own certificate")
        self.n0.stop()
        self.nodes.remove(self.n0)
        # On new ports: it finds the mesh again through n1.
        self.__class__.n0 = self.start("n0", ("identity",),
                                       ["--certificate-ttl", "20s", "--join", self.n1.gossip],
                                       secure=True)
        node = ["--node", f"127.0.0.1:{self.n0.port}"]
        self.assertFalse(os.path.exists(root_key_file("n0")))
        wait_for(lambda: self.n1.infer_identity()[0] == 200, 30, "n1 to forward after a restart")
        out = self.cli("ca", "rotate", *node)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("import-key", out.stderr)

        # Import: a file that is not a key, another Ed25519 key (a node's), then the root key.
        out = self.cli("ca", "import-key", taken, *node)
        self.assertNotEqual(out.returncode, 0)
        node_key = os.path.join(agent_node.STATE_ROOT, "n1", "node.key")
        out = self.cli("ca", "import-key", node_key, *node)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("not the mesh's root key", out.stderr)
        self.assertFalse(os.path.exists(root_key_file("n0")))
        out = self.cli("ca", "import-key", exported, *node)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertTrue(os.path.exists(root_key_file("n0")))
        out = self.cli("ca", "rotate", *node)
        self.assertEqual(out.returncode, 0, out.stderr)
        wait_for(lambda: self.n0.log_lines(r"root rotation finished"), 30,
                 "the rotation to finish")

    def test_the_key_leaves_only_to_a_caller_on_the_node(self):
        ip = non_loopback_ipv4()
        if ip is None:
            self.fail("this machine has no non-loopback IPv4 address to call from")
        # A mesh of its own whose node takes admin calls from anywhere with its admin token.
        token = os.path.join(self.work.name, "admin.token")
        with open(token, "w") as f:
            f.write("solo-admin-token\n")
        os.chmod(token, 0o600)
        solo = self.start("solo", (), ["--admin-access", "token", "--admin-token-file", token],
                          secure=True)
        admin = {"Authorization": "Bearer solo-admin-token"}
        self.assertTrue(os.path.exists(root_key_file("solo")))
        status, body = http_from(ip, solo.port, "POST", "/v1/mesh/ca/export-key",
                                 b'{"remove": true}', headers=admin)
        self.assertEqual(status, 403, body)
        self.assertIn("on the node itself", body)
        self.assertNotIn("PRIVATE KEY", body)
        self.assertTrue(os.path.exists(root_key_file("solo")), "the key was removed")
        # Other admin calls from there are taken, with the token.
        status, body = http_from(ip, solo.port, "GET", "/v1/mesh/tokens", headers=admin)
        self.assertEqual(status, 200, body)
        # A secure node takes no `admin_access: any`: control calls from anyone.
        with tempfile.TemporaryDirectory() as state:
            proc = subprocess.run(
                [self.BINARY, "agent", "--node-name", "open", "--http-address", "127.0.0.1:0",
                 "--gossip-address", "127.0.0.1:0", "--grpc-address", "off",
                 "--admin-access", "any", "--model-repository", state, "--state-dir", state],
                capture_output=True, text=True, timeout=60)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("admin_access: any", proc.stdout + proc.stderr)


if __name__ == "__main__":
    RootKeyExportTest.BINARY = binary_from_argv()
    unittest.main(verbosity=2)
